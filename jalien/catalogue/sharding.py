"""Where a sharded catalogue keeps things, the AliEn way; pure logic, no I/O.

LFNs: INDEXTABLE maps LFN prefixes (directories, with a trailing '/') to a table on a
host. An entry (dir, name) lives in the table of the longest prefix that its *dir* starts
with, so the entry of a directory that is itself a prefix stays in its parent's table while
its children live in the new one. The root prefix '/' always exists (it also holds the
root's own entry, whose dir is '').

GUIDs: GUIDINDEX maps start times to a table on a host; a GUID (a version-1 UUID) lives in
the table of the latest start at or before its time. GUIDs that carry no time (other UUID
versions, foreign strings) live in the first table, which starts at 0.

Results of a subtree (find) come from several shards and are merged in (dir, name) order
by `merge_pages`, which starts a shard only when the merge reaches its prefix.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import NamedTuple

from jalien.catalogue.model import Entry
from jalien.catalogue.paths import prefix_end

ROOT_PREFIX = "/"

# 100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


class LfnShard(NamedTuple):
    prefix: str  # directory form, '/' for the root
    host: int  # hostIndex (HOSTS)
    table: int  # tableName: entries live in L<table>L

    @property
    def sql_table(self) -> str:
        return f"L{self.table}L"


class GuidShard(NamedTuple):
    since: int  # ms since the epoch: the first GUID time this table holds
    host: int
    table: int  # refs in G<table>L, replicas in G<table>L_PFN

    @property
    def refs_table(self) -> str:
        return f"G{self.table}L"

    @property
    def pfn_table(self) -> str:
        return f"G{self.table}L_PFN"


def parent_dir(directory: str) -> str:
    """'/a/b/' -> '/a/'; '/' -> ''."""
    return directory[: directory.rstrip("/").rfind("/") + 1]


class LfnIndex:
    """INDEXTABLE in memory: routes a directory to the shard that holds its children."""

    def __init__(self, shards: list[LfnShard]) -> None:
        by_prefix = {s.prefix: s for s in shards}
        if ROOT_PREFIX not in by_prefix:
            raise ValueError("the index has no root prefix '/'")
        self._by_prefix = by_prefix
        self.shards = sorted(by_prefix.values())
        self._prefixes = [s.prefix for s in self.shards]
        self.root = by_prefix[ROOT_PREFIX]

    def route(self, directory: str) -> LfnShard:
        """The shard of the entries whose dir is *directory* (longest matching prefix)."""
        probe = directory
        by_prefix = self._by_prefix
        while probe:
            shard = by_prefix.get(probe)
            if shard is not None:
                return shard
            probe = parent_dir(probe)
        return self.root

    def below(self, base: str) -> list[LfnShard]:
        """The shards holding entries whose dir lies under *base* (dir in [base,
        prefix_end(base))): the one *base* routes to, then every prefix inside *base*."""
        first = self.route(base)
        lo = bisect.bisect_left(self._prefixes, base)
        hi = bisect.bisect_left(self._prefixes, prefix_end(base))
        return [first, *(s for s in self.shards[lo:hi] if s != first)]

    def has_prefixes_below(self, base: str) -> bool:
        """Whether a prefix other than the one *base* routes to lies inside *base*."""
        return len(self.below(base)) > 1


def guid_time_ms(guid: str) -> int:
    """The creation time of a version-1 UUID in ms since the epoch; 0 for anything else."""
    try:
        u = uuid.UUID(guid)
    except ValueError:
        return 0
    if u.version != 1:
        return 0
    return max(0, (u.time - _UUID_EPOCH_OFFSET) // 10_000)


def uuid1_at(ms: int, node: int = 0x0242AC120002, clock_seq: int = 0) -> str:
    """A version-1 UUID carrying the time *ms* (tests, tools and imports use it)."""
    t = ms * 10_000 + _UUID_EPOCH_OFFSET
    fields = (
        t & 0xFFFFFFFF,
        (t >> 32) & 0xFFFF,
        ((t >> 48) & 0x0FFF) | 0x1000,
        0x80 | ((clock_seq >> 8) & 0x3F),
        clock_seq & 0xFF,
        node,
    )
    return str(uuid.UUID(fields=fields))


class GuidIndex:
    """GUIDINDEX in memory: routes a GUID to its time's table."""

    def __init__(self, shards: list[GuidShard]) -> None:
        self.shards = sorted(shards)
        if not self.shards or self.shards[0].since != 0:
            raise ValueError("the GUID index has no table starting at time 0")
        self._starts = [s.since for s in self.shards]

    def route(self, guid: str) -> GuidShard:
        return self.shards[bisect.bisect_right(self._starts, guid_time_ms(guid)) - 1]

    @property
    def newest(self) -> GuidShard:
        return self.shards[-1]


def entry_key(e: Entry) -> tuple[str, str]:
    return (e.dir, e.name)


async def merge_pages(
    sources: list[tuple[tuple[str, str], AsyncIterator[list[Entry]]]], page: int, limit: int
) -> AsyncIterator[list[Entry]]:
    """Merge page streams, each sorted by (dir, name) and holding nothing below its lower
    bound, into pages of *page* entries in (dir, name) order, at most *limit* (0: all).

    A source is started only when the merge reaches its lower bound (a shard's prefix), so
    a find with a limit does not query shards it never gets to. A run of one source that
    sorts before every other head (and every unstarted bound) is taken as one slice: shards
    covering disjoint ranges cost a bisection per page, not a comparison per entry."""
    iters = [it for _, it in sources]
    lower = [bound for bound, _ in sources]
    pending = sorted(range(len(sources)), key=lower.__getitem__, reverse=True)  # next last
    heads: dict[int, tuple[list[Entry], int]] = {}

    async def start(bound: tuple[str, str] | None) -> None:
        batch = []
        while pending and (bound is None or lower[pending[-1]] <= bound):
            batch.append(pending.pop())
            if bound is None:  # nothing running: the lowest one sets the bound
                break
        firsts = await asyncio.gather(*(anext(iters[i], None) for i in batch))
        heads.update((i, (p, 0)) for i, p in zip(batch, firsts, strict=True) if p)

    try:
        left = limit or -1
        out: list[Entry] = []
        while left != 0:
            while True:
                keys = {i: entry_key(buf[pos]) for i, (buf, pos) in heads.items()}
                bound = min(keys.values()) if keys else None
                if not pending or (bound is not None and lower[pending[-1]] > bound):
                    break
                await start(bound)
            if not heads:
                break
            i = min(keys, key=keys.__getitem__)
            buf, pos = heads[i]
            stops = [k for j, k in keys.items() if j != i]
            if pending:
                stops.append(lower[pending[-1]])
            upto = bisect.bisect_left(buf, min(stops), lo=pos, key=entry_key) if stops else len(buf)
            if left > 0:
                upto = min(upto, pos + left)
                left -= upto - pos
            out.extend(buf[pos:upto])
            while len(out) >= page:
                yield out[:page]
                del out[:page]
            if upto < len(buf):
                heads[i] = (buf, upto)
            else:
                nxt = await anext(iters[i], None)
                if nxt:
                    heads[i] = (nxt, 0)
                else:
                    del heads[i]
        if out:
            yield out
    finally:
        for it in iters:
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]
