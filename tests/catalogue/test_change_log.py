"""The catalogue's change log (catalogue.change_log): a write on one host is dropped from
the others' caches by their followers, never from the writer's own host twice, and a
follower that starts drops the whole catalogue cache once (it cannot know what it missed)."""

from __future__ import annotations

import asyncio

from jalien.catalogue.change_log import ChangeLog, Follower
from tests.catalogue.mariadb_servers import mariadb_dsn, mariadb_system  # noqa: F401


class Spy:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    def invalidate(self, path: str) -> None:
        self.dropped.append(path)


def test_followers_drop_the_other_hosts_changes(tmp_path):
    async def go():
        db = tmp_path / "changes.db"
        a, b = ChangeLog.sqlite(db, "host-a"), ChangeLog.sqlite(db, "host-b")
        await a.start()
        await b.start()
        try:
            await a.note(["/alice/old/"])  # before anyone followed
            cache_a, cache_b = Spy(), Spy()
            fa, fb = Follower(a, cache_a), Follower(b, cache_b)
            await fa.step()
            await fb.step()
            assert cache_a.dropped == ["/"] and cache_b.dropped == ["/"]
            await a.note(["/alice/x/f1", "/alice/y/"])
            await b.note(["/alice/z"])
            await fa.step()
            await fb.step()
            assert cache_a.dropped == ["/", "/alice/z"]
            assert cache_b.dropped == ["/", "/alice/x/f1", "/alice/y/"]
            await fb.step()  # applied once
            assert len(cache_b.dropped) == 3
            assert fb.applied == 1 and fb.paths == 2
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_the_floor_moves_past_settled_rows(tmp_path):
    async def go():
        log = ChangeLog.sqlite(tmp_path / "changes.db", "me")
        await log.start()
        try:
            follower = Follower(log, Spy(), margin=0.0)
            await follower.step()
            for n in range(5):
                await log.note([f"/p{n}"])
            await follower.step()
            await follower.step()
            assert follower.floor == 5 and not follower._seen
        finally:
            await log.close()

    asyncio.run(go())


def test_a_follower_that_slept_too_long_starts_again(tmp_path):
    async def go():
        log = ChangeLog.sqlite(tmp_path / "changes.db", "me")
        await log.start()
        try:
            cache = Spy()
            follower = Follower(log, cache)
            await follower.step()
            follower._last_ok -= 3600  # an hour without a step: rows may have been pruned
            await follower.step()
            assert cache.dropped == ["/", "/"]
        finally:
            await log.close()

    asyncio.run(go())


def test_mariadb_logs_a_write_in_its_own_transaction(mariadb_dsn):  # noqa: F811
    """On MariaDB the change's row commits with the write (no extra commit, no window):
    nothing is left for the note after it."""
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig
    from jalien.catalogue.service import Catalogue
    from jalien.roles.central_peers import _Notes
    from tests.catalogue.conftest import ADMIN

    async def go():
        backend = MariaDBBackend(MariaDBConfig(hosts=[mariadb_dsn]))
        await backend.start()
        log = ChangeLog.mariadb(mariadb_dsn, "this-host")
        await log.start()
        try:
            catalogue = Catalogue(backend)
            catalogue.changes = _Notes(log)
            await catalogue.mkdir(ADMIN, "/alice/in-tx", parents=True)
            rows = await log.after(0)
            assert any("/alice/in-tx" in paths for _, _, paths, _ in rows), rows
            assert log.appended == 0  # every row came with its write's transaction
        finally:
            await log.close()
            await backend.close()

    asyncio.run(go())
