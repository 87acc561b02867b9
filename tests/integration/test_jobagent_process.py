"""A real `jalien-bin --role jobagent` process against a real jcentral (embedded SE): a user's
job with an input and outputs ends DONE and its outputs are downloadable; the payload reaches
the grid as the job through the agent's local socket (whoami, spy); a user's kill ends the
payload; a payload that leaks memory ends ERROR_E. The agent is configured exactly as the
VoBox's startup script configures it: environment variables only, the jobagent token as PEM
text (no token file anywhere)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import free_port, jalien_bin, run_setup, start_central, stop

pytestmark = pytest.mark.integration
HOME = "/alice/cern.ch/user/j/jdoe"
SITE = "ALICE::TEST::SITE"
CE = "ALICE::TEST::CE"


class Grid:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)
        assert done.returncode == 0, done.stderr
        self.binary = free_port()
        self.log = tmp / "jcentral.log"
        env = {"JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_PORT": str(free_port())}
        self.proc = start_central(self.home, self.log, free_port(), self.binary, env=env)
        self.agent_token: tuple[str, str] = ("", "")

    @property
    def ca_dir(self) -> Path:
        return self.home / "certificates"

    def user(self) -> Client:
        context = client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.ca_dir
        )
        return Client("127.0.0.1", self.binary, context, reconnect=False)

    def options(self) -> Options:
        import ssl

        ctx = ssl.create_default_context(capath=str(self.ca_dir))
        ctx.check_hostname = False
        return Options(ssl=ctx, backoff=0.2)

    def agent_env(self, work: Path, **extra: str) -> dict[str, str]:
        cert, key = self.agent_token
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            TMPDIR=str(work),
            JALIEN_HOST="127.0.0.1",
            JALIEN_PORT=str(self.binary),
            X509_CERT_DIR=str(self.ca_dir),
            JALIEN_TOKEN_CERT=cert,
            JALIEN_TOKEN_KEY=key,
            JALIEN_SITE=SITE,
            JALIEN_CE=CE,
            JALIEN_JOBAGENT_TTL="3600",
            JALIEN_WORKDIR=str(work),
            JALIEN_MONITOR_INTERVAL="0.2",
            JALIEN_JOBAGENT_MAX_JOBS="1",
            JALIEN_STATE_DIR=str(work / "state"),
        )
        env.update(extra)
        return env

    def start_agent(self, work: Path, **extra: str) -> tuple[subprocess.Popen, Path]:
        work.mkdir(parents=True, exist_ok=True)
        log = work.parent / f"{work.name}.log"
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [*jalien_bin(), "--role", "jobagent"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.agent_env(work, **extra),
        )
        return proc, log


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    g = Grid(tmp_path_factory.mktemp("agentgrid"))

    async def token():
        user = g.user()
        await user.connect()
        reply = await user.call("token", "-t", "jobagent", "-hours", "2")
        await user.close()
        assert reply.exitcode == 0, reply.error
        return reply.results[0]["tokencert"], reply.results[0]["tokenkey"]

    g.agent_token = asyncio.run(token())
    yield g
    stop(g.proc)


def wait_exit(proc: subprocess.Popen, log: Path, seconds: float = 120) -> int:
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"the jobagent did not end:\n{log.read_text()}") from None


async def submit(user: Client, jdl: str) -> int:
    reply = await user.call("submit", "=<", jdl)
    assert reply.exitcode == 0, reply.error
    return int(reply.results[0]["jobId"])


async def job_info(user: Client, job_id: int) -> dict[str, str]:
    reply = await user.call("jobinfo", str(job_id))
    assert reply.exitcode == 0, reply.error
    return reply.results[0]


async def wait_state(user: Client, job_id: int, states: set[str], proc, log) -> dict[str, str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        info = await job_info(user, job_id)
        if info["status"] in states:
            return info
        assert proc.poll() is None, log.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}:\n{log.read_text()}")


JOB_SCRIPT = """#!/bin/sh
set -e
tr a-z A-Z < in.txt > out.txt
echo "job $ALIEN_PROC_ID running in $PWD"
{python} -m jalien whoami > whoami.txt
{python} -m jalien spy > spy.txt
"""


def test_job_runs_done_with_outputs(grid, tmp_path):
    async def go():
        user = grid.user()
        await user.connect()
        src = tmp_path / "src"
        src.mkdir()
        (src / "in.txt").write_text("hello grid\n")
        (src / "job.sh").write_text(JOB_SCRIPT.format(python=sys.executable))
        up = await copy(
            user, [f"file:{src}/in.txt", f"file:{src}/job.sh"], f"{HOME}/agent1/", grid.options()
        )
        assert up.exitcode == 0, [r.error for r in up.results]
        job_id = await submit(
            user,
            f'Executable = "{HOME}/agent1/job.sh";\n'
            f'InputFile = {{"LF:{HOME}/agent1/in.txt"}};\n'
            'OutputFile = {"out.txt", "whoami.txt", "spy.txt", "stdout@disk=1"};\n'
            "TTL = 300;\n",
        )
        proc, log = grid.start_agent(tmp_path / "work")
        code = await asyncio.to_thread(wait_exit, proc, log)
        assert code == 0, log.read_text()
        info = await job_info(user, job_id)
        assert info["status"] == "DONE", (info, log.read_text())
        trace = await user.call("ps", "-trace", str(job_id))
        text = trace.results[0]["message"]
        for state in ("ASSIGNED", "STARTED", "RUNNING", "SAVING", "SAVED", "DONE"):
            assert f"to {state}" in text, text
        assert "maxrss=" in text, text  # the resource trace came with the final state
        dest = tmp_path / "dl"
        outdir = info["outputDir"] or f"{HOME}/alien-job-{job_id}/"  # central's default
        down = await copy(user, [f"{outdir}*"], f"file:{dest}/", grid.options())
        assert down.exitcode == 0, [r.error for r in down.results]
        assert (dest / "out.txt").read_text() == "HELLO GRID\n"
        assert (dest / "whoami.txt").read_text().strip() == "jdoe"
        assert f"job {job_id} running" in (dest / "stdout").read_text()
        spy = (dest / "spy.txt").read_text()
        assert f"job {job_id}:" in spy and "processes:" in spy, spy
        assert not list((tmp_path / "work").glob("jalien-job-*")), "the sandbox was not removed"
        await user.close()

    asyncio.run(go())


def test_user_kill_stops_the_payload(grid, tmp_path):
    async def go():
        user = grid.user()
        await user.connect()
        job_id = await submit(user, 'Executable = "/bin/sleep"; Arguments = "600"; TTL = 900;')
        proc, log = grid.start_agent(tmp_path / "work")
        try:
            await wait_state(user, job_id, {"RUNNING"}, proc, log)
            sleepers = [
                p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"
            ]
            assert sleepers, log.read_text()
            killed = await user.call("kill", str(job_id))
            assert killed.exitcode == 0, killed.error
            code = await asyncio.to_thread(wait_exit, proc, log)
        finally:
            stop(proc)
        assert code == 0, log.read_text()
        assert (await job_info(user, job_id))["status"] == "KILLED"
        assert "kill received" in log.read_text()
        gone = psutil.wait_procs(sleepers, timeout=10)[1]
        assert not gone, f"payload processes survived: {gone}"
        await user.close()

    asyncio.run(go())


LEAK = """#!{python}
import time
hoard = []
while True:
    hoard.append(b"x" * 4_000_000)
    time.sleep(0.01)
