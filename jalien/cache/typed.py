"""Typed values on a CacheStore: the catalogue's ``CatalogueCache`` protocol
(``get(namespace, key)``, ``put(namespace, key, value, scope)``, ``invalidate(path)``).

The cache service does not import the catalogue (services never import each other): the
role that wires them says which store namespace and which msgspec type each of the
catalogue's namespaces uses, e.g. ``{"find": Typed("catalogue.find", list[list[Entry]])}``.
Values are MessagePack of the Structs, decoded with a decoder built once per namespace.

Keys are the catalogue's strings as UTF-8; one longer than LMDB allows (a find with a long
pattern) is replaced by a 32-byte BLAKE2b digest.

A lookup that missed is answered from the database, then put: if a write of this process
covering its scope came in between, the answer may predate the write and is not kept (the
recent invalidations are remembered for that, by generation).
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from jalien.cache.store import MAX_KEY, CacheError, CacheStore, covers, scope_key


@dataclass(frozen=True)
class Typed:
    """One namespace of a TypedCache: where its values live and what they are."""

    ns: str
    type: Any
    ttl: float | None = None  # None: the store namespace's default


def cache_key(key: str) -> bytes:
    raw = key.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_KEY and raw:
        return raw
    return b"#" + hashlib.blake2b(raw, digest_size=32).digest()


class _Codec:
    __slots__ = ("decoder", "ns", "ttl")

    def __init__(self, spec: Typed) -> None:
        self.ns = spec.ns
        self.ttl = spec.ttl
        self.decoder = msgspec.msgpack.Decoder(spec.type)


class TypedCache:
    """A CatalogueCache on a store. A value that no longer decodes (its type changed
    between versions) is a miss, and a value too big for the store is not kept."""

    def __init__(self, store: CacheStore, namespaces: dict[str, Typed]) -> None:
        self.store = store
        self._codecs = {name: _Codec(spec) for name, spec in namespaces.items()}
        self._encoder = msgspec.msgpack.Encoder()
        self._generation = 0  # +1 per invalidation
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=4096)
        self._missed: dict[tuple[str, str], int] = {}  # lookups waiting for their put
        self.undecodable = 0
        self.refused = 0
        self.raced = 0  # answers not kept: a write covering them came in while computing

    def get(self, namespace: str, key: str) -> Any | None:
        codec = self._codecs[namespace]
        raw = self.store.get(codec.ns, cache_key(key))
        if raw is None:
            if len(self._missed) > 10_000:  # puts that never came (errors, cancellations)
                self._missed.clear()
            self._missed[(namespace, key)] = self._generation
            return None
        try:
            return codec.decoder.decode(raw)
        except msgspec.DecodeError:
            self.undecodable += 1
            return None

    def put(self, namespace: str, key: str, value: Any, scope: str) -> None:
        codec = self._codecs[namespace]
        since = self._missed.pop((namespace, key), self._generation)
        if since != self._generation and self._stale(since, scope):
            self.raced += 1
            return
        try:
            self.store.set(
                codec.ns, cache_key(key), self._encoder.encode(value), codec.ttl, scope or ""
            )
        except CacheError:
            self.refused += 1  # e.g. bigger than the store's value limit: just not cached

    def _stale(self, since: int, scope: str) -> bool:
        """Did an invalidation after generation *since* cover *scope*?"""
        recent = self._recent
        if not scope or not recent or recent[0][0] > since + 1:
            return True  # unscoped, or too long ago to tell: do not keep it
        try:
            scoped = scope_key(scope)
        except CacheError:
            return True
        for generation, path in reversed(recent):
            if generation <= since:
                return False
            if covers(scoped, path):
                return True
        return False

    def invalidate(self, path: str) -> None:
        self.store.invalidate(path)
        self._generation += 1
        self._recent.append((self._generation, scope_key(path)))
