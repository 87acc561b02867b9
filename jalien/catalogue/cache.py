"""Cache hooks of the catalogue: find and whereis answers are kept and dropped when a
write touches what they cover. The LMDB cache service implements the same protocol.

Every catalogue write runs inside ``writing(paths)``: a shared cache makes the invalidation
durable before the catalogue commits (and keeps answers covering the paths out until the
write is over), so that a kill -9 anywhere leaves no cached answer that contradicts the
catalogue (see jalien/cache/typed.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol


class CatalogueCache(Protocol):
    def get(self, namespace: str, key: str) -> Any | None: ...
    def put(self, namespace: str, key: str, value: Any, scope: str) -> None:
        """*scope* is the LFN prefix the value depends on (a find's base, a whereis LFN)."""
        ...

    def invalidate(self, path: str) -> None:
        """A write at *path*: drop every value whose scope covers it."""
        ...

    def writing(self, *paths: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Around a catalogue write at *paths* (the backend call that commits it)."""
        ...


class NoCache:
    def get(self, namespace: str, key: str) -> Any | None:
        return None

    def put(self, namespace: str, key: str, value: Any, scope: str) -> None:
        pass

    def invalidate(self, path: str) -> None:
        pass

    @contextlib.asynccontextmanager
    async def writing(self, *paths: str) -> AsyncIterator[None]:
        yield


class MemoryCache:
    """A bounded in-process cache, enough for one jcentral and for the tests."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._values: dict[tuple[str, str], tuple[str, Any]] = {}
        self.hits = self.misses = self.invalidations = 0

    def get(self, namespace: str, key: str) -> Any | None:
        item = self._values.get((namespace, key))
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        return item[1]

    def put(self, namespace: str, key: str, value: Any, scope: str) -> None:
        if len(self._values) >= self.max_entries:
            self._values.pop(next(iter(self._values)))
        self._values[(namespace, key)] = (scope, value)

    def invalidate(self, path: str) -> None:
        stale = [
            k
            for k, (scope, _) in self._values.items()
            if path.startswith(scope) or scope.startswith(path)
        ]
        for key in stale:
            del self._values[key]
        self.invalidations += len(stale)

    @contextlib.asynccontextmanager
    async def writing(self, *paths: str) -> AsyncIterator[None]:
        """In memory a crash loses everything: dropping after the write is enough."""
        try:
            yield
        finally:
            for path in paths:
                self.invalidate(path)
