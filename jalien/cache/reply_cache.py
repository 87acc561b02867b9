"""A level's reply cache (jBox, VoBox, JobAgent) on a CacheStore: ``net.proxy.ReplyCache``.

``UpstreamProxy(upstream, cache=LmdbReplyCache(store, {"whereis": 60, "ls": 10}))`` answers
repeated read-only requests of the commands named from the level's own LMDB directory
instead of going upstream: the same store as the central cache (TTL, bounded size, LRU,
shared by the level's processes, kept across restarts), in one namespace.

The proxy's key (the client's DN and the request as sent) is hashed to 32 bytes (it may be
longer than an LMDB key); a value is the reply frame's flags byte and its body, exactly as
upstream sent it (still compressed), so that a hit is written back without decoding.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from jalien.cache.store import CacheError, CacheStore, Policy

NAMESPACE = "level.replies"


class LmdbReplyCache:
    def __init__(
        self, store: CacheStore, ttl_by_command: dict[str, float], ns: str = NAMESPACE
    ) -> None:
        self.store = store
        self.ttl_by_command = ttl_by_command
        self.ns = ns
        self.hits = self.misses = 0

    @staticmethod
    def _key(key: bytes) -> bytes:
        return hashlib.blake2b(key, digest_size=32).digest()

    def get(self, key: bytes) -> tuple[int, bytes] | None:
        raw = self.store.get(self.ns, self._key(key))
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return raw[0], raw[1:]

    def put(self, key: bytes, value: tuple[int, bytes], command: str) -> None:
        ttl = self.ttl_by_command.get(command)
        if not ttl:
            return
        flags, body = value
        with contextlib.suppress(CacheError):  # bigger than the store takes: not kept
            self.store.set(self.ns, self._key(key), bytes((flags,)) + body, ttl)


def level_store(
    path: str | Path, max_entries: int = 10_000, max_bytes: int = 64 << 20
) -> CacheStore:
    """A small store of its own for a level's replies (its home's ``cache`` directory)."""
    policy = Policy(max_entries=max_entries, max_bytes=max_bytes, ttl=60.0, private=True)
    return CacheStore(path, policies={NAMESPACE: policy}, map_size=max(4 * max_bytes, 64 << 20))
