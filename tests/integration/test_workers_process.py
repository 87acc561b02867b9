"""jcentral --workers 2 as real processes: both workers serve (the audit log of each names
the client ports it served), a job submitted through one worker is matched through the
other and only once, a worker killed -9 is restarted by the supervisor, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import free_port, run_setup, start_central, stop

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]
JDL = 'Executable = "/bin/true"; TTL = 600;'
CONNECTIONS = 12  # all on one worker: 2 ** -11
READY = re.compile(r"jcentral worker (\d+) of (\d+) ready \(pid (\d+)\)")


def wait_until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_pids(log: Path) -> dict[int, int]:
    """The latest pid of each worker, from the supervisor's ready lines."""
    return {int(i): int(pid) for i, _n, pid in READY.findall(log.read_text(errors="replace"))}


def served_ports(home: Path) -> dict[int, set[int]]:
    """Worker -> the client ports its audit log has requests from."""
    out: dict[int, set[int]] = {}
    for index, name in ((0, "audit.jsonl"), (1, "audit-w1.jsonl")):
        path = home / "log" / name
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in lines:
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                if record["event"] == "request":
                    out.setdefault(index, set()).add(int(record["peer"].rsplit(":", 1)[1]))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def workers(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    log = tmp_path / "jcentral.log"
    ws, binary = free_port(), free_port()
    proc = start_central(
        home, log, ws, binary, env={"JALIEN_WORKERS": "2", "JALIEN_CACHE_HTTP_PORT": "-1"}
    )
    yield home, globus, binary, log, proc
    stop(proc)


def test_two_workers_serve_match_restart_and_stop(workers):
    home, globus, binary, log, proc = workers
    assert "(2 workers)" in log.read_text()
    context = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")

    async def connections() -> tuple[list[Client], dict[int, int]]:
        """Clients, and the worker each one's connection landed on."""
        clients = [
            Client("127.0.0.1", binary, context, reconnect=False) for _ in range(CONNECTIONS)
        ]
        for client in clients:
            await client.connect()
            assert (await client.call("pwd")).exitcode == 0
        ports = [c._protocol.transport.get_extra_info("sockname")[1] for c in clients]  # type: ignore[union-attr]

        def mapped() -> dict[int, int] | None:
            served = served_ports(home)
            where = {p: w for w, got in served.items() for p in got if p in ports}
            return where if len(where) == len(ports) else None

        where = await asyncio.to_thread(wait_until, "the audit logs", mapped)
        return clients, {i: where[port] for i, port in enumerate(ports)}

    async def go() -> None:
        clients, on = await connections()
        assert set(on.values()) == {0, 1}, f"one worker served every connection: {on}"
        by_worker = {w: next(clients[i] for i, x in on.items() if x == w) for w in (0, 1)}
        for source, target in ((0, 1), (1, 0)):
            reply = await by_worker[source].call("submit", "=<", JDL)
            job = reply.results[0]["jobId"]
            # matched through the other worker (its broker learns the job from the task
            # queue), and once: the submitting worker finds nothing afterwards
            deadline = time.monotonic() + 30
            while True:
                got = await by_worker[target].call("getMatchJob", "ttl=3600", "ce=ALICE::TEST::CE")
                if got.exitcode == 0 and got.results and got.results[0].get("queueId"):
                    break
                assert time.monotonic() < deadline, f"job {job} never matched on worker {target}"
                await asyncio.sleep(0.2)
            assert got.results[0]["queueId"] == str(job)
            again = await by_worker[source].call("getMatchJob", "ttl=3600", "ce=ALICE::TEST::CE")
            assert not (again.results and again.results[0].get("queueId")), again.results
        # jobListMatch on one worker lists a CE that asked only the other one
        none = await by_worker[1].call("getMatchJob", "ttl=3600", "ce=ALICE::ONLY1::CE")
        assert not (none.results and none.results[0].get("queueId"))  # nothing waits
        job = (await by_worker[0].call("submit", "=<", JDL)).results[0]["jobId"]
        deadline = time.monotonic() + 10
        while True:
            listed = await by_worker[0].call("jobListMatch", str(job))
            if "ALICE::ONLY1::CE" in str(listed.results):
                break
            assert time.monotonic() < deadline, listed.results
            await asyncio.sleep(0.1)
        for client in clients:
            await client.close()

    asyncio.run(go())

    before = worker_pids(log)
    assert set(before) == {0, 1}
    os.kill(before[1], signal.SIGKILL)
    after = wait_until(
        "worker 1's restart", lambda: (p := worker_pids(log)).get(1) != before[1] and p
    )
    assert after[0] == before[0] and alive(after[1])

    async def still_serving() -> None:
        client = Client("127.0.0.1", binary, context, reconnect=False)
        await client.connect()
        assert (await client.call("pwd")).exitcode == 0
        await client.close()

    asyncio.run(still_serving())
    assert stop(proc) == 0
    assert not alive(after[0]) and not alive(after[1])


def test_a_worker_that_cannot_start_ends_the_supervisor(tmp_path):
    """Bad settings in the workers: the supervisor ends with their exit code (2), once."""
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    log = tmp_path / "jcentral.log"
    with pytest.raises(RuntimeError, match="exited with 2"):
        start_central(
            home,
            log,
            free_port(),
            free_port(),
            env={"JALIEN_WORKERS": "2", "JALIEN_CATALOGUE_BACKEND": "nosuch"},
        )
    assert log.read_text().count("catalogue_backend must be sqlite or mariadb") == 1


def test_workers_end_with_a_killed_supervisor(workers):
    """kill -9 of the supervisor: its workers get SIGTERM (PR_SET_PDEATHSIG), no orphan keeps
    the ports."""
    _home, _globus, binary, log, proc = workers
    pids = worker_pids(log)
    assert set(pids) == {0, 1}
    proc.kill()
    proc.wait(10)
    wait_until("the workers' end", lambda: not any(alive(pid) for pid in pids.values()))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", binary))  # nobody listens there any more
