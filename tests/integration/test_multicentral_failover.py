"""kill -9 of a jcentral under load (issue 21 item 5): two jcentrals behind one "alias" (the
clients' and the VoBox's list of endpoints, central_hosts) and a third holding the embedded
SE, all on one MariaDB. While a user submits jobs, a VoBox's JobAgents match and run them
and another user uploads files, the central the VoBox is connected to is killed -9. The
VoBox, its agents and the users go on through the other one; then, counted: every
acknowledged submission ran exactly once (each payload appends its job id to a file) and
ended DONE, every acknowledged upload is in the catalogue with its content."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import ssl
import subprocess
import time
import warnings

import psutil
import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.catalogue.mariadb_servers import mariadb_system  # noqa: F401 - the fixture
from tests.galera import galera_cluster  # noqa: F401 - the fixture
from tests.integration.multicentral import Databases, Grid

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]

HOME = "/alice/cern.ch/user/j/jdoe"
CE = "JALIEN::FAILOVER::CE"
JOBS = 24  # submitted 0.2 s apart, the kill after the 8th
FINAL = {"DONE", "ERROR_E", "ERROR_A", "EXPIRED", "KILLED", "FAILED", "ZOMBIE", "ERROR_V"}


def alias_client(grid: Grid, order: list[int]) -> Client:
    """A user's client given the endpoints of the centrals in *order* (first tried first)."""
    context = client_context(
        grid.globus / "usercert.pem",
        grid.globus / "userkey.pem",
        grid.centrals[0].home / "certificates",
    )
    ends = [("127.0.0.1", grid.centrals[i].binary) for i in order]
    client = Client(*ends[0], context, reconnect=True, connect_wait=20, alternates=ends[1:])
    client.host, client.port = ends[0]  # this test decides where it starts
    return client


def connected_to(pid: int, ports: dict[int, int]) -> int | None:
    """Which of *ports* (port -> central) the process *pid* holds a connection to."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.status == psutil.CONN_ESTABLISHED and conn.raddr.port in ports:
                return ports[conn.raddr.port]
    return None


@pytest.mark.parametrize(
    ("kind", "what"), [("mariadb", "central"), ("galera", "host"), ("galera", "node")]
)
def test_kill9_of_a_central_under_load_loses_nothing(request, tmp_path, kind, what):
    """On Galera "host": the victim's host dies whole, its jcentral and its database node;
    "node": only the database node under the VoBox's central."""
    databases = Databases(request, kind)
    grid = Grid(tmp_path, 3, databases.dsns, se=2, galera=databases.galera)
    runs = tmp_path / "runs.txt"
    runs.touch()
    killed_node: list[int] = []
    try:
        grid.start()
        pair = ",".join(f"127.0.0.1:{grid.centrals[i].binary}" for i in (0, 1))
        asyncio.run(_scenario(grid, runs, pair, databases, killed_node, what))
    finally:
        grid.close()
        databases.drop()
        if killed_node and databases.cluster is not None:
            try:  # back into the cluster for the session's other tests
                databases.cluster.start(killed_node[0])
            except RuntimeError as exc:  # the cluster goes on with two nodes: said loudly
                warnings.warn(f"Galera node {killed_node[0]} did not rejoin: {exc}", stacklevel=1)


