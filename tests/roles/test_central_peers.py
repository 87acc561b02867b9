"""roles.central_peers wires a jcentral among several: the router on the jobs service and
the spy desk, the catalogue's writes into the change log (also when the request is
cancelled once its write committed), and nothing at all for a process alone."""

from __future__ import annotations

import asyncio

from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.change_log import ChangeLog
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.config import Settings
from jalien.jobs.broker import Broker
from jalien.jobs.routes import Routes
from jalien.jobs.service import JobService
from jalien.jobs.spy import SpyDesk
from jalien.jobs.store import TaskQueueStore
from jalien.loops import LoopRegistry
from jalien.roles.central_peers import routes_wanted, start_peers
from tests.catalogue.conftest import ADMIN


def test_alone_nothing_is_started(tmp_path):
    assert not routes_wanted(Settings(home=str(tmp_path), workers=1))
    assert routes_wanted(Settings(home=str(tmp_path), workers=2))
    assert not routes_wanted(Settings(home=str(tmp_path), workers=2, peer_poll_interval=0))
    assert routes_wanted(Settings(home=str(tmp_path), workers=1, taskqueue_backend="mariadb"))


def test_router_and_change_log_are_wired(tmp_path):
    async def go():
        backend = SQLiteBackend(tmp_path / "catalogue.db")
        await backend.start()
        catalogue = Catalogue(backend, cache=MemoryCache())
        jobs = JobService(TaskQueueStore(tmp_path / "taskqueue.db"), Broker())
        spy = SpyDesk(jobs)
        loops = LoopRegistry()
        log = ChangeLog.sqlite(tmp_path / "changes.db", "this-host")
        peers = await start_peers(
            Settings(home=str(tmp_path), peer_poll_interval=30.0),
            catalogue, jobs, spy, loops,
            routes=Routes.sqlite(tmp_path / "routes.db"), changes=log,
        )  # fmt: skip
        try:
            assert jobs.router is peers.router and spy.router is peers.router
            await catalogue.mkdir(ADMIN, "/alice/peers", parents=True)
            paths = [p for _, _, p, _ in await log.after(0)]
            assert any("/alice/peers" in p for p in paths), paths
            # a request cancelled while its change is being logged: the change is kept
            before = log.appended
            assert catalogue.changes is not None
            pending = catalogue.changes.pending(["/alice/cancelled"])
            assert pending is not None
            task = asyncio.ensure_future(catalogue.changes.note(pending))
            await asyncio.sleep(0)
            task.cancel()
            for _ in range(500):  # the shielded note goes on: wait for it, bounded
                if log.appended > before:
                    break
                await asyncio.sleep(0.01)
            assert log.appended == before + 1
        finally:
            await loops.stop_all(timeout=5.0)
            await peers.close()
            await backend.close()

    asyncio.run(go())
