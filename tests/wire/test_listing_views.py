"""wire.listing_views: what a view reads of a listing's rows is what the catalogue reads."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from jalien.wire.listing_views import ls_fields, ls_page
from jalien.wire.messages import DirEntry

FULL = [
    DirEntry("run1", "d", "755", "jdoe", "alice", 0, 1714564800000),
    DirEntry(
        "AO2D.root",
        "f",
        "644",
        "jdoe",
        "alice",
        123456789,
        1714564860000,
        "0123456789abcdef0123456789abcdef",
        "00000001-1234-11ef-8000-0242ac120002",
        42,
    ),
    DirEntry(".hidden", "f", "600", "bob", "bob", 1, 0, "ff" * 16, "", 0),
]
FLAGS = "FHabcl"


def _cut(entry: DirEntry, fields: int) -> DirEntry:
    """The entry as a listing reading its first *fields* fields gives it."""
    return DirEntry(*msgspec.structs.astuple(entry)[:fields])


@pytest.mark.parametrize(
    "flags",
    ["".join(c) for n in range(len(FLAGS) + 1) for c in itertools.combinations(FLAGS, n)],
)
def test_a_view_renders_the_same_from_the_fields_it_asks_for(flags):
    metadata = {"_listing": "/alice/data/"}
    fields = ls_fields(flags)
    assert ls_page([_cut(e, fields) for e in FULL], flags, metadata) == ls_page(
        FULL, flags, metadata
    )
    if fields > 1:  # and it asks for no more than it reads
        assert ls_page([_cut(e, fields - 1) for e in FULL], flags, metadata) != ls_page(
            FULL, flags, metadata
        )


def test_the_fields_of_the_views():
    assert ls_fields("") == ls_fields("F") == ls_fields("ac") == ls_fields("cl") == 2
    assert ls_fields("l") == ls_fields("H") == ls_fields("Fal") == 7
    assert ls_fields("b") == ls_fields("bl") == 9
