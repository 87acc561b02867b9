"""The shared cache of the central services, wired in plain code (jcentral calls these).

One LMDB directory per host (``{home}/cache``, ``cache_dir``): every jcentral process of
the host opens it and shares what is in it. The services' own namespaces are private (not
reachable over the TextCache HTTP port):

- ``catalogue.find`` / ``catalogue.whereis``: the catalogue's answers (``CatalogueCache``),
  dropped by the catalogue's writes through their LFN scopes;
- ``auth.logins``: accounts by login (DN, roles, home) for the token command, keyed by
  the accounts file's version;
- ``jobs.packages.lists`` / ``jobs.packages.offers``: the package lists nodes sent, by
  digest, and who offered which lately (``PackageShare``: jobs.packages, docs/site.md).

Other namespaces are made on demand by TextCache and ``cache.set`` users.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import zlib
from collections.abc import Callable

import msgspec

from jalien.cache.memo import ReadThrough, file_version
from jalien.cache.store import MAX_KEY, CacheStore, Policy
from jalien.cache.textcache import TextCache
from jalien.cache.typed import Typed, TypedCache
from jalien.catalogue.model import Entry, Replica
from jalien.config import Settings
from jalien.loops import Loop
from jalien.net.http import HttpServer
from jalien.net.identity import Identity

log = logging.getLogger("jalien.jcentral")

NAMESPACES = {
    "catalogue.find": Policy(max_entries=20_000, max_bytes=256 << 20, ttl=600.0, private=True),
    "catalogue.whereis": Policy(max_entries=200_000, ttl=3600.0, private=True),
    "auth.logins": Policy(max_entries=50_000, ttl=300.0, private=True),
    # the central configuration's last snapshot (jalien.directory.service)
    "config.snapshot": Policy(max_entries=4, max_bytes=256 << 20, ttl=300.0, private=True),
    # the package lists nodes advertised and who offered which (jobs.packages)
    "jobs.packages.lists": Policy(max_entries=256, ttl=86400.0, private=True),
    "jobs.packages.offers": Policy(max_entries=10_000, ttl=6 * 3600.0, private=True),
}


class PackageShare:
    """jobs.packages.PackageShare on the host's cache: what one jcentral process learnt
    of the nodes' packages, the others find (lists zlib-compressed MessagePack)."""

    LISTS, OFFERS = "jobs.packages.lists", "jobs.packages.offers"

    def __init__(self, store: CacheStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def get_list(self, digest: str) -> list[str] | None:
        raw = self.store.get(self.LISTS, digest.encode())
        if raw is None:
            return None
        return msgspec.msgpack.decode(zlib.decompress(raw), type=list[str])

    def put_list(self, digest: str, packages: list[str]) -> None:
        value = zlib.compress(msgspec.msgpack.encode(packages), 1)
        self.store.set(self.LISTS, digest.encode(), value)

    def note(self, where: str, digest: str, seen: float) -> None:
        key = (where or "-").encode()[:MAX_KEY]
        self.store.set(self.OFFERS, key, msgspec.msgpack.encode((digest, seen)))

    def offers(self) -> list[tuple[str, str, float]]:
        now_ms = self.clock() * 1000.0
        out = []
        for key, _size, expires, value in self.store.entries(self.OFFERS, values=True):
            if value is None or (expires and expires <= now_ms):
                continue
            digest, seen = msgspec.msgpack.decode(value, type=tuple[str, float])
            out.append((key.decode(errors="replace"), digest, seen))
        return out


def build_cache(settings: Settings) -> CacheStore:
    # the store's writer thread shares the GIL with the event loop: a waiting loop gets it
    # back within 1 ms (Python's default is 5 ms) when the writer is busy
    sys.setswitchinterval(0.001)
    return CacheStore(
        settings.path(settings.cache_dir, "cache"),
        policies=NAMESPACES,
        map_size=settings.cache_map_size,
        # fault injection for the crash tests: every commit as slow as a busy disk's fsync
        commit_delay=float(os.environ.get("JALIEN_CACHE_COMMIT_DELAY", "0") or 0),
    )


def catalogue_cache(store: CacheStore) -> TypedCache:
    return TypedCache(
        store,
        {
            "find": Typed("catalogue.find", list[list[Entry]]),
            "whereis": Typed("catalogue.whereis", list[Replica]),
        },
    )


def logins(
    store: CacheStore, settings: Settings, identify_login: Callable[[str], Identity]
) -> ReadThrough[Identity]:
    """identify_login through the cache (the accounts file answers it by a full scan)."""
    return ReadThrough(
        store,
        "auth.logins",
        identify_login,
        Identity,
        version=file_version(settings.accounts_path),
    )


async def serve_textcache(settings: Settings, store: CacheStore) -> HttpServer | None:
    """JAliEn's TextCache HTTP shape on cache_http_port (loopback by default), if it can
    listen there: a port taken by another process costs a warning, not the start."""
    if settings.cache_http_port < 0:
        return None
    server = HttpServer(TextCache(store))
    try:
        await server.start(
            settings.cache_http_listen,
            settings.cache_http_port,
            reuse_port=settings.shared_ports,
        )
    except OSError as exc:
        log.warning(
            "TextCache HTTP not started on port %d: %s", settings.cache_http_port, exc.strerror
        )
        await server.close()
        return None
    return server


def release_readers(store: CacheStore, every: float = 1.0) -> Loop:
    """End the event loop's read transaction now and then, so that an idle loop does not
    keep old pages of the shared file from being reused."""

    async def step() -> None:
        store.release()

    return Loop("cache-readers", step, every, logger=log)
