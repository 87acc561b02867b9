"""`background` against a real jcentral: every loop and thread pool listed, an admin pauses
the catalogue's writer (a write waits, then lands), resizes a reader pool, changes an
interval and runs a step now, all live; a plain user is refused."""

from __future__ import annotations

import asyncio

import pytest

from jalien.net.client import Client
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.trustgrid import K, add_bob, trust_grid

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]  # no twin involved: once


@pytest.fixture(scope="module")
def grid_home(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("background")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    add_bob(home)
    port = free_port()
    log = tmp / "jcentral.log"
    proc = start_central(home, log, free_port(), port)
    yield home, globus, port, log
    stop(proc)
    assert "Traceback" not in log.read_text()


async def listing(client: Client) -> dict[str, dict[str, str]]:
    reply = await client.call("background", timeout=30)
    assert reply.exitcode == 0, reply.error
    return {r["name"]: r for r in reply.results}


async def until(client: Client, name: str, check, tries: int = 200) -> dict[str, str]:
    for _ in range(tries):  # bounded: the state changes within a few ms
        record = (await listing(client))[name]
        if check(record):
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never got there: {record}")


async def test_an_admin_sees_and_steers_background_work(grid_home):
    home, globus, port, _ = grid_home
    async with trust_grid(home, globus, port) as grid:
        admin = await grid.client(K.ADMIN)
        seen = await listing(admin)
        for name in (
            "job-watchdog", "live-jobs", "cache-readers",  # loops
            "catalogue-read", "catalogue-write", "taskqueue-read", "taskqueue-write",
            "cache-writer", "audit-writer",
        ):  # fmt: skip
            assert name in seen, sorted(seen)
        assert (
            seen["job-watchdog"]["kind"] == "loop" and seen["catalogue-read"]["kind"] == "threads"
        )
        assert int(seen["taskqueue-write"]["done"]) > 0  # the job trust_grid submitted

        # the catalogue's writer paused: a mkdir waits in its queue, and lands once resumed
        assert (await admin.call("background", "pause", "catalogue-write")).exitcode == 0
        mkdir = asyncio.ensure_future(admin.call("mkdir", "-p", "paused/dir", timeout=60))
        state = await until(admin, "catalogue-write", lambda r: int(r["queued"]) >= 1)
        assert state["state"] == "paused" and not mkdir.done()
        resumed = await admin.call("background", "resume", "catalogue-write")
        assert resumed.exitcode == 0 and resumed.results[0]["state"] != "paused"
        assert (await asyncio.wait_for(mkdir, 30)).exitcode == 0
        assert (await admin.call("ls", "paused")).exitcode == 0

        # a reader pool resized live; a loop's interval and a step now
        resized = await admin.call("background", "resize", "catalogue-read", "5")
        assert resized.exitcode == 0 and resized.results[0]["size"] == "5"
        changed = await admin.call("background", "interval", "job-watchdog", "3600")
        assert changed.exitcode == 0 and changed.results[0]["interval"] == "3600"
        before = int(seen["job-watchdog"]["done"])
        assert (await admin.call("background", "run", "job-watchdog")).exitcode == 0
        await until(admin, "job-watchdog", lambda r: int(r["done"]) > before)

        # refusals: what cannot be done, and who may not
        writer = await admin.call("background", "resize", "catalogue-write", "2")
        assert writer.exitcode != 0 and "no size" in writer.error
        assert (await admin.call("background", "pause", "nothing")).exitcode == 2
        assert (await admin.call("background", "interval", "job-watchdog", "x")).exitcode != 0
        bob = await grid.client(K.USER)
        for words in (("background",), ("background", "pause", "catalogue-read")):
            reply = await bob.call(*words, timeout=30)
            assert reply.exitcode == 13 and "Permission denied" in reply.error
        assert (await listing(admin))["catalogue-read"]["state"] != "paused"
        audit = await admin.call("background", "pause", "audit-writer")
        assert audit.exitcode == 22 and "cannot be paused" in audit.error
        assert int((await listing(admin))["audit-writer"]["done"]) > 0
