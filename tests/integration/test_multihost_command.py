"""The multi-host topology starts with one command (build/multihost.py, `./jalien.sh
multihost`): a Galera cluster, two jcentrals as hosts on their own nodes, a VoBox given
both; a user given both endpoints submits a job that a JobAgent runs to DONE; stop ends
every process it started."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.galera import _missing, read_env, unavailable

pytestmark = [pytest.mark.integration, pytest.mark.cython_only]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "build" / "multihost.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def ours(root: Path) -> list[int]:
    """Processes started for *root* (their command line or environment names it)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + str(proc.info["environ"] or {})
        except (psutil.Error, TypeError):
            continue
        if str(root) in text and proc.pid != psutil.Process().pid:
            found.append(proc.pid)
    return found


async def submit_and_wait(root: Path) -> str:
    env = read_env(root / "client.env")
    ends = [e.rpartition(":") for e in env["JALIEN_CENTRAL_HOSTS"].split(",")]
    endpoints = [(host, int(port)) for host, _, port in ends]
    context = client_context(env["X509_USER_CERT"], env["X509_USER_KEY"], env["X509_CERT_DIR"])
    user = Client(*endpoints[0], context, alternates=endpoints[1:], reconnect=False)
    await user.connect()
    try:
        jdl = 'Executable = "/bin/echo"; Arguments = "multihost"; TTL = 300;'
        reply = await user.call("submit", "=<", jdl)
        assert reply.exitcode == 0, reply.error
        job = reply.results[0]["jobId"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            info = (await user.call("jobinfo", job)).results[0]
            if info["status"] in ("DONE", "ERROR_E", "FAILED", "EXPIRED"):
                return str(info["status"])
            await asyncio.sleep(0.3)
        return str(info["status"])
    finally:
        await user.close()


def test_one_command_starts_and_stops_the_topology(tmp_path):
    problem = _missing()
    if problem:
        unavailable(problem)
    root = tmp_path / "mh"
    started = run("start", str(root), "--centrals", "2")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "2 jcentrals at" in started.stdout
        status = asyncio.run(submit_and_wait(root))
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in root.glob("*.log"))
        assert status == "DONE", logs
        again = run("start", str(root))  # already running: nothing new
        assert again.returncode == 0, again.stderr
    finally:
        stopped = run("stop", str(root))
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 30
    while ours(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(root), [psutil.Process(p).cmdline() for p in ours(root)]
