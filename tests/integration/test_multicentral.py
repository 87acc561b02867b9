"""Two jcentrals as two hosts on one MariaDB (issue 21): the user on one, the JobAgent
(through its VoBox) on the other. kill and spy reach the agent through the routes and
pushes in the task queue's database (jobs.routes); a catalogue write on one central leaves
the other's cached find and whereis answers within a bound, measured here
(catalogue.change_log, peer_poll_interval 0.2 s)."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from jalien.storage.cp import Options, copy
from tests.catalogue.mariadb_servers import mariadb_system  # noqa: F401 - the fixture
from tests.galera import galera_cluster  # noqa: F401 - the fixture
from tests.integration.multicentral import Databases, Grid

# real processes, nothing twin-specific: run once, in the Cython pass (the suite's budget)
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]

HOME = "/alice/cern.ch/user/j/jdoe"
CE = "JALIEN::MULTI::CE"
POLL = 0.2  # JALIEN_PEER_POLL_INTERVAL of the grid
SCRIPT = """#!/bin/sh
echo "payload says $1"
sleep "$2"
"""


@pytest.fixture(scope="module", params=["mariadb", "galera"])
def grid(request, tmp_path_factory):
    """Two centrals on the machine's MariaDB, or on two nodes of the Galera cluster."""
    databases = Databases(request, request.param)
    made = Grid(tmp_path_factory.mktemp("multi"), 2, databases.dsns, galera=databases.galera)
    try:
        made.start()
        yield made
    finally:
        made.close()
        databases.drop()


def options(grid: Grid) -> Options:
    context = ssl.create_default_context(capath=str(grid.centrals[0].home / "certificates"))
    context.check_hostname = False
    return Options(ssl=context, backoff=0.2)


async def wait_state(user, job: int, states: set[str], grid: Grid, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while True:
        info = (await user.call("jobinfo", str(job))).results[0]
        if info["status"] in states:
            return info["status"]
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job} is {info['status']}, not {states}\n{grid.logs()}")
        await asyncio.sleep(0.2)


def test_kill_and_spy_reach_an_agent_on_another_central(grid):
    # the VoBox and its agents on central 1, the user on central 0
    grid.start_vobox(f"127.0.0.1:{grid.centrals[1].binary}", CE)
    try:
        _kill_and_spy(grid)
    finally:
        grid.stop_vobox()


def _kill_and_spy(grid: Grid) -> None:

    async def go():
        user = grid.user(0)
        other = grid.user(1)
        await user.connect()
        await other.connect()
        src = grid.tmp / "src"
        src.mkdir(exist_ok=True)
        (src / "job.sh").write_text(SCRIPT)
        up = await copy(user, [f"file:{src}/job.sh"], f"{HOME}/multi/", options(grid))
        assert up.exitcode == 0, [r.error for r in up.results]
        text = f'Executable = "{HOME}/multi/job.sh";\nArguments = "spied-on 120";\nTTL = 200;\n'
        # submitted where the agent asks (until the broker follows the task queue, a
        # central matches what it was given)
        reply = await other.call("submit", "=<", text)
        assert reply.exitcode == 0, reply.error
        job = int(reply.results[0]["jobId"])
        await wait_state(user, job, {"RUNNING"}, grid)

        async def spy(what: str):
            return await user.call("spy", str(job), what)

        deadline = time.monotonic() + 30
        while True:
            answer = await spy("stdout")
            if answer.exitcode == 0 and "payload says spied-on" in answer.results[0]["message"]:
                break
            assert time.monotonic() < deadline, (answer.exitcode, answer.error, grid.logs())
            await asyncio.sleep(0.3)
        started = time.monotonic()
        assert "host:" in (await spy("nodeinfo")).results[0]["message"]
        spy_seconds = time.monotonic() - started
        killed = await user.call("kill", str(job))
        assert killed.exitcode == 0, killed.error
        t0 = time.monotonic()
        deadline = t0 + 30
        while "kill received" not in grid.agent_logs():
            assert time.monotonic() < deadline, grid.logs()
            await asyncio.sleep(0.1)
        kill_seconds = time.monotonic() - t0
        assert (await user.call("jobinfo", str(job))).results[0]["status"] == "KILLED"
        late = await spy("stdout")
        assert late.exitcode == 2, late
        print(f"\nspy across centrals: {spy_seconds:.2f} s; kill reached the agent in "
              f"{kill_seconds:.2f} s (poll {POLL} s)")  # fmt: skip
        await user.close()
        await other.close()

    asyncio.run(go())


