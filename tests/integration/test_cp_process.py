"""cp against real processes: jcentral with its embedded SE (this site) and a second SE
process (another site, throttled so that it can be killed mid-transfer). The copy engine
runs in the test; `jalien-bin cp` is run once as users run it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import free_port, jalien_bin, run_setup, stop

pytestmark = pytest.mark.integration
FAR = "ALICE::FAR::SE"
NEAR = "ALICE::LOCAL::SE"


def _wait_for(log, text, proc, what):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start:\n{log.read_text()}")


class Grid:
    def __init__(self, tmp):
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)
        assert done.returncode == 0, done.stderr
        self.ws, self.binary, self.se1, self.se2 = (free_port() for _ in range(4))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "JALIEN_SE_PORT": str(self.se1)}
        self.central_log = tmp / "jcentral.log"
        self.central = self._spawn(
            ["--role", "jcentral", "--ws-port", str(self.ws), "--binary-port", str(self.binary)],
            self.central_log,
            {"JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_NAME": NEAR},
        )
        _wait_for(self.central_log, "jcentral ready", self.central, "jcentral")
        self.se_log = tmp / "se2.log"
        self.start_far_se()

    def _spawn(self, args, log, env):
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        cmd = [*jalien_bin(), *args, "--home", str(self.home), "--listen", "127.0.0.1"]
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**self.env, **env})

    def start_far_se(self):
        before = self.se_log.read_text() if self.se_log.exists() else ""
        env = {
            "JALIEN_SE_ROOT": str(self.tmp / "se2"),
            "JALIEN_SE_PORT": str(self.se2),
            "JALIEN_SE_MAX_RATE": str(3_000_000),
        }
        self.far = self._spawn(["--role", "se"], self.se_log, env)
        deadline = time.monotonic() + 60
        while self.se_log.read_text().count("se ready") <= before.count("se ready"):
            assert self.far.poll() is None and time.monotonic() < deadline, self.se_log.read_text()
            time.sleep(0.05)

    def user_ssl(self):
        return client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.home / "certificates"
        )

    def se_ssl(self):
        ctx = ssl.create_default_context(capath=str(self.home / "certificates"))
        ctx.check_hostname = False
        return ctx


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    g = Grid(tmp_path_factory.mktemp("cpgrid"))
    yield g
    stop(g.far)
    stop(g.central)


@pytest.fixture
async def central(grid):
    client = Client("127.0.0.1", grid.binary, grid.user_ssl(), reconnect=False)
    await client.connect()
    far = f"https://127.0.0.1:{grid.se2}/se"
    added = await client.call("addSE", "-site", "FAR", "-qos", "disk", FAR, far)
    assert added.exitcode == 0, added.error
    yield client
    await client.close()


def make_files(root, names, size=50_000):
    out = {}
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = hashlib.sha256(name.encode()).digest() * (size // 32) + bytes([i]) * (size % 32)
        path.write_bytes(data)
        out[name] = data
    return out


def opts(grid, **kw):
    return Options(ssl=grid.se_ssl(), backoff=0.2, **kw)


async def test_upload_glob_download_skip_and_corrupt_replica(grid, central, tmp_path):
    names = [f"run{r}/f{i}.zip" for r in range(3) for i in range(4)] + ["run0/log.txt"]
    data = make_files(tmp_path / "src", names)
    for run in range(3):
        up = await copy(
            central, [f"file:{tmp_path}/src/run{run}/*"], f"out/run{run}/",
            opts(grid, threads=8, specs="disk:2"),
        )  # fmt: skip
        assert up.exitcode == 0, [r.error for r in up.results]
        assert not any(r.notes for r in up.results), [r.notes for r in up.results]
    assert up.count("copied") == 4
    where = await central.call("whereis", "out/run1/f2.zip")
    assert {r["seName"] for r in where.results} == {NEAR, FAR}

    dest = tmp_path / "dl"
    down = await copy(central, ["out/*/*.zip"], f"file:{dest}/", opts(grid, threads=8))
    assert down.exitcode == 0 and down.count("copied") == 12, [r.error for r in down.results]
    for name, content in data.items():
        got = dest / name
        assert (got.read_bytes() == content) if name.endswith(".zip") else not got.exists()
    assert not list(dest.rglob("*.jalien-part"))
    again = await copy(central, ["out/*/*.zip"], f"file:{dest}/", opts(grid, threads=8))
    assert again.count("skipped") == 12 and again.exitcode == 0
    assert "12 skipped, 0 failed" in again.summary()

    # the near replica of one file goes bad: detected, the far one is used
    near_pfn = next(r["pfn"] for r in where.results if r["seName"] == NEAR)
    on_disk = grid.home / "se" / urlsplit(near_pfn).path.lstrip("/")
    on_disk.write_bytes(b"X" + on_disk.read_bytes()[1:])
    (dest / "run1/f2.zip").unlink()
    fixed = await copy(central, ["out/run1/f2.zip"], f"file:{dest}/run1/f2.zip", opts(grid))
    assert fixed.exitcode == 0 and fixed.count("copied") == 1
    assert (dest / "run1/f2.zip").read_bytes() == data["run1/f2.zip"]
    assert "checksum mismatch" in fixed.results[0].notes[0] and NEAR in fixed.results[0].notes[0]

    missing = await copy(
        central, ["out/nope.zip", "out/run2/f0.zip"], f"file:{dest}/x/", opts(grid)
    )
    assert missing.exitcode == 1 and missing.count("failed") == 1 and missing.count("copied") == 1


async def test_forged_and_out_of_scope_envelopes_refused(grid, central, tmp_path):
    make_files(tmp_path, ["one.bin"])
    up = await copy(central, [f"file:{tmp_path}/one.bin"], "scoped/one.bin", opts(grid))
    assert up.exitcode == 0
    replica = (await central.call("access", "read", "scoped/one.bin")).results[0]
    body, sig = replica["envelope"].split(".")
    raw = base64.urlsafe_b64decode(body + "==")
    forged_body = base64.urlsafe_b64encode(raw.replace(b'"read"', b'"write"')).rstrip(b"=")
    other = (await central.call("access", "-s", "1", "write", "scoped/two.bin")).results[0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=grid.se_ssl())) as http:
        async with http.get(f"{replica['url']}?authz={forged_body.decode()}.{sig}") as r:
            assert r.status == 403 and "forged" in await r.text()
        async with http.put(f"{replica['url']}?authz={other['envelope']}", data=b"x") as r:
            assert r.status == 403 and "not /se/" in await r.text()
        async with http.get(replica["url"]) as r:
            assert r.status == 401
        async with http.get(f"{replica['url']}?authz={replica['envelope']}") as r:
            assert r.status == 200


async def test_se_killed_mid_transfer_resumes(grid, central, tmp_path):
    data = make_files(tmp_path, ["big.bin"], size=6_000_000)["big.bin"]
    up = await copy(central, [f"file:{tmp_path}/big.bin"], "big/big.bin", opts(grid, specs=FAR))
    assert up.exitcode == 0, up.results[0].error
    dest = tmp_path / "got"
    task = asyncio.create_task(
        copy(central, ["big/big.bin"], f"file:{dest}/", opts(grid, retries=8))
    )
    part = dest / "big.bin.jalien-part"
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > 1_000_000):
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.05)
    grid.far.send_signal(signal.SIGKILL)
    grid.far.wait(10)
    await asyncio.sleep(0.3)
    assert not task.done()
    await asyncio.to_thread(grid.start_far_se)
    report = await asyncio.wait_for(task, 60)
    assert report.exitcode == 0, report.results[0].error
    assert (dest / "big.bin").read_bytes() == data and not part.exists()
    assert "resuming" in grid.se_log.read_text()


def test_cli_cp_exit_code_and_summary(grid, tmp_path):
    env = {
        **os.environ,
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(grid.binary),
        "X509_USER_CERT": str(grid.globus / "usercert.pem"),
        "X509_USER_KEY": str(grid.globus / "userkey.pem"),
        "X509_CERT_DIR": str(grid.home / "certificates"),
        "JALIEN_STATE_DIR": str(grid.home),
        # a private TMPDIR: token files another client left in /tmp must not be picked up
        "TMPDIR": str(tmp_path),
        "X509_USER_PROXY": str(tmp_path / "no-proxy"),
    }
    make_files(tmp_path, ["cli.bin"])
    run = [*jalien_bin(), "cp", "-T", "2"]
    up = subprocess.run(
        [*run, f"file:{tmp_path}/cli.bin", "cli/"], env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    assert "1 copied" in up.stderr
    down = subprocess.run(
        [*run, "cli/cli.bin", "cli/missing.bin", f"file:{tmp_path}/back/"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert down.returncode == 1, down.stderr
    assert "cp: cli/missing.bin:" in down.stderr and "1 copied" in down.stderr
    assert (tmp_path / "back/cli.bin").read_bytes() == (tmp_path / "cli.bin").read_bytes()


async def test_submit_a_jdl_from_the_catalogue(grid, central, tmp_path):
    """The JDL is uploaded like any file; central reads it from the SE to submit it."""
    jdl = tmp_path / "job.jdl"
    jdl.write_text('Executable = "/bin/echo";\nArguments = "grid $1";\nTTL = 300;\n')
    up = await copy(central, [f"file:{jdl}"], "jdls/job.jdl", opts(grid))
    assert up.exitcode == 0, [r.error for r in up.results]
    reply = await central.call("submit", "jdls/job.jdl", "hello")
    assert reply.exitcode == 0, reply.error
    job = reply.results[0]["jobId"]
    shown = await central.call("ps", "-jdl", job)
    assert 'arguments = "grid hello"' in shown.results[0]["jdl"]
    missing = await central.call("submit", "jdls/none.jdl")
    assert missing.exitcode == 2


async def test_an_empty_file_round_trips(grid, central, tmp_path):
    """A job's empty stdout is a file like any other: uploaded, then downloaded."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "empty.log").write_bytes(b"")
    up = await copy(central, [f"file:{tmp_path}/src/empty.log"], "out/empty/", opts(grid))
    assert up.exitcode == 0, [r.error for r in up.results]
    down = await copy(central, ["out/empty/empty.log"], f"file:{tmp_path}/dl/", opts(grid))
    assert down.exitcode == 0, [r.error for r in down.results]
    assert (tmp_path / "dl" / "empty.log").read_bytes() == b""
