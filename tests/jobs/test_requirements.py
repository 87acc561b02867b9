"""Requirements expressions against an agent's attributes."""

from __future__ import annotations

import pytest

from jalien.jobs.jdl import JdlError
from jalien.jobs.requirements import compile_requirements

AGENT = {
    "ce": "ALICE::CERN::Slurm",
    "ttl": 80000,
    "gridpartitions": ["PDC08_2", "Production"],
    "site": "CERN",
    "cores": 8,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ('member(other.GridPartitions, "PDC08_2")', True),
        ('member(other.GridPartitions, "nope")', False),
        ("other.TTL > 3600 && other.Cores >= 8", True),
        ('other.CE == "alice::cern::slurm"', True),
        ('!(other.Site == "CERN")', False),
        ('other.Site == "FZK" || other.TTL > 100', True),
        ("other.Missing > 3", False),
        ("other.TTL > -5", True),
    ],
)
def test_evaluation(text, expected):
    assert compile_requirements(text)(AGENT) is expected


@pytest.mark.parametrize("text", ["other.TTL >", "frob(other.TTL)", "(a && b", "a b"])
def test_bad_requirements(text):
    with pytest.raises(JdlError):
        compile_requirements(text)
