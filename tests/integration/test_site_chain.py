"""The whole chain with real processes, as on a site: jcentral (embedded SE, a quick job
watchdog) <- a VoBox (`--role vobox`) that submits real JobAgents (`--role jobagent`)
through fork, Slurm or an ARC CE (A-REX) <- the payloads. A user uploads a script and its
input, submits JDLs, and downloads the outputs the jobs registered; a JobAgent killed -9 in
the middle of a job leaves it to the watchdog (ZOMBIE, requeued) and a new agent runs it to
DONE."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from jalien.auth.certs import dn_of, load_cert
from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import ROOT, free_port, jalien_bin, run_setup, start_central, stop
from tests.site.arc_ce import ArcCE, agent_python, arc_or_skip, public_dir
from tests.site.conftest import slurm_cluster  # noqa: F401 - the session's Slurm cluster

pytestmark = pytest.mark.integration

HOME = "/alice/cern.ch/user/j/jdoe"
CE = "JALIEN::CHAIN::CE"
SCRIPT = """#!/bin/sh
# $1: a word for the output, $2: seconds to sleep, $3: a marker the test looks for
set -e
sleep "$2"
tr a-z A-Z < in.txt > out.txt
echo "$1 from job $ALIEN_PROC_ID" >> out.txt
"""


def jdl(word: str, seconds: int = 0, marker: str = "-") -> str:
    return (
        f'Executable = "{HOME}/chain/job.sh";\n'
        f'Arguments = "{word} {seconds} {marker}";\n'
        f'InputFile = {{"LF:{HOME}/chain/in.txt"}};\n'
        'OutputFile = {"out.txt", "stdout"};\n'
        "TTL = 100;\n"  # within the agents' JALIEN_JOBAGENT_TTL
    )


class Site:
    """jcentral + a VoBox in one temporary directory; the user's client and cp options."""

    def __init__(self, tmp: Path, batch_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)  # also registers the host as the VoBox
        assert done.returncode == 0, done.stderr
        self.binary = free_port()
        self.central_log = tmp / "jcentral.log"
        self.central = start_central(
            self.home,
            self.central_log,
            free_port(),
            self.binary,
            env={
                "JALIEN_EMBEDDED_SE": "1",
                "JALIEN_SE_PORT": str(free_port()),
                # an agent that is silent for 4 s is lost; its job waits again 2 s later
                "JALIEN_JOB_HEARTBEAT_TIMEOUT": "4",
                "JALIEN_JOB_ZOMBIE_TIMEOUT": "2",
                "JALIEN_JOB_WATCHDOG_INTERVAL": "0.5",
            },
        )
        self.vobox_dir = tmp / "vobox"
        self.vobox_log = tmp / "vobox.log"
        tmpdir = tmp / "tmpdir"
        tmpdir.mkdir()
        (tmp / "wn").mkdir()  # the worker nodes' scratch space
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            TMPDIR=str(tmpdir),
            JALIEN_VOBOX_DIR=str(self.vobox_dir),
            JALIEN_CE=CE,
            JALIEN_SUBMIT_INTERVAL="0.5",
            JALIEN_AGENT_START_GRACE="5",
            JALIEN_JOBAGENT_TTL="300",
            JALIEN_WORKDIR=str(tmp / "wn"),
            JALIEN_JOBAGENT_ENV="JALIEN_MONITOR_INTERVAL=0.5,JALIEN_JOBAGENT_MAX_JOBS=1",
        )
        env.update(batch_env)  # the batch system's settings, and what it must change
        if "JALIEN_NO_EXTENSIONS" in os.environ:
            env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
        out = open(self.vobox_log, "ab")  # noqa: SIM115 - closed with the process
        self.vobox = subprocess.Popen(
            [
                *jalien_bin(),
                "--role",
                "vobox",
                "--home",
                str(self.home),
                "--central",
                f"127.0.0.1:{self.binary}",
                "--listen",
                "127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def logs(self) -> str:
        text = [f"--- vobox\n{self.vobox_log.read_text(errors='replace')[-6000:]}"]
        for log in sorted(self.vobox_dir.glob("agents/*/*.log"))[-4:]:
            text.append(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
        text.append(f"--- jcentral\n{self.central_log.read_text(errors='replace')[-3000:]}")
        return "\n".join(text)

    def user(self) -> Client:
        context = client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.home / "certificates"
        )
        return Client("127.0.0.1", self.binary, context, reconnect=False)

    def options(self) -> Options:
        context = ssl.create_default_context(capath=str(self.home / "certificates"))
        context.check_hostname = False
        return Options(ssl=context, backoff=0.2)

    def close(self) -> None:
        stop(self.vobox)
        # fork agents outlive their VoBox (as batch jobs do): end what is left of them
        for proc in psutil.process_iter(["cmdline", "environ"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if str(self.tmp) in (proc.info["environ"] or {}).get("JALIEN_WORKDIR", ""):
                    proc.kill()
        stop(self.central)


@pytest.fixture
def site(tmp_path):
    made: list[Site] = []

    def start(**batch_env: str) -> Site:
        made.append(Site(tmp_path, batch_env))
        return made[-1]

    yield start
    for each in made:
        each.close()


async def upload_inputs(site: Site, user: Client) -> None:
    src = site.tmp / "src"
    src.mkdir()
    (src / "in.txt").write_text("hello grid\n")
    (src / "job.sh").write_text(SCRIPT)
    up = await copy(
        user, [f"file:{src}/in.txt", f"file:{src}/job.sh"], f"{HOME}/chain/", site.options()
    )
    assert up.exitcode == 0, [r.error for r in up.results]


async def submit(user: Client, text: str) -> int:
    reply = await user.call("submit", "=<", text)
    assert reply.exitcode == 0, reply.error
    return int(reply.results[0]["jobId"])


async def wait_states(
    site: Site, user: Client, jobs: list[int], states: set[str], seconds: float = 180
) -> dict[int, dict[str, str]]:
    deadline = time.monotonic() + seconds
    info: dict[int, dict[str, str]] = {}
    while time.monotonic() < deadline:
        for job in jobs:
            info[job] = (await user.call("jobinfo", str(job))).results[0]
        if all(i["status"] in states for i in info.values()):
            return info
        assert site.vobox.poll() is None, site.logs()
        assert "ended at once" not in site.vobox_log.read_text(errors="replace"), site.logs()
        await asyncio.sleep(0.2)
    got = {job: i["status"] for job, i in info.items()}
    raise AssertionError(f"jobs never all reached {states}: {got}\n{site.logs()}")


async def check_outputs(site: Site, user: Client, job: int, word: str) -> None:
    info = (await user.call("jobinfo", str(job))).results[0]
    outdir = info.get("outputDir") or f"{HOME}/alien-job-{job}/"
    dest = site.tmp / f"out-{job}"
    down = await copy(user, [f"{outdir}*"], f"file:{dest}/", site.options())
    assert down.exitcode == 0, [r.error for r in down.results]
    assert (dest / "out.txt").read_text() == f"HELLO GRID\n{word} from job {job}\n"


def test_jobs_run_through_a_vobox_on_fork(site):
    grid = site(JALIEN_BATCH="fork")

    async def go():
        user = grid.user()
        await user.connect()
        await upload_inputs(grid, user)
        words = ["alpha", "beta", "gamma"]
        jobs = [await submit(user, jdl(word)) for word in words]
        info = await wait_states(grid, user, jobs, {"DONE"} | _ERRORS)
        assert {i["status"] for i in info.values()} == {"DONE"}, (info, grid.logs())
        for job, word in zip(jobs, words, strict=True):
            await check_outputs(grid, user, job, word)
            assert info[job]["ce"] == CE, info[job]
        await user.close()

    asyncio.run(go())


def test_a_jobagent_killed_mid_job_is_recovered(site):
    grid = site(JALIEN_BATCH="fork")
    marker = f"chain-{uuid.uuid4().hex}"

    async def go():
        user = grid.user()
        await user.connect()
        await upload_inputs(grid, user)
        job = await submit(user, jdl("phoenix", 3, marker))
        await wait_states(grid, user, [job], {"RUNNING"})
        payload = await asyncio.to_thread(_find, marker)
        agent = payload.parent()
        while agent is not None and "jobagent" not in " ".join(agent.cmdline()):
            agent = agent.parent()
        assert agent is not None, "the payload's JobAgent"
        os.kill(agent.pid, signal.SIGKILL)  # as a crash (its payload dies with it)
        info = await wait_states(grid, user, [job], {"DONE"} | _ERRORS, seconds=240)
        assert info[job]["status"] == "DONE", (info, grid.logs())
        trace = (await user.call("ps", "-trace", str(job))).results[0]["message"]
        assert "ZOMBIE" in trace and "no heartbeat from its JobAgent" in trace, trace
        assert "requeued: its JobAgent was lost" in trace, trace
        await check_outputs(grid, user, job, "phoenix")
        await user.close()

    asyncio.run(go())


def test_jobs_run_through_a_vobox_on_slurm(site, slurm_cluster):  # noqa: F811 - the fixture
    grid = site(
        JALIEN_BATCH="slurm",
        JALIEN_SLURM_CONF=str(slurm_cluster.conf),
        JALIEN_SLURM_PARTITION=slurm_cluster.partition,
        JALIEN_BATCH_JOB_NAME="jalien-chain-test",
    )

    async def go():
        user = grid.user()
        await user.connect()
        await upload_inputs(grid, user)
        jobs = [await submit(user, jdl(word)) for word in ("slurm1", "slurm2")]
        info = await wait_states(grid, user, jobs, {"DONE"} | _ERRORS)
        assert {i["status"] for i in info.values()} == {"DONE"}, (info, grid.logs())
        for job, word in zip(jobs, ("slurm1", "slurm2"), strict=True):
            await check_outputs(grid, user, job, word)
        await user.close()

    asyncio.run(go())


@pytest.mark.cython_only  # a real A-REX, nothing twin-specific: once
def test_jobs_run_through_a_vobox_on_arc(site):
    """central -> VoBox -> ARC CE (arcsub delegates the VoBox's proxy, uploads the agent's
    script and token) -> JobAgent in A-REX's session directory, as the CE's unprivileged
    account -> payload -> outputs. A-REX never runs jobs as root, so the agents run as
    nobody: a CA directory, a work directory and a Python they can reach are given."""
    arc_or_skip()
    found = agent_python(ROOT)
    if found is None:
        reason = "no Python the CE's account (nobody) can run this checkout with"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    command, python_env = found
    public = public_dir()
    ce: ArcCE | None = None
    try:
        (public / "wn").mkdir(mode=0o1777)
        os.chmod(public / "wn", 0o1777)
        port = free_port()
        agent_env = {
            "JALIEN_MONITOR_INTERVAL": "0.5",
            "JALIEN_JOBAGENT_MAX_JOBS": "1",
            "X509_CERT_DIR": str(public / "certificates"),
            **python_env,
        }
        grid = site(
            JALIEN_BATCH="arc",
            JALIEN_ARC_CE=f"https://localhost:{port}/arex",
            JALIEN_SUBMIT_INTERVAL="1",
            JALIEN_WORKDIR=str(public / "wn"),
            JALIEN_JOBAGENT_COMMAND=shlex.join(command),
            JALIEN_JOBAGENT_ENV=",".join(f"{k}={v}" for k, v in agent_env.items()),
        )
        shutil.copytree(grid.home / "certificates", public / "certificates")
        host = grid.home / "host"
        ce = ArcCE(
            public / "ce",
            grid.home / "certificates",
            host / "hostcert.pem",
            host / "hostkey.pem",
            [dn_of(load_cert(host / "hostcert.pem"))],  # the VoBox's identity
            port=port,
        ).start()

        async def go():
            user = grid.user()
            await user.connect()
            await upload_inputs(grid, user)
            jobs = [await submit(user, jdl(word)) for word in ("arc1", "arc2")]
            info = await wait_states(grid, user, jobs, {"DONE"} | _ERRORS)
            assert {i["status"] for i in info.values()} == {"DONE"}, (info, grid.logs())
            for job, word in zip(jobs, ("arc1", "arc2"), strict=True):
                await check_outputs(grid, user, job, word)
                assert info[job]["ce"] == CE, info[job]
            await user.close()

        try:
            asyncio.run(go())
        except AssertionError:
            raise AssertionError(ce.logs()) from None
        # the ended agents' logs came back from the CE to their directories
        fetched = list(grid.vobox_dir.glob("agents/*/jobagent.log"))
        for _ in range(600):  # bounded: A-REX notices an ended fork job within ~10 s
            if len(fetched) >= 2:
                break
            time.sleep(0.1)
            fetched = list(grid.vobox_dir.glob("agents/*/jobagent.log"))
        assert len(fetched) >= 2, grid.logs()
    finally:
        if ce is not None:
            ce.stop()
        shutil.rmtree(public, ignore_errors=True)


_ERRORS = {"ERROR_A", "ERROR_I", "ERROR_IB", "ERROR_E", "ERROR_S", "ERROR_V", "EXPIRED", "KILLED"}


def _find(marker: str) -> psutil.Process:
    for _ in range(600):  # bounded: 60 s
        for proc in psutil.process_iter(["cmdline"]):
            if marker in (proc.info["cmdline"] or []):
                return proc
        time.sleep(0.1)
    raise AssertionError(f"no payload with {marker} appeared")
