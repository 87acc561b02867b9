"""wire.listing_views: what a view reads of a listing's rows is what the catalogue reads."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien._fast import lslong, lslong_py
from jalien.wire import jalien_json
from jalien.wire.jalien_json import OutputMode
from jalien.wire.listing_views import _LONG_VIEW, _ls_long, ls_fields, ls_page, packed_json
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


# -- ls -l's records written straight from packed rows (_fast.lslong twins)


TWINS = [lslong_py] if lslong is lslong_py else [lslong_py, lslong]
texts = st.one_of(st.text(max_size=12), st.sampled_from(["jdoe", "alice", 'q"\\\n\x01\x7f', "é漢"]))
rows = st.lists(
    st.tuples(
        texts.filter(bool),
        st.sampled_from(["f", "d", "l", "c", "x", ""]),
        st.one_of(st.sampled_from(["755", "644", "0", "7777", ""]), st.text(max_size=4)),
        st.one_of(st.sampled_from(["jdoe", "alice"]), texts),
        st.one_of(st.sampled_from(["jdoe", "z2"]), texts),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 10**13)),
        st.one_of(
            st.just(0),
            st.integers(-(10**13), 4 * 10**12),
            st.sampled_from([-1, 1, -60000, 59999, 1714564800000, 1714564800001]),
        ),
    ),
    max_size=30,
)


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
@settings(max_examples=300, deadline=None)
@given(page=rows, base=texts, slash=st.booleans(), human=st.booleans())
def test_ls_long_json_is_what_msgspec_writes_for_the_records(impl, page, base, slash, human):
    entries = [DirEntry(*row) for row in page]
    packed = msgspec.msgpack.encode(page)
    expected = msgspec.json.encode(_ls_long(entries, base, slash, human))[1:-1]
    assert impl.ls_long_json(packed, base, slash, human, _LONG_VIEW) == expected


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
def test_rows_of_another_shape_are_rendered_by_the_records(impl):
    """Rows with the GUID (9 fields) are not ls -l's shape: the records render them."""
    entries = FULL[:2]
    packed = msgspec.msgpack.encode(entries)  # all ten fields
    expected = msgspec.json.encode(_ls_long(entries, "/a/", False, False))[1:-1]
    assert impl.ls_long_json(packed, "/a/", False, False, _LONG_VIEW) == expected


@pytest.mark.parametrize(
    "flags",
    ["".join(c) for n in range(len(FLAGS) + 1) for c in itertools.combinations(FLAGS, n)],
)
def test_a_packed_page_renders_as_its_rows_do(flags):
    """Every flag set: a page of packed rows (as the catalogue sends them) gives the JSON
    text its decoded rows give."""
    fields = ls_fields(flags)
    cut = [_cut(e, fields) for e in FULL]
    packed = msgspec.Raw(msgspec.msgpack.encode([msgspec.structs.astuple(e)[:fields] for e in cut]))
    view, metadata = f"ls:{flags}", {"_listing": "/alice/x/"}
    for mode in OutputMode:
        got = jalien_json.render_page(
            jalien_json.Reply(entries=packed, view=view, metadata=metadata), mode, True
        )
        assert got == jalien_json.render_page(
            jalien_json.Reply(entries=cut, view=view, metadata=metadata), mode, True
        )
    written = packed_json(bytes(packed), view, metadata)
    assert written is None or written == jalien_json.render_page(
        jalien_json.Reply(entries=cut, view=view, metadata=metadata),
        jalien_json.OutputMode.ALL,
        True,
    )
