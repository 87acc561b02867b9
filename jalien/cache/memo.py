"""A lookup function memoised in a store namespace (read-through), shared by the processes
of a host: e.g. accounts by login (the login's DN, roles - its groups - and home), which
the accounts file answers by a scan of every account.

The key carries a *version* of the source (the accounts file's mtime and size): an edit
makes every older entry unreachable at once, in every process, without a clear that could
race with a process still reading the old file; the old entries age out (TTL, eviction).
Errors of the function (an unknown login) are not cached.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from jalien.cache.store import CacheError, CacheStore
from jalien.cache.typed import cache_key

T = TypeVar("T")


def file_version(path: str | os.PathLike[str]) -> Callable[[], str]:
    """A version of a file: its mtime and size ("-" while it does not exist)."""
    where = Path(path)

    def version() -> str:
        try:
            st = os.stat(where)
        except OSError:
            return "-"
        return f"{st.st_mtime_ns}:{st.st_size}"

    return version


class ReadThrough(Generic[T]):
    def __init__(
        self,
        store: CacheStore,
        ns: str,
        fn: Callable[[str], T],
        type_: Any,
        *,
        ttl: float | None = None,
        version: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.ns = ns
        self.fn = fn
        self.ttl = ttl
        self.version = version
        self._decoder = msgspec.msgpack.Decoder(type_)
        self._encoder = msgspec.msgpack.Encoder()

    def __call__(self, key: str) -> T:
        full = f"{self.version()}\0{key}" if self.version is not None else key
        raw_key = cache_key(full)
        raw = self.store.get(self.ns, raw_key)
        if raw is not None:
            try:
                return self._decoder.decode(raw)
            except msgspec.DecodeError:
                pass
        value = self.fn(key)
        with contextlib.suppress(CacheError):  # read-only, namespaces full: answer anyway
            self.store.set(self.ns, raw_key, self._encoder.encode(value), self.ttl)
        return value
