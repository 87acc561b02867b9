"""Answers of short reads kept while the database has not changed.

SQLite's ``PRAGMA data_version``, asked on a connection that never writes, moves whenever
any other connection commits: this process's writer thread, another worker of the host,
another program. Kept answers are dropped, all at once, the first time a lookup sees it
move, so a kept answer is exactly what a new read would give at the moment of the lookup
(no time to live, no invalidation to forget). The check costs ~3 us against ~7 us for a
point lookup and ~25 us for a page of ten entries (bench/bench_requests.py measures ``ls``
with and without). While writes stream in, answers are dropped on every commit: the cost is
then the check alone.

Kept values are shared between callers: they must be immutable in practice (the catalogue's
``Entry`` and ``DirEntry`` rows are replaced, never changed in place).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

MISSING: Any = object()
"""What ``lookup`` answers when nothing is kept under the key."""


class KeptReads:
    def __init__(self, version: Callable[[], int], max_items: int = 4096) -> None:
        self._version = version
        self._max = max_items
        self._items: dict[Hashable, Any] = {}
        self._seen = -1
        self.hits = 0
        self.misses = 0

    def _fresh(self) -> bool:
        """Whether what is kept is still the database's; if not, it is dropped."""
        version = self._version()
        if version != self._seen or version < 0:  # -1: the store is not open
            self._items.clear()
            self._seen = version
            return False
        return True

    def lookup(self, key: Hashable) -> Any:
        """The answer kept under *key*, or MISSING (and then the caller reads and keeps)."""
        value = self._items.get(key, MISSING) if self._fresh() else MISSING
        if value is MISSING:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def lookup_many(self, keys: Sequence[Hashable]) -> dict[Any, Any]:
        """The answers kept under *keys* (those there are), for one check of the version."""
        items = self._items
        found = {k: items[k] for k in keys if k in items} if self._fresh() else {}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def keep(self, key: Hashable, value: Any) -> None:
        """Keep what a read made after ``lookup(key)`` answered (a commit meanwhile moves
        the version: the next lookup drops it)."""
        items = self._items
        if len(items) >= self._max:
            del items[next(iter(items))]  # the oldest kept
        items[key] = value

    def clear(self) -> None:
        self._items.clear()