"""


def test_memory_leak_ends_error_e(grid, tmp_path):
    async def go():
        user = grid.user()
        await user.connect()
        src = tmp_path / "leak.py"
        src.write_text(LEAK.format(python=sys.executable))
        up = await copy(user, [f"file:{src}"], f"{HOME}/agent3/leak.py", grid.options())
        assert up.exitcode == 0, [r.error for r in up.results]
        job_id = await submit(
            user, f'Executable = "{HOME}/agent3/leak.py"; MemorySize = "100MB"; TTL = 300;'
        )
        proc, log = grid.start_agent(tmp_path / "work")
        code = await asyncio.to_thread(wait_exit, proc, log)
        assert code == 0, log.read_text()
        info = await job_info(user, job_id)
        assert info["status"] == "ERROR_E", (info, log.read_text())
        assert "memory limit exceeded" in info["error"], info
        await user.close()

    asyncio.run(go())


def test_bad_credentials_exit_nonzero_with_a_message(grid, tmp_path):
    proc, log = grid.start_agent(tmp_path / "work", JALIEN_TOKEN_CERT="/nonexistent/cert.pem")
    code = wait_exit(proc, log, 60)
    assert code == 1
    text = log.read_text()
    assert "JALIEN_TOKEN_CERT" in text and "Traceback" not in text, text


def test_no_job_exits_zero(grid, tmp_path):
    proc, log = grid.start_agent(tmp_path / "work", JALIEN_CE="ALICE::NOWHERE::CE")
    assert wait_exit(proc, log, 60) == 0, log.read_text()
    assert "no job matched" in log.read_text()


ALIENPY_SCRIPT = """#!/bin/sh
{alienpy} whoami > whoami.txt 2> alienpy.err
{alienpy} ls {home}/agent5/ >> whoami.txt 2>> alienpy.err
head -n 1 "$JALIEN_TOKEN_KEY" > keytype.txt
"""


def test_alienpy_in_the_payload_reaches_the_grid_as_the_job(grid, tmp_path, alienpy):
    """alien.py finds the agent's WebSocket through JALIEN_HOST/JALIEN_WSPORT and presents the
    job token from JALIEN_TOKEN_CERT/KEY, as in a JAliEn job: files in its TMPDIR, because the
    job token's key is EC (PKCS#8), which alien.py 1.7.0 takes from a file but not as text."""

    async def go():
        user = grid.user()
        await user.connect()
        script = tmp_path / "alienpy.sh"
        script.write_text(ALIENPY_SCRIPT.format(alienpy=alienpy, home=HOME))
        up = await copy(user, [f"file:{script}"], f"{HOME}/agent5/alienpy.sh", grid.options())
        assert up.exitcode == 0, [r.error for r in up.results]
        job_id = await submit(
            user,
            f'Executable = "{HOME}/agent5/alienpy.sh"; TTL = 300;\n'
            'OutputFile = {"whoami.txt", "alienpy.err", "keytype.txt"};',
        )
        proc, log = grid.start_agent(tmp_path / "work")
        assert await asyncio.to_thread(wait_exit, proc, log) == 0, log.read_text()
        info = await job_info(user, job_id)
        assert info["status"] == "DONE", (info, log.read_text())
        dest = tmp_path / "dl"
        outdir = f"{HOME}/alien-job-{job_id}/"
        down = await copy(user, [f"{outdir}*"], f"file:{dest}/", grid.options())
        assert down.exitcode == 0, [r.error for r in down.results]
        text = (dest / "whoami.txt").read_text()
        assert text.splitlines()[0].strip() == "jdoe", (text, (dest / "alienpy.err").read_text())
        assert "alienpy.sh" in text, (text, (dest / "alienpy.err").read_text())
        assert (dest / "keytype.txt").read_text().strip() == "-----BEGIN PRIVATE KEY-----"
        await user.close()

    asyncio.run(go())


