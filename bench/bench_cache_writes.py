"""The cost of a crash-consistent cache on the catalogue's writes.

    python bench/bench_cache_writes.py [--scale 1.0] [--files N] [--rounds 5]

``touch`` of new files through ``Catalogue`` on SQLite with the LMDB catalogue cache of
jcentral, one at a time and 32 in flight, two ways:

- ``queued``: the invalidation queued after the catalogue's commit (before issue 15: a
  kill -9 in between left stale answers);
- ``consistent``: ``TypedCache.writing`` - the invalidation and intent committed before the
  catalogue commits, dropped again after (jalien/cache/store.py).

and the cache's writer alone (``sqlstore.group_commit`` batches of typed operations): sets
of 100-byte values, then a flush, per second of the process's CPU (every thread).

Reports the median of the rounds (files/s, sets/s). Figures are rough on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from jalien.cache.store import CacheStore
from jalien.cache.typed import TypedCache
from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.roles.central_cache import NAMESPACES, catalogue_cache


class Queued(TypedCache):
    """The old hook: invalidate after the write, queued behind the cache's writer (what the
    in-memory cache still does)."""

    writing = MemoryCache.writing


class Admin:
    login = "admin"
    roles = ("admin",)


async def one_round(kind: str, files: int, in_flight: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = CacheStore(Path(tmp) / "cache", policies=NAMESPACES)
        backend = SQLiteBackend(Path(tmp) / "catalogue.db")
        await backend.start()
        cache = catalogue_cache(store)
        if kind == "queued":
            cache.__class__ = Queued
        cat = Catalogue(backend, cache=cache)
        try:
            await cat.mkdir(Admin(), "/d", parents=True)  # type: ignore[arg-type]
            limit = asyncio.Semaphore(in_flight)

            async def touch(i: int) -> None:
                async with limit:
                    await cat.touch(Admin(), f"/d/f{i}")  # type: ignore[arg-type]

            start = time.perf_counter()
            await asyncio.gather(*(touch(i) for i in range(files)))
            return files / (time.perf_counter() - start)
        finally:
            await backend.close()
            store.close()


def cache_sets(sets: int) -> float:
    """Sets through the cache's group-commit writer, per CPU second of this process."""
    with tempfile.TemporaryDirectory() as tmp:
        store = CacheStore(Path(tmp) / "cache")
        try:
            value = b"v" * 100
            start = time.process_time()
            for i in range(sets):
                store.set("bench", b"k%d" % (i % 10_000), value, scope=f"/d/f{i % 10_000}")
            store.flush().result(timeout=120)
            return sets / (time.process_time() - start)
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="files = 600 * scale")
    parser.add_argument("--files", type=int, default=0, help="files per round (overrides)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.files:
        args.files = max(1, int(600 * args.scale))
    if args.files < 1 or args.rounds < 1:
        parser.error("--files and --rounds must be >= 1")
    for in_flight in (1, 32):
        for kind in ("queued", "consistent"):
            rates = [
                asyncio.run(one_round(kind, args.files, in_flight)) for _ in range(args.rounds)
            ]
            print(
                f"touch, {in_flight:2d} in flight, {kind:10s}: "
                f"{statistics.median(rates):8,.0f} files/s (median of {args.rounds})"
            )
    rates = [cache_sets(args.files * 50) for _ in range(args.rounds)]
    print(
        f"cache sets through the writer: {statistics.median(rates):8,.0f} sets/CPU-s "
        f"(median of {args.rounds}, {args.files * 50:,} sets)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