def test_a_write_leaves_the_other_centrals_cache_within_the_bound(grid):
    async def go():
        a, b = grid.user(0), grid.user(1)
        await a.connect()
        await b.connect()
        base = f"{HOME}/coherent"
        assert (await b.call("mkdir", "-p", base)).exitcode == 0
        delays = []
        for n in range(6):
            # a's answer is cached on central 0 (asked twice: the second is a hit)
            for _ in range(2):
                found = await a.call("find", base, "*.txt")
            name = f"{base}/f{n}.txt"
            assert name not in str(found.results)
            wrote = await b.call("touch", name)
            assert wrote.exitcode == 0, wrote.error
            t0 = time.monotonic()
            while True:
                found = await a.call("find", base, "*.txt")
                if name in str(found.results):
                    break
                assert time.monotonic() - t0 < 10 * POLL + 5, grid.logs()
                await asyncio.sleep(0.01)
            delays.append(time.monotonic() - t0)
        delays.sort()
        print(f"\ncache coherence: find on central 0 saw central 1's write after "
              f"{delays[0] * 1000:.0f}-{delays[-1] * 1000:.0f} ms (median "
              f"{delays[len(delays) // 2] * 1000:.0f} ms, poll {POLL * 1000:.0f} ms)")  # fmt: skip
        # the bound: one poll interval plus a read of the log and the answer
        assert delays[-1] < POLL + 1.0, delays
        await a.close()
        await b.close()

    asyncio.run(go())


def test_kill_and_spy_reach_an_agent_on_another_worker(tmp_path):
    """One host, `--workers 2` on its SQLite files: the user's connections land on either
    worker (SO_REUSEPORT), the agent's on one of them; every spy and the kill reach it
    through the routes in {home}/routes.db."""
    grid = Grid(tmp_path, 1, None, env={"JALIEN_WORKERS": "2"})
    try:
        grid.start()
        grid.start_vobox(f"127.0.0.1:{grid.centrals[0].binary}", CE)
        asyncio.run(_spy_from_each_connection(grid))
    finally:
        grid.close()


def _spied_on_both(grid: Grid) -> bool:
    """Both workers' audit logs (audit.jsonl, audit-w1.jsonl) show a spy request."""
    logs = [grid.centrals[0].home / "log" / name for name in ("audit.jsonl", "audit-w1.jsonl")]
    return all(p.exists() and '"spy"' in p.read_text(errors="replace") for p in logs)


async def _spy_from_each_connection(grid: Grid) -> None:
    users = [grid.user(0) for _ in range(4)]
    for user in users:
        await user.connect()
    src = grid.tmp / "src"
    src.mkdir(exist_ok=True)
    (src / "job.sh").write_text(SCRIPT)
    up = await copy(users[0], [f"file:{src}/job.sh"], f"{HOME}/multi/", options(grid))
    assert up.exitcode == 0, [r.error for r in up.results]
    text = f'Executable = "{HOME}/multi/job.sh";\nArguments = "on-a-worker 120";\nTTL = 200;\n'
    reply = await users[0].call("submit", "=<", text)
    assert reply.exitcode == 0, reply.error
    job = int(reply.results[0]["jobId"])
    await wait_state(users[0], job, {"RUNNING"}, grid)
    # each connection on the worker the kernel gave it; more until both workers were asked
    for n in range(24):
        if n >= len(users):
            if _spied_on_both(grid):
                break
            users.append(grid.user(0))
            await users[-1].connect()
        deadline = time.monotonic() + 30
        while True:
            answer = await users[n].call("spy", str(job), "stdout")
            if answer.exitcode == 0 and "payload says on-a-worker" in answer.results[0]["message"]:
                break
            assert time.monotonic() < deadline, (answer.exitcode, answer.error, grid.logs())
            await asyncio.sleep(0.3)
    deadline = time.monotonic() + 10  # the audit log is written behind the replies
    while not _spied_on_both(grid):
        assert time.monotonic() < deadline, "every connection landed on one worker"
        await asyncio.sleep(0.1)
    killed = await users[-1].call("kill", str(job))
    assert killed.exitcode == 0, killed.error
    deadline = time.monotonic() + 30
    while "kill received" not in grid.agent_logs():
        assert time.monotonic() < deadline, grid.logs()
        await asyncio.sleep(0.1)
    for user in users:
        await user.close()
