"""Worker nodes without network, with real processes: jcentral (embedded SE) <- a VoBox
relaying a filesystem spool (`spool_dir`) <- JobAgents it forks inside a network namespace
whose only interface, loopback, is down (`unshare -n`). Jobs run to DONE with their input
staged and their outputs registered by the relay, a user's `kill` reaches the payload
through the spool, a VoBox killed -9 with requests waiting in the spool loses none and
runs none twice, and a Slurm VoBox's agents (sbatch) work the same."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from jalien.storage.cp import copy
from tests.integration.conftest import free_port, jalien_bin, run_setup, start_central, stop
from tests.integration.test_site_chain import (
    _ERRORS,
    CE,
    HOME,
    Site,
    _find,
    check_outputs,
    submit,
    upload_inputs,
    wait_states,
)
from tests.site.conftest import slurm_cluster  # noqa: F401 - the session's Slurm cluster

# nothing Cython-specific: the pure-Python pass leaves these to the Cython one
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]


def _need_unshare() -> None:
    """`unshare -n` needs util-linux and root: skipped loudly without them, failed in CI."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        reason = "network namespaces need unshare (util-linux) and root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


SCRIPT = """#!/bin/sh
# $1: a word, $2: seconds to sleep, $3: a marker the test looks for
set -e
sleep "$2"
tr a-z A-Z < in.txt > out.txt
echo "$1 from job $ALIEN_PROC_ID" >> out.txt
echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
echo "JALIEN_HOST=${JALIEN_HOST:-none}"
"""


def jdl(word: str, seconds: int = 0, marker: str = "-") -> str:
    return (
        f'Executable = "{HOME}/chain/job.sh";\n'
        f'Arguments = "{word} {seconds} {marker}";\n'
        f'InputFile = {{"LF:{HOME}/chain/in.txt"}};\n'
        'OutputFile = {"out.txt", "stdout"};\n'
        "TTL = 100;\n"
    )