async def _scenario(
    grid: Grid, runs, pair: str, databases: Databases, killed_node, what: str
) -> None:
    opts = Options(ssl=_se_context(grid), backoff=0.2)
    setup = alias_client(grid, [2])
    await setup.connect()
    src = grid.tmp / "src"
    src.mkdir()
    (src / "job.sh").write_text(f'#!/bin/sh\necho "$ALIEN_PROC_ID" >> {runs}\nsleep 1\n')
    up = await copy(setup, [f"file:{src}/job.sh"], f"{HOME}/fo/", opts)
    assert up.exitcode == 0, [r.error for r in up.results]
    await setup.close()

    grid.start_vobox(
        pair, CE, JALIEN_CENTRAL_HOSTS=pair, JALIEN_MAX_RUNNING_AGENTS="3"
    )  # fmt: skip
    ports = {grid.centrals[i].binary: i for i in (0, 1)}
    deadline = time.monotonic() + 60
    while (victim := connected_to(grid.vobox.pid, ports)) is None:
        assert time.monotonic() < deadline, grid.logs()
        await asyncio.sleep(0.1)
    survivor = 1 - victim
    # the users start on the victim too, with the survivor as the alias's other address
    submitter = alias_client(grid, [victim, survivor])
    uploader = alias_client(grid, [victim, survivor])
    await submitter.connect()
    await uploader.connect()
    text = f'Executable = "{HOME}/fo/job.sh";\nTTL = 100;\n'
    acked: list[int] = []
    unsure = 0
    uploads: dict[str, str] = {}  # acknowledged LFN -> md5
    upload_failures = 0
    stop = asyncio.Event()

    async def submit_all() -> None:
        nonlocal unsure
        for n in range(JOBS):
            if n == 8:
                if what != "node":
                    grid.centrals[victim].kill9()
                if databases.cluster is not None:
                    killed_node.append(databases.node(victim))
                    databases.cluster.kill(killed_node[0])
            try:
                reply = await submitter.call("submit", "=<", text, timeout=30)
            except Exception:  # lost with the central: maybe inserted, maybe not
                unsure += 1
                continue
            if reply.exitcode == 0:
                acked.append(int(reply.results[0]["jobId"]))
            else:
                unsure += 1
            await asyncio.sleep(0.2)
        stop.set()

    async def upload_all() -> None:
        nonlocal upload_failures
        n = 0
        while not stop.is_set():
            data = f"file {n} {time.time()}\n".encode() * 50
            path = grid.tmp / "up" / f"u{n}.dat"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            lfn = f"{HOME}/fo/up/u{n}.dat"
            try:
                done = await copy(uploader, [f"file:{path}"], lfn, opts)
                ok = done.exitcode == 0
            except Exception:
                ok = False
            if ok:
                uploads[lfn] = hashlib.md5(data).hexdigest()
            else:
                upload_failures += 1
            n += 1
            await asyncio.sleep(0.05)  # ~15 a second: spread over the kill, not all before it

    await asyncio.gather(submit_all(), upload_all())
    assert len(acked) >= JOBS - 4, (acked, unsure, grid.logs())
    assert uploads, grid.logs()

    # every acknowledged job ends DONE, having run exactly once
    db = databases.connect_queue(survivor)
    deadline = time.monotonic() + 240
    states: dict[int, str] = {}
    while time.monotonic() < deadline:
        cur = db.cursor()
        ids = ",".join(map(str, acked))
        cur.execute(f"SELECT queueId, state FROM QUEUE WHERE queueId IN ({ids})")
        states = {int(i): s for i, s in cur.fetchall()}
        if len(states) == len(acked) and all(s in FINAL for s in states.values()):
            break
        assert grid.vobox.poll() is None, grid.logs()
        await asyncio.sleep(0.5)
    not_done = {j: s for j, s in states.items() if s != "DONE"}
    assert len(states) == len(acked) and not not_done, (not_done, grid.logs())
    ran = [int(line) for line in runs.read_text().split()]
    twice = sorted({j for j in ran if ran.count(j) > 1})
    assert not twice, (twice, grid.logs())
    assert set(acked) <= set(ran)
    cur = db.cursor()
    cur.execute(
        "SELECT queueId, COUNT(*) FROM QUEUETRACE WHERE state='ASSIGNED' GROUP BY queueId "
        "HAVING COUNT(*) > 1"
    )
    assert not cur.fetchall()

    # every acknowledged upload is there, with its bytes, read through the survivor
    reader = alias_client(grid, [survivor])
    await reader.connect()
    back = grid.tmp / "back"
    for lfn, md5 in uploads.items():
        got = await copy(reader, [lfn], f"file:{back}/{lfn.rsplit('/', 1)[1]}", opts)
        assert got.exitcode == 0, (lfn, [r.error for r in got.results])
        data = (back / lfn.rsplit("/", 1)[1]).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5, lfn
    print(
        f"\nkill -9 of central {victim} under load: {len(acked)} submissions acknowledged "
        f"({unsure} lost with the connection, not acknowledged), all DONE, each run once; "
        f"{len(uploads)} uploads acknowledged and read back ({upload_failures} failed, "
        f"not acknowledged); {len(ran)} payload runs"
    )
    for client in (submitter, uploader, reader):
        await client.close()


