"""Typed values on a CacheStore: the catalogue's ``CatalogueCache`` protocol
(``get(namespace, key)``, ``put(namespace, key, value, scope)``, ``invalidate(path)``).

The cache service does not import the catalogue (services never import each other): the
role that wires them says which store namespace and which msgspec type each of the
catalogue's namespaces uses, e.g. ``{"find": Typed("catalogue.find", list[list[Entry]])}``.
Values are MessagePack of the Structs, decoded with a decoder built once per namespace.

Keys are the catalogue's strings as UTF-8; one longer than LMDB allows (a find with a long
pattern) is replaced by a 32-byte BLAKE2b digest.

A lookup that missed is answered from the database, then put: if a write covering its
scope came in between, the answer may predate the write and is not kept. This process's
writes are remembered here by generation (its own puts are read back at once from the
store's overlay); every process's, by the store's durable generation, read at the miss and
checked by the writer when it commits the put (``CacheStore.set(since=...)``).

A catalogue write runs inside ``writing(paths)``: the store drops what covers the paths and
records the write's intent durably before the catalogue commits, and drops it again after
(see ``CacheStore.begin_write``): after a kill -9 anywhere, no cached answer contradicts the
catalogue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import AsyncIterator
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
        # lookups waiting for their put: (this process's generation, the store's)
        self._missed: dict[tuple[str, str], tuple[int, tuple[int, int]]] = {}
        self.undecodable = 0
        self.refused = 0
        self.raced = 0  # answers not kept: a write covering them came in while computing

    def get(self, namespace: str, key: str) -> Any | None:
        codec = self._codecs[namespace]
        raw = self.store.get(codec.ns, cache_key(key))
        if raw is None:
            if len(self._missed) > 10_000:  # puts that never came (errors, cancellations)
                self._missed.clear()
            # the oldest miss wins: two lookups of one key put with the earlier generations
            self._missed.setdefault((namespace, key), (self._generation, self.store.since()))
            return None
        try:
            return codec.decoder.decode(raw)
        except msgspec.DecodeError:
            self.undecodable += 1
            return None

    def put(self, namespace: str, key: str, value: Any, scope: str) -> None:
        codec = self._codecs[namespace]
        since, stored = self._missed.pop((namespace, key), (self._generation, None))
        if since != self._generation and self._stale(since, scope):
            self.raced += 1
            return
        try:
            self.store.set(
                codec.ns,
                cache_key(key),
                self._encoder.encode(value),
                codec.ttl,
                scope or "",
                since=stored,
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
        self._note(path)

    def _note(self, path: str) -> None:
        self._generation += 1
        self._recent.append((self._generation, scope_key(path)))

    @contextlib.asynccontextmanager
    async def writing(self, *paths: str) -> AsyncIterator[None]:
        """Around a catalogue write at *paths*: durable invalidation and intent before it,
        invalidation after it (also when it fails or is cancelled)."""
        intent = self.store.begin_write(paths)
        for path in paths:
            self._note(path)
        try:
            await asyncio.wrap_future(intent.durable)
            yield
        finally:
            self.store.end_write(intent)
            for path in paths:
                self._note(path)