class SpoolSite(Site):
    """As test_site_chain's Site, the VoBox relaying a spool to agents without network."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)
        assert done.returncode == 0, done.stderr
        self.binary = free_port()
        self.central_log = tmp / "jcentral.log"
        self.central = start_central(
            self.home,
            self.central_log,
            free_port(),
            self.binary,
            env={"JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_PORT": str(free_port())},
        )
        self.vobox_dir = tmp / "vobox"
        self.vobox_log = tmp / "vobox.log"
        self.spool = tmp / "shared" / "spool"  # the shared filesystem
        (tmp / "tmpdir").mkdir()
        (tmp / "wn").mkdir()
        agent = shlex.join(["unshare", "-n", *jalien_bin()])
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
        self.env.update(
            PYTHONUNBUFFERED="1",
            TMPDIR=str(tmp / "tmpdir"),
            JALIEN_VOBOX_DIR=str(self.vobox_dir),
            JALIEN_CE=CE,
            JALIEN_BATCH="fork",
            JALIEN_SUBMIT_INTERVAL="0.5",
            JALIEN_AGENT_START_GRACE="20",
            JALIEN_MAX_RUNNING_AGENTS="2",
            JALIEN_JOBAGENT_TTL="300",
            JALIEN_WORKDIR=str(tmp / "wn"),
            JALIEN_SPOOL_DIR=str(self.spool),
            JALIEN_JOBAGENT_COMMAND=agent,
            JALIEN_JOBAGENT_ENV="JALIEN_MONITOR_INTERVAL=0.5,JALIEN_JOBAGENT_MAX_JOBS=1,"
            "JALIEN_SPOOL_POLL=0.05",
        )
        if "JALIEN_NO_EXTENSIONS" in os.environ:
            self.env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
        self.start_vobox()

    def start_vobox(self, **env: str) -> None:
        self.env.update(env)
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
            env=self.env,
        )


@pytest.fixture(scope="module")
def spool_site(tmp_path_factory):
    """One site for the module's tests (each process start counts in CI's budget); the
    last test kills and restarts its VoBox."""
    _need_unshare()
    site = SpoolSite(tmp_path_factory.mktemp("spool-site"))
    yield lambda: site
    site.close()


async def _upload(site: SpoolSite, user) -> None:
    src = site.tmp / "src2"
    if src.exists():
        return  # uploaded by an earlier test of the module
    await upload_inputs(site, user)  # test_site_chain's script, then ours over it
    src.mkdir()
    (src / "job.sh").write_text(SCRIPT)
    await user.call("rm", f"{HOME}/chain/job.sh")
    up = await copy(user, [f"file:{src}/job.sh"], f"{HOME}/chain/job.sh", site.options())
    assert up.exitcode == 0, [r.error for r in up.results]


async def _stdout(site: SpoolSite, user, job: int) -> str:
    dest = site.tmp / f"stdout-{job}"
    info = (await user.call("jobinfo", str(job))).results[0]
    outdir = info.get("outputDir") or f"{HOME}/alien-job-{job}/"
    down = await copy(user, [f"{outdir}stdout"], f"file:{dest}/", site.options())
    assert down.exitcode == 0, [r.error for r in down.results]
    return (dest / "stdout").read_text()


def _gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        time.sleep(0.1)
    return False


def test_jobs_run_and_are_killed_on_nodes_without_network(spool_site):
    grid = spool_site()
    marker = f"spool-{uuid.uuid4().hex}"

    async def go():
        user = grid.user()
        await user.connect()
        await _upload(grid, user)
        job = await submit(user, jdl("offline"))
        info = await wait_states(grid, user, [job], {"DONE"} | _ERRORS)
        assert info[job]["status"] == "DONE", (info, grid.logs())
        await check_outputs(grid, user, job, "offline")  # staged in, uploaded by the relay
        stdout = await _stdout(grid, user, job)
        assert "interfaces: lo \n" in stdout and "JALIEN_HOST=none" in stdout, stdout
        assert not list((grid.spool / "stage").iterdir())  # the job's files are gone
        # a user's kill reaches the payload through the spool
        victim = await submit(user, jdl("victim", 120, marker))
        await wait_states(grid, user, [victim], {"RUNNING"})
        payload = await asyncio.to_thread(_find, marker)
        killed = await user.call("kill", str(victim))
        assert killed.exitcode == 0, killed.error
        assert await asyncio.to_thread(_gone, payload.pid), "the payload outlived its kill"
        info = await wait_states(grid, user, [victim], _ERRORS)
        assert info[victim]["status"] == "KILLED", info
        await user.close()

    asyncio.run(go())


def test_a_relay_killed_minus_9_loses_and_repeats_nothing(spool_site):
    grid = spool_site()
    marker = f"spool-{uuid.uuid4().hex}"

    async def go():
        user = grid.user()
        await user.connect()
        await _upload(grid, user)
        job = await submit(user, jdl("survivor", 4, marker))
        await wait_states(grid, user, [job], {"RUNNING"})
        await asyncio.to_thread(_find, marker)
        # stopped first, so that the agent's requests pile up in the spool, then killed
        grid.vobox.send_signal(signal.SIGSTOP)
        conns = grid.spool / "conns"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = [p for p in conns.glob("*/up/*") if p.name.isdigit()]
            if len(waiting) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(waiting) >= 2, "the agent wrote no request while the relay was stopped"
        grid.vobox.send_signal(signal.SIGKILL)
        grid.vobox.wait(10)
        grid.start_vobox()
        info = await wait_states(grid, user, [job], {"DONE"} | _ERRORS, seconds=60)
        assert info[job]["status"] == "DONE", (info, grid.logs())
        await check_outputs(grid, user, job, "survivor")
        trace = (await user.call("ps", "-trace", str(job))).results[0]["message"]
        states = [line.rsplit(" to ", 1)[-1] for line in trace.splitlines() if "[state" in line]
        expected = ["WAITING", "ASSIGNED", "STARTED", "RUNNING", "SAVING", "SAVED", "DONE"]
        assert states == expected, trace  # each state once: none ran twice, none was lost
        await user.close()

    asyncio.run(go())


def test_a_slurm_vobox_starts_agents_on_its_spool(spool_site, slurm_cluster):  # noqa: F811
    """The same through Slurm: sbatch runs the startup script, which points at the spool."""
    grid = spool_site()

    async def go():
        stop(grid.vobox)  # the fork VoBox goes; its idle agents' requests wait in its spool
        grid.spool = grid.tmp / "shared" / "spool-slurm"
        grid.start_vobox(
            JALIEN_BATCH="slurm",
            JALIEN_SLURM_CONF=str(slurm_cluster.conf),
            JALIEN_SLURM_PARTITION=slurm_cluster.partition,
            JALIEN_BATCH_JOB_NAME="jalien-spool-test",
            JALIEN_SPOOL_DIR=str(grid.spool),
            JALIEN_VOBOX_DIR=str(grid.tmp / "vobox-slurm"),
        )
        grid.vobox_dir = grid.tmp / "vobox-slurm"
        user = grid.user()
        await user.connect()
        await _upload(grid, user)
        job = await submit(user, jdl("slurmed"))
        info = await wait_states(grid, user, [job], {"DONE"} | _ERRORS)
        assert info[job]["status"] == "DONE", (info, grid.logs())
        await check_outputs(grid, user, job, "slurmed")
        assert "interfaces: lo \n" in await _stdout(grid, user, job)
        assert list((grid.vobox_dir / "agents").glob("*/batchid")), "no agent went through sbatch"
        await user.close()

    asyncio.run(go())
