"""AliEn's sharding logic without a database: prefix routing, GUID times, the merge of
shard results (property tests against the obvious definitions)."""

from __future__ import annotations

import asyncio
import time
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from jalien.catalogue.model import Entry
from jalien.catalogue.paths import prefix_end
from jalien.catalogue.sharding import (
    GuidIndex,
    GuidShard,
    LfnIndex,
    LfnShard,
    guid_time_ms,
    merge_pages,
    uuid1_at,
)

PARTS = st.sampled_from(["a", "b", "ab", "a0", "z", "é"])
DIRS = st.lists(PARTS, max_size=4).map(lambda parts: "/" + "".join(p + "/" for p in parts))


def index_of(prefixes: set[str]) -> LfnIndex:
    return LfnIndex([LfnShard(p, i % 2, i) for i, p in enumerate(sorted(prefixes | {"/"}))])


def test_route_examples():
    index = index_of({"/alice/data/", "/alice/data/2024/", "/alice/sim/"})
    route = index.route
    assert route("/alice/data/2024/run/").prefix == "/alice/data/2024/"
    assert route("/alice/data/").prefix == "/alice/data/"
    assert route("/alice/").prefix == "/"  # the entry /alice/data lives in the parent's table
    assert route("/alice/datax/").prefix == "/"
    assert route("").prefix == "/"  # the root's own entry
    assert [s.prefix for s in index.below("/alice/")] == [
        "/",
        "/alice/data/",
        "/alice/data/2024/",
        "/alice/sim/",
    ]
    assert [s.prefix for s in index.below("/alice/data/")] == [
        "/alice/data/",
        "/alice/data/2024/",
    ]
    assert [s.prefix for s in index.below("/alice/data/2024/x/")] == ["/alice/data/2024/"]


@given(st.sets(DIRS, max_size=6), DIRS, DIRS)
def test_route_and_below_match_their_definitions(prefixes, directory, base):
    index = index_of(prefixes)
    every = prefixes | {"/"}
    assert index.route(directory).prefix == max(
        (p for p in every if directory.startswith(p)), key=len
    )
    below = index.below(base)
    assert below[0] == index.route(base)
    assert {s.prefix for s in below[1:]} == {
        p for p in every if p.startswith(base) and p != below[0].prefix
    }
    if directory.startswith(base):  # every dir under base routes to one of them
        assert index.route(directory) in below
    assert base <= directory < prefix_end(base) or not directory.startswith(base)


def test_guid_times():
    now = int(time.time() * 1000)
    assert guid_time_ms(uuid1_at(now)) == now
    assert abs(guid_time_ms(str(uuid.uuid1())) - now) < 5000
    assert guid_time_ms(str(uuid.uuid4())) == 0
    assert guid_time_ms("0e8a-1") == 0
    assert uuid.UUID(uuid1_at(now)).version == 1
    index = GuidIndex([GuidShard(0, 0, 0), GuidShard(now, 1, 1), GuidShard(now + 1000, 0, 2)])
    assert index.route(uuid1_at(now - 1)).table == 0
    assert index.route(uuid1_at(now)).table == 1
    assert index.route(uuid1_at(now + 5000)).table == 2
    assert index.route("g").table == 0


KEYS = st.tuples(DIRS, st.sampled_from(["x", "y", "z0"]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sets(KEYS, max_size=12), min_size=1, max_size=5),
    st.integers(1, 6),
    st.integers(0, 25),
    st.integers(1, 5),
)
def test_merge_pages_is_a_sorted_union(groups, page, limit, source_page):
    # give each key to one source (shards never share a key); bounds below every key
    owner: dict[tuple[str, str], int] = {}
    for i, keys in enumerate(groups):
        for k in keys:
            owner.setdefault(k, i)
    per_source = [sorted(k for k, i in owner.items() if i == n) for n in range(len(groups))]
    bounds = [min(keys, default=("~", "")) for keys in per_source]
    bounds[0] = ("", "")

    async def source(n: int):
        keys = per_source[n]
        for i in range(0, len(keys), source_page):
            await asyncio.sleep(0)
            yield [Entry(d, name) for d, name in keys[i : i + source_page]]

    async def run():
        sources = [(bounds[n], source(n)) for n in range(len(groups))]
        return [p async for p in merge_pages(sources, page, limit)]

    pages = asyncio.run(run())
    got = [(e.dir, e.name) for p in pages for e in p]
    expected = sorted(owner)
    assert got == (expected[:limit] if limit else expected)
    assert all(len(p) == page for p in pages[:-1]) and all(pages)


def test_merge_starts_a_shard_only_when_it_gets_there():
    """A find with a limit over 20 shards (one range each, as prefixes make them) queries
    the shards it reaches and no others."""
    started: list[int] = []

    async def shard(n: int):
        started.append(n)
        yield [Entry(f"/t/{n:02d}/", f"f{i:03d}") for i in range(100)]

    async def run(limit: int):
        sources = [((f"/t/{n:02d}/", ""), shard(n)) for n in range(20)]
        return [e async for p in merge_pages(sources, 30, limit) for e in p]

    assert len(asyncio.run(run(150))) == 150
    assert started == [0, 1]
    started.clear()
    assert len(asyncio.run(run(0))) == 2000
    assert started == list(range(20))
