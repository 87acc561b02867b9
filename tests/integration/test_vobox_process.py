"""The VoBox as users start it (``jalien-bin --role vobox``) against a real jcentral, on the
fork batch system: it submits one JobAgent per waiting job, keeps within its slots, hands
each agent the contract's environment and a JobAgent token that works through the VoBox
itself, renews that token, and relays and caches its clients' calls.

The agents are a stand-in (the real JobAgent has its own tests; the whole chain is the
lead's): it records the environment it got, runs ``jalien-bin whoami`` with it, and holds
its slot until the test lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from jalien.auth.accounts import Account, AccountMap
from jalien.auth.certs import dn_of, load_cert
from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import free_port, jalien_bin, run_setup, start_central, stop
from tests.site.conftest import slurm_cluster  # noqa: F401 - the session's Slurm cluster
from tests.site.test_startup_script import CONTRACT  # the variables every agent gets

pytestmark = pytest.mark.integration

JDL = 'Executable = "/bin/true"; TTL = 60;'
CE = "JALIEN::TEST::CE"
STANDIN = """\
import json, os, shlex, subprocess, sys, time
with open("env.json.tmp", "w") as out:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, out)
os.rename("env.json.tmp", "env.json")
command = shlex.split(os.environ["STANDIN_JALIEN_BIN"]) + ["whoami"]
done = subprocess.run(command, capture_output=True, text=True, timeout=120)
with open("whoami.tmp", "w") as out:
    out.write(f"{done.returncode}\\n{done.stdout}{done.stderr}")
os.rename("whoami.tmp", "whoami.txt")
deadline = time.monotonic() + 300
while not os.path.exists(os.environ["STANDIN_STOP"]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


@dataclass
class Grid:
    home: Path
    globus: Path
    binary_port: int
    tmp: Path

    def user_context(self):
        return client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.home / "certificates"
        )


