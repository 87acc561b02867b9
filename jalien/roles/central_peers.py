"""What a jcentral needs when it is one of several (docs/multicentral.md), wired in plain
code: the agent routes and pushes between centrals (``jobs.routes``: kill and spy reach an
agent connected to another central) and the catalogue's change log (``catalogue.change_log``:
a write on one host leaves the others' caches within ``peer_poll_interval``).

Routes are on when the task queue is shared: MariaDB (several hosts), or the SQLite task
queue of one home served by several worker processes. The change log is on when the
catalogue is MariaDB's (the processes of one host share their LMDB cache, so a SQLite
catalogue needs none).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from jalien.catalogue.change_log import ChangeLog, Follower, Pending
from jalien.catalogue.service import Catalogue
from jalien.config import ConfigError, Settings
from jalien.jobs.routes import Router, Routes
from jalien.jobs.service import JobService
from jalien.jobs.spy import SpyDesk
from jalien.loops import LoopRegistry

log = logging.getLogger("jalien.jcentral")


def central_name(settings: Settings) -> str:
    """This process's name among the centrals: unique per run (a restarted central is a
    new one; the pushes left for the old one move to where the agents report next)."""
    if settings.central_name:
        return f"{settings.central_name}:{secrets.token_hex(3)}"
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def routes_wanted(settings: Settings) -> bool:
    if settings.peer_poll_interval <= 0:
        return False
    workers = int(getattr(settings, "workers", 1))
    return settings.taskqueue_backend == "mariadb" or workers != 1


def change_log_wanted(settings: Settings) -> bool:
    return settings.peer_poll_interval > 0 and settings.catalogue_backend == "mariadb"


def build_routes(settings: Settings) -> Routes:
    if settings.taskqueue_backend == "mariadb":
        dsn = settings.taskqueue_mariadb.get("dsn")
        if not isinstance(dsn, str):
            raise ConfigError("[taskqueue_mariadb] needs a dsn")
        return Routes.mariadb(dsn)
    return Routes.sqlite(settings.home_path / "routes.db")


def build_change_log(settings: Settings) -> ChangeLog:
    from jalien.catalogue.mariadb_backend import MariaDBConfig

    config = msgspec.convert(settings.catalogue_mariadb, MariaDBConfig)  # checked before
    # the changes of this host's cache (its processes share it) are not applied again here
    origin = f"{socket.gethostname()}:{settings.path(settings.cache_dir, 'cache')}"
    return ChangeLog.mariadb(config.hosts[config.index_host], origin)


@dataclass
class Peers:
    router: Router | None = None
    changes: ChangeLog | None = None
    follower: Follower | None = None
    closing: list[Routes | ChangeLog] = field(default_factory=list)

    async def close(self) -> None:
        if self.router is not None:
            await self.router.flush()
        for store in self.closing:
            await store.close()


async def start_peers(
    settings: Settings,
    catalogue: Catalogue,
    jobs: JobService,
    spy: SpyDesk,
    loops: LoopRegistry,
    *,
    routes: Routes | None = None,
    changes: ChangeLog | None = None,
    follow: bool = True,
) -> Peers:
    """Start what this central needs among several (nothing when it is alone). *follow*:
    this process follows the change log for its host (one worker of a host does: they
    share the cache; every worker logs its own writes and takes its own pushes)."""
    peers = Peers()
    interval = settings.peer_poll_interval
    if routes is None and routes_wanted(settings):
        routes = build_routes(settings)
    if routes is not None:
        await routes.start()
        peers.closing.append(routes)
        loops.add_pools(routes.pools)
        router = Router(routes, central_name(settings))
        jobs.attach_router(router)
        spy.attach_router(router)
        peers.router = router
        loops.start(router.loop(interval))
        log.info("agent routes on: this central is %s", router.name)
    if changes is None and change_log_wanted(settings):
        changes = build_change_log(settings)
    if changes is not None:
        await changes.start()
        peers.closing.append(changes)
        loops.add_pools(changes.pools)
        catalogue.changes = _Notes(changes)
        peers.changes = changes
        if follow:
            peers.follower = Follower(changes, catalogue.cache)
            loops.start(peers.follower.loop(interval))
    return peers


class _Notes:
    """The catalogue's ``ChangeNotes`` on the change log: the pending change of a write (the
    MariaDB backend adds it to the write's transaction), else logged after the commit."""

    def __init__(self, changes: ChangeLog) -> None:
        self.changes = changes

    def pending(self, paths: Iterable[str]) -> Pending | None:
        return self.changes.pending(paths)

    async def note(self, pending: Pending) -> None:
        # shielded: a request cancelled after its write committed (its client went away)
        # still leaves the change for the other hosts
        await asyncio.shield(_note(self.changes, pending))


async def _note(changes: ChangeLog, pending: Pending) -> None:
    try:
        await changes.note(pending)
    except Exception as exc:  # the write is committed: the others' TTLs bound it
        log.warning("catalogue change not logged for the other hosts: %s", exc)