def _se_context(grid: Grid) -> ssl.SSLContext:
    context = ssl.create_default_context(capath=str(grid.centrals[0].home / "certificates"))
    context.check_hostname = False
    return context


PASSWORD = "correct horse battery staple"


def test_a_jbox_and_one_shot_commands_move_to_the_other_central(request, tmp_path):
    """A detached jBox and one-shot commands given both centrals (JALIEN_CENTRAL_HOSTS): the
    central the jBox is connected to is killed -9; the next commands through the jBox, and
    one-shot commands without it, are answered by the other one."""
    from jalien.auth.certs import load_key, write_pem_key
    from jalien.net.discovery import read_token_file
    from tests.integration.conftest import jalien_bin

    databases = Databases(request, "mariadb")
    grid = Grid(tmp_path, 2, databases.dsns, se=None)
    desk = tmp_path / "desk"
    globus = desk / "home/.globus"
    globus.mkdir(parents=True, mode=0o700)
    (globus / "usercert.pem").write_bytes((grid.globus / "usercert.pem").read_bytes())
    write_pem_key(globus / "userkey.pem", load_key(grid.globus / "userkey.pem"), PASSWORD.encode())
    for name in ("tmp", "bare", "tmp2"):
        (desk / name).mkdir()
    pair = ",".join(f"127.0.0.1:{c.binary}" for c in grid.centrals)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(desk / "home"),
        "TMPDIR": str(desk / "tmp"),
        "X509_CERT_DIR": str(grid.centrals[0].home / "certificates"),
        "JALIEN_HOME": str(desk / "home/.jalien"),
        "JALIEN_CENTRAL_HOSTS": pair,
        "PYTHONUNBUFFERED": "1",
    }
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
    through_jbox = {**env, "HOME": str(desk / "bare")}
    del through_jbox["JALIEN_HOME"]

    def command(*args: str, env=through_jbox) -> subprocess.CompletedProcess:
        return subprocess.run([*jalien_bin(), *args], env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip

    jbox_pid = 0
    try:
        grid.start()
        done = subprocess.run(
            [*jalien_bin(), "--role", "jbox", "--detach", "--password-stdin"],
            env=env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        jbox_pid = int(read_token_file(desk / f"tmp/jclient_token_{os.getuid()}")["JALIEN_PID"])
        assert command("whoami").stdout == "jdoe\n"
        ports = {c.binary: i for i, c in enumerate(grid.centrals)}
        victim = connected_to(jbox_pid, ports)
        assert victim is not None
        grid.centrals[victim].kill9()
        t0 = time.monotonic()
        while (answer := command("whoami")).stdout != "jdoe\n":
            assert time.monotonic() - t0 < 60, answer.stdout + answer.stderr + grid.logs()
            time.sleep(0.2)
        moved = time.monotonic() - t0
        assert connected_to(jbox_pid, ports) == 1 - victim
        # one-shot commands without a jBox (no token file in their TMPDIR): the live one answers
        plain = desk / "plain/.globus"  # the user's key without a password: no prompt
        plain.mkdir(parents=True, mode=0o700)
        for name in ("usercert.pem", "userkey.pem"):
            (plain / name).write_bytes((grid.globus / name).read_bytes())
            (plain / name).chmod(0o600)
        alone = {**env, "TMPDIR": str(desk / "tmp2"), "HOME": str(desk / "plain")}
        for _ in range(4):  # a random start each time: the dead one first now and then
            answer = command("whoami", env=alone)
            assert (answer.returncode, answer.stdout) == (0, "jdoe\n"), answer.stderr
        print(f"\njBox moved to the other central: its first command answered {moved:.1f} s "
              "after the kill")  # fmt: skip
    finally:
        if jbox_pid:
            with contextlib.suppress(OSError):
                os.kill(jbox_pid, signal.SIGTERM)
        grid.close()
        databases.drop()