@pytest.fixture
def grid(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    # the VoBox uses the host certificate; its account carries the proxy role (setup
    # registers it so too: made explicit here, as a site's admin would)
    accounts = AccountMap.load(home / "accounts.toml")
    host_dn = dn_of(load_cert(home / "host" / "hostcert.pem"))
    accounts.add(Account(login="vobox", dn=host_dn, roles=["proxy"], home="/alice/vobox/"))
    accounts.save(home / "accounts.toml")
    binary = free_port()
    proc = start_central(home, tmp_path / "jcentral.log", free_port(), binary)
    try:
        yield Grid(home, globus, binary, tmp_path)
    finally:
        stop(proc)


def submit(grid: Grid, n: int) -> None:
    async def go():
        client = Client("127.0.0.1", grid.binary_port, grid.user_context(), reconnect=False)
        await client.connect()
        for _ in range(n):
            assert (await client.call("submit", "=<", JDL)).exitcode == 0
        await client.close()

    asyncio.run(go())


class VoBoxProc:
    def __init__(self, grid: Grid, **settings: str) -> None:
        self.grid = grid
        self.dir = grid.tmp / "vobox"
        self.stop_file = grid.tmp / "agents-may-stop"
        self.log = grid.tmp / "vobox.log"
        self.fork = settings.get("JALIEN_BATCH", "fork") == "fork"
        standin = grid.tmp / "standin.py"
        standin.write_text(STANDIN)
        tmpdir = grid.tmp / "tmpdir"
        tmpdir.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(tmpdir),  # no stale token files of other runs
            "JALIEN_VOBOX_DIR": str(self.dir),
            "JALIEN_CE": CE,
            "JALIEN_SUBMIT_INTERVAL": "0.2",
            "JALIEN_JOBAGENT_COMMAND": shlex.join([sys.executable, str(standin)]),
            "STANDIN_JALIEN_BIN": shlex.join(jalien_bin()),
            "STANDIN_STOP": str(self.stop_file),
            **settings,
        }
        for name in ("X509_USER_PROXY", "JALIEN_HOST", "JALIEN_PORT", "JALIEN_TOKEN_CERT"):
            env.pop(name, None)
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                *jalien_bin(),
                "--role",
                "vobox",
                "--home",
                str(grid.home),
                "--central",
                f"127.0.0.1:{grid.binary_port}",
                "--listen",
                "127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait(lambda: "vobox ready" in self.log_text(), "the VoBox to start")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, predicate, what: str, tries: int = 1200) -> None:
        for _ in range(tries):  # bounded: 60 s at most
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the VoBox exited ({self.proc.returncode}):\n{self.log_text()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"gave up waiting for {what}:\n{self.log_text()[-4000:]}")

    def status(self) -> dict:
        try:
            return json.loads((self.dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def cycles(self) -> int:
        return int(self.status().get("cycles", 0))

    def wait_cycles(self, n: int) -> None:
        target = self.cycles() + n
        self.wait(lambda: self.cycles() >= target, f"{n} more cycles")

    def agent_dirs(self) -> list[Path]:
        return sorted(p for p in (self.dir / "agents").glob("*") if p.is_dir())

    def close(self) -> None:
        self.stop_file.touch()
        stop(self.proc)
        if not self.fork:  # Slurm's agents: the stop file ends them, the cluster cancels
            return
        for directory in self.agent_dirs():  # the agents outlive a VoBox: end them here
            with contextlib.suppress(OSError, ValueError):
                pid = int((directory / "batchid").read_text())
                for _ in range(100):
                    os.killpg(pid, 0)
                    time.sleep(0.05)
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def vobox(grid):
    started: list[VoBoxProc] = []

    def start(**settings: str) -> VoBoxProc:
        proc = VoBoxProc(grid, **settings)
        started.append(proc)
        return proc

    yield start
    for each in started:
        each.close()


def test_one_agent_per_waiting_job_with_the_contract(grid, vobox):
    submit(grid, 3)
    box = vobox()
    box.wait(lambda: len(list(box.dir.glob("agents/*/whoami.txt"))) == 3, "three agents")
    box.wait_cycles(5)
    assert len(box.agent_dirs()) == 3  # the three starting agents stand for the three jobs
    for directory in box.agent_dirs():
        got = json.loads((directory / "env.json").read_text())
        assert got["argv"] == ["--role", "jobagent"]
        env = got["env"]
        assert set(env) >= CONTRACT
        assert (env["JALIEN_HOST"], env["JALIEN_CE"]) == ("127.0.0.1", CE)
        assert int(env["JALIEN_PORT"]) == box.status()["binary_port"]
        for name in ("JALIEN_TOKEN_CERT", "JALIEN_TOKEN_KEY"):
            assert os.stat(env[name]).st_mode & 0o077 == 0
        # the JobAgent token works, through the VoBox, as the JobAgent identity
        assert (directory / "whoami.txt").read_text().split() == ["0", "jobagent"]


def test_relays_and_caches_a_users_calls(grid, vobox):
    box = vobox()
    port = box.status().get("binary_port") or _port_from_log(box)

    async def go():
        context = grid.user_context()
        client = Client("127.0.0.1", port, context, reconnect=False)
        await client.connect()
        who = await client.call("whoami", "-v")
        assert (who.results[0]["user"], who.results[0]["roles"]) == ("jdoe", "users,admin")
        first, second = await client.call("version"), await client.call("version")
        assert first.results == second.results and first.exitcode == 0
        status = (await client.call("vobox.status")).results[0]  # answered by the VoBox
        assert (status["ce"], status["batch"], status.get("last_error", "")) == (CE, "fork", "")
        assert int(status["cache_hits"]) >= 1 and status["upstream_connected"] == "True"
        await client.close()

    asyncio.run(go())
    box.wait_cycles(2)
    assert box.status()["cache_hits"] >= 1


def _port_from_log(box: VoBoxProc) -> int:
    line = next(x for x in box.log_text().splitlines() if "vobox ready" in x)
    return int(line.split("binary port ")[1].split(",")[0])


def test_keeps_within_its_slots(grid, vobox):
    submit(grid, 5)
    box = vobox(JALIEN_MAX_RUNNING_AGENTS="2", JALIEN_AGENT_START_GRACE="0")
    box.wait(lambda: len(list(box.dir.glob("agents/*/env.json"))) == 2, "two agents")
    box.wait_cycles(5)
    assert len(box.agent_dirs()) == 2
    assert box.status()["last_cycle"]["running"] == 2


def test_renews_the_jobagent_token(grid, vobox):
    box = vobox(JALIEN_JOBAGENT_TOKEN_HOURS="0.005", JALIEN_JOBAGENT_TTL="5")
    box.wait(lambda: box.status().get("token_renewals", 0) >= 1, "a token renewal", tries=1200)
    assert "JobAgent token renewed" in box.log_text()


def test_agents_through_slurm(grid, vobox, slurm_cluster):  # noqa: F811 - the fixture
    submit(grid, 2)
    box = vobox(
        JALIEN_BATCH="slurm",
        JALIEN_SLURM_CONF=str(slurm_cluster.conf),
        JALIEN_SLURM_PARTITION=slurm_cluster.partition,
        JALIEN_BATCH_JOB_NAME="jalien-vobox-test",
    )
    box.wait(lambda: len(list(box.dir.glob("agents/*/whoami.txt"))) == 2, "two Slurm agents")
    box.wait_cycles(3)
    assert len(box.agent_dirs()) == 2
    for directory in box.agent_dirs():
        env = json.loads((directory / "env.json").read_text())["env"]
        assert set(env) >= CONTRACT and env["SLURM_JOB_NAME"] == "jalien-vobox-test"
        assert (directory / "whoami.txt").read_text().split() == ["0", "jobagent"]
    assert box.status()["batch"] == "slurm"


@pytest.mark.parametrize(
    ("env", "text", "code"),
    [
        ({"JALIEN_BATCH": "pbs"}, "batch must be fork, slurm or arc", 2),
        ({"JALIEN_JOBAGENT_ENV": "no-equals"}, "is not KEY=VALUE", 2),
        ({"JALIEN_JOBAGENT_COMMAND": "'unbalanced"}, "jobagent_command", 2),
        ({"JALIEN_VOBOX_CERT": "usercert", "JALIEN_VOBOX_KEY": "userkey"}, "lacks the proxy", 1),
    ],
)
def test_refuses_to_start_with_a_clear_message(grid, env, text, code):
    for key in ("JALIEN_VOBOX_CERT", "JALIEN_VOBOX_KEY"):
        if key in env:
            env[key] = str(grid.globus / f"{env[key]}.pem")
    done = subprocess.run(
        [
            *jalien_bin(),
            "--role",
            "vobox",
            "--home",
            str(grid.home),
            "--central",
            f"127.0.0.1:{grid.binary_port}",
            "--listen",
            "127.0.0.1",
        ],
        env={**os.environ, "JALIEN_VOBOX_DIR": str(grid.tmp / "vobox"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert text in done.stderr and "Traceback" not in done.stderr, done.stderr
