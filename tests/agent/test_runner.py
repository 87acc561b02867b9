"""One job's life with a fake central and a fake copy engine (the integration test runs the
real ones): the states reported, outputs uploaded (files and archives), failures mapped to
ERROR_IB / ERROR_E / ERROR_S, a kill, and the spy answered on the job's local socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest
from cryptography import x509

from jalien.agent.job import JobSpec, OutputItem
from jalien.agent.localsocket import JobTokenAuthenticator
from jalien.agent.runner import JobRunner, RunConfig
from jalien.auth.certs import dn_of
from jalien.auth.errors import AuthError
from jalien.net.client import Client, ConnectionLost
from jalien.net.identity import Identity
from jalien.wire import site_api
from jalien.wire.messages import Reply, Request
from jalien.wire.site_api import StatusChange


class FakeCentral:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.changes: list[StatusChange] = []  # the typed state reports

    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply:
        self.calls.append((command, *options))
        return Reply()

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        assert request.command == "setJobStatus" and not request.options
        change = site_api.decode(request.data[0], StatusChange)
        self.changes.append(change)
        return await self.call(request.command, *change.words(), timeout=timeout)

    def states(self) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "setJobStatus"]

    def fields(self, state: str) -> dict[str, str]:
        for call in self.calls:
            if call[0] == "setJobStatus" and call[2] == state:
                return dict(w.partition("=")[::2] for w in call[3:])
        raise KeyError(state)


class FakeCopier:
    def __init__(self, grid: Path) -> None:
        self.grid = grid
        self.uploaded: dict[str, tuple[bytes, str]] = {}

    async def download(self, central, lfns, dest_dir):
        errors = []
        for lfn in lfns:
            src = self.grid / lfn.lstrip("/")
            if src.is_file():
                shutil.copy(src, dest_dir / src.name)
            else:
                errors.append(f"{lfn}: no such file")
        return errors

    async def upload(self, central, path, lfn, specs):
        if "fail" in specs:
            return "no SE to write to"
        self.uploaded[lfn] = (path.read_bytes(), specs)
        return None


def make_runner(tmp_path, job_token, *, executable, arguments=(), **job):
    cert, key = job_token.issue("7")
    spec = JobSpec(
        queue_id=7,
        user="jdoe",
        output_dir="/alice/cern.ch/user/j/jdoe/alien-job-7/",
        executable=executable,
        arguments=list(arguments),
        token_cert=cert,
        token_key=key,
        **job,
    )
    central = FakeCentral()
    copier = FakeCopier(tmp_path / "grid")
    (tmp_path / "work").mkdir(exist_ok=True)
    config = RunConfig(
        site="ALICE::TEST::SITE",
        node="wn1",
        workdir=str(tmp_path / "work"),
        ca_dir=job_token.ca_dir,
        interval=0.05,
        base_env={"PATH": os.environ["PATH"], "X509_CERT_DIR": str(job_token.ca_dir)},
        kill_grace=2.0,
    )
    dn = dn_of(x509.load_pem_x509_certificate(cert.encode()))
    identity = Identity(dn=dn, login="jdoe", roles=("job",), token="job", job_id="7")
    job_conn = Client("127.0.0.1", 9, None, reconnect=False)  # never used by these payloads
    runner = JobRunner(
        spec, agent=central, job_conn=job_conn, copier=copier, config=config, identity=identity
    )
    return runner, central, copier


SCRIPT = """#!/bin/sh
set -e
tr a-z A-Z < in.txt > out.txt
echo one > a.root; echo two > b.root
echo "running $ALIEN_PROC_ID"
{python} -m jalien spy > spy.txt
"""


async def test_done_with_outputs_and_archive(tmp_path, job_token):
    grid = tmp_path / "grid" / "data"
    grid.mkdir(parents=True)
    (grid / "in.txt").write_text("abc\n")
    script = tmp_path / "job.sh"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    runner, central, copier = make_runner(
        tmp_path,
        job_token,
        executable=str(script),
        inputs=["/data/in.txt"],
        outputs=[
            OutputItem(name="out.txt", specs="disk:2"),
            OutputItem(name="spy.txt"),
            OutputItem(name="stdout"),
            OutputItem(name="roots.zip", members=["*.root"], archive=True),
        ],
    )
    assert await runner.run() == "DONE"
    assert central.states() == ["STARTED", "RUNNING", "SAVING", "SAVED", "DONE"]
    assert central.fields("STARTED")["node"] == "wn1"
    assert "maxpss=" in central.fields("DONE")["message"]
    done = central.changes[-1]  # typed: the trace travels as numbers, not as text
    assert done.state == "DONE" and done.exit_code == 0 and done.message == ""
    assert done.trace is not None and done.trace.samples >= 0 and done.trace.wall > 0
    out = "/alice/cern.ch/user/j/jdoe/alien-job-7/"
    assert copier.uploaded[out + "out.txt"] == (b"ABC\n", "disk:2")
    assert copier.uploaded[out + "stdout"][0] == b"running 7\n"
    spy = copier.uploaded[out + "spy.txt"][0].decode()
    assert "job 7:" in spy and "processes:" in spy and "stdout (tail):" in spy, spy
    archive = tmp_path / "roots.zip"
    archive.write_bytes(copier.uploaded[out + "roots.zip"][0])
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["a.root", "b.root"]
    assert not runner.sandbox.root.exists()


async def test_executable_from_the_grid_and_nonzero_exit(tmp_path, job_token):
    (tmp_path / "grid" / "bin").mkdir(parents=True)
    (tmp_path / "grid" / "bin" / "fail.sh").write_text("#!/bin/sh\necho bad >&2\nexit 3\n")
    runner, central, _ = make_runner(tmp_path, job_token, executable="/bin/fail.sh")
    assert await runner.run() == "ERROR_E"
    fields = central.fields("ERROR_E")
    assert fields["exitcode"] == "3" and fields["error"] == "the payload exited with code 3"


async def test_missing_input_is_error_ib(tmp_path, job_token):
    runner, central, _ = make_runner(
        tmp_path, job_token, executable="/bin/true", inputs=["/data/missing.txt"]
    )
    assert await runner.run() == "ERROR_IB"
    assert central.states() == ["STARTED", "ERROR_IB"]
    assert "missing.txt: no such file" in central.fields("ERROR_IB")["error"]


async def test_missing_package_is_error_ib(tmp_path, job_token):
    runner, central, _ = make_runner(
        tmp_path, job_token, executable="/bin/true", packages=["VO_ALICE@ROOT::v1"]
    )
    assert await runner.run() == "ERROR_IB"
    assert "JALIEN_PACKAGES_DIR" in central.fields("ERROR_IB")["error"]


async def test_failed_upload_and_missing_output_are_error_s(tmp_path, job_token):
    runner, central, _ = make_runner(
        tmp_path,
        job_token,
        executable="/bin/true",
        outputs=[OutputItem(name="stdout", specs="fail"), OutputItem(name="nothing.root")],
    )
    assert await runner.run() == "ERROR_S"
    error = central.fields("ERROR_S")["error"]
    assert "stdout: no SE to write to" in error and "nothing.root: no such file" in error


LEAK = "import time\nh = []\nwhile True:\n    h.append(b'x' * 2_000_000)\n    time.sleep(0.01)\n"


async def test_memory_leak_ends_error_e(tmp_path, job_token):
    runner, central, _ = make_runner(
        tmp_path, job_token, executable=sys.executable, arguments=["-c", LEAK], memory=60 << 20
    )
    assert await runner.run() == "ERROR_E"
    assert central.states() == ["STARTED", "RUNNING", "ERROR_E"]
    assert central.fields("ERROR_E")["error"].startswith("memory limit exceeded")
    assert any(c[0] == "jobHeartbeat" for c in central.calls)


async def test_ttl_ends_error_e(tmp_path, job_token):
    runner, central, _ = make_runner(
        tmp_path, job_token, executable="/bin/sleep", arguments=["60"], ttl=1
    )
    assert await runner.run() == "ERROR_E"
    assert "TTL exceeded" in central.fields("ERROR_E")["error"]


async def test_kill_stops_the_payload_and_reports_nothing(tmp_path, job_token):
    runner, central, _ = make_runner(tmp_path, job_token, executable="/bin/sleep", arguments=["60"])
    task = asyncio.ensure_future(runner.run())
    deadline = time.monotonic() + 30
    while runner.payload is None or not runner.trace.samples:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    pid = runner.payload.pid
    runner.kill()
    assert await task == "KILLED"
    assert central.states() == ["STARTED", "RUNNING"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not runner.sandbox.root.exists()


async def test_abort_reports_error_e(tmp_path, job_token):
    runner, central, _ = make_runner(tmp_path, job_token, executable="/bin/sleep", arguments=["60"])
    task = asyncio.ensure_future(runner.run())
    while runner.payload is None:
        await asyncio.sleep(0.02)
    runner.abort("the JobAgent got signal SIGTERM")
    assert await task == "ERROR_E"
    assert central.fields("ERROR_E")["error"] == "the JobAgent got signal SIGTERM"


def test_local_socket_lets_in_its_job_token_only(job_token):
    cert, _ = job_token.issue("7")
    other, _ = job_token.issue("8")
    identity = Identity(dn="job", login="jdoe", roles=("job",))
    gate = JobTokenAuthenticator(cert.encode(), identity)
    assert gate.identify_cert(x509.load_pem_x509_certificate(cert.encode())) is identity
    with pytest.raises(AuthError, match="is not the token of the job"):
        gate.identify_cert(x509.load_pem_x509_certificate(other.encode()))


class FlakyCentral(FakeCentral):
    """Central away for the first two state reports (a restart): the agent waits it out."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        if request.command == "setJobStatus" and self.failures:
            self.failures -= 1
            raise ConnectionLost("connection lost: central restarting")
        return await super().request(request, timeout=timeout)


async def test_state_reports_wait_for_central(tmp_path, job_token, monkeypatch):
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    runner, _, _ = make_runner(tmp_path, job_token, executable="/bin/true")
    runner.agent = central = FlakyCentral()
    assert await runner.run() == "DONE"
    assert central.states() == ["STARTED", "RUNNING", "SAVING", "SAVED", "DONE"]


_real_sleep = asyncio.sleep


async def _no_sleep(delay, *args):
    await _real_sleep(min(delay, 0.01), *args)


async def test_a_full_sandbox_ends_error_e(tmp_path, job_token):
    fill = "head -c 3000000 /dev/zero > big.dat; sleep 60"
    runner, central, _ = make_runner(
        tmp_path, job_token, executable="/bin/sh", arguments=["-c", fill], disk=1 << 20
    )
    assert await runner.run() == "ERROR_E"
    assert "WorkDirectorySize is 1 MB" in central.fields("ERROR_E")["error"]
