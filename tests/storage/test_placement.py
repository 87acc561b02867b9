"""Write placement and read ordering (pure functions, no I/O)."""

from __future__ import annotations

import pytest

from jalien.catalogue.model import StorageElement
from jalien.storage.placement import SpecError, choose_write, order_read, parse_specs, rank


def se(name, site, qos=("disk",), capacity=0, used=0):
    return StorageElement(name=name, url=f"https://h/{name}", site=site, qos=list(qos),
                          capacity=capacity, used=used)  # fmt: skip


SES = [
    se("ALICE::CERN::EOS", "CERN"),
    se("ALICE::GSI::SE", "GSI"),
    se("ALICE::FZK::SE", "FZK", capacity=100, used=99),
    se("ALICE::CERN::TAPE", "CERN", qos=("tape",)),
]


def names(items):
    return [s.name for s in items]


def test_parse_specs():
    s = parse_specs("disk:2,ALICE::GSI::SE,!alice::fzk::se,tape=1")
    assert s.qos == {"disk": 2, "tape": 1} and s.ses == ["ALICE::GSI::SE"]
    assert s.excluded == {"ALICE::FZK::SE"} and s.replicas == 4
    for bad in ("disk:0", "disk:x", "what"):
        with pytest.raises(SpecError):
            parse_specs(bad)


def test_write_closest_first_no_duplicates_no_full():
    chosen = choose_write(SES, parse_specs("disk:2"), "CERN", size=10)
    assert names(chosen) == ["ALICE::CERN::EOS", "ALICE::GSI::SE"]  # FZK is full
    explicit = choose_write(SES, parse_specs("ALICE::GSI::SE,disk:1"), "CERN")
    assert names(explicit) == ["ALICE::GSI::SE", "ALICE::CERN::EOS"]
    excluded = choose_write(SES, parse_specs("!ALICE::CERN::EOS,disk:1"), "CERN", size=10)
    assert names(excluded) == ["ALICE::GSI::SE"]
    assert names(choose_write(SES, parse_specs("tape:3"), "GSI")) == ["ALICE::CERN::TAPE"]


def test_read_order_and_strict_filter():
    replicas = [("ALICE::GSI::SE", "p1"), ("ALICE::CERN::EOS", "p2"), ("ALICE::GONE::SE", "p3")]
    assert [p for _, p in order_read(replicas, SES, "CERN")] == ["p2", "p1", "p3"]
    assert [p for _, p in order_read(replicas, SES, "GSI")] == ["p1", "p2", "p3"]
    prefer = parse_specs("ALICE::GSI::SE")
    assert order_read(replicas, SES, "CERN", prefer)[0][1] == "p1"
    assert order_read(replicas, SES, "CERN", prefer, strict=True) == [("ALICE::GSI::SE", "p1")]


def test_rank_demotes_full_ses_among_equals():
    assert names(rank(SES[:3], "NOWHERE"))[-1] == "ALICE::FZK::SE"