def test_a_token_central_does_not_trust_ends_the_agent_at_once(grid, tmp_path):
    from jalien.auth.certs import certs_pem, issue_user_cert, key_pem, make_ca

    ca, ca_key = make_ca("rogue CA")
    cert, key = issue_user_cert(ca, ca_key, "jobagent")
    proc, log = grid.start_agent(
        tmp_path / "work",
        JALIEN_TOKEN_CERT=certs_pem(cert).decode(),
        JALIEN_TOKEN_KEY=key_pem(key).decode(),
    )
    assert wait_exit(proc, log, 60) == 1
    text = log.read_text()
    assert "did not accept the jobagent token" in text and "Traceback" not in text, text


def test_an_agent_killed_9_takes_its_payload_along(grid, tmp_path):
    """The payload runs in a session of its own; the kernel still ends it with the agent."""

    async def go():
        user = grid.user()
        await user.connect()
        job_id = await submit(user, 'Executable = "/bin/sleep"; Arguments = "600"; TTL = 900;')
        proc, log = grid.start_agent(tmp_path / "work")
        try:
            await wait_state(user, job_id, {"RUNNING"}, proc, log)
            sleepers = [
                p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"
            ]
            assert sleepers, log.read_text()
            proc.kill()
            proc.wait(30)
            alive = psutil.wait_procs(sleepers, timeout=10)[1]
            assert not alive, f"the payload outlived its agent: {alive}"
        finally:
            stop(proc)
            await user.call("kill", str(job_id))  # the lead's watchdog would mark it
            await user.close()

    asyncio.run(go())
