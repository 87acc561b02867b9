"""The data movers against real processes: jcentral with its embedded HTTPS SE and two
Debian xrootd servers on loopback. rm -r removes the files from every SE after one pass;
mirror copies HTTPS -> XRootD and back (streamed through central) and XRootD -> XRootD
(third-party copy); deleteMirror drops a replica and its file; a jcentral killed -9 in the
middle of a transfer finishes it after its restart, with one replica registered; bad input
changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.test_cp_process import make_files
from tests.storage.xrootd_server import XRootDUnavailable, binaries, start_xrootd, unavailable

# nothing twin-specific: the Cython pass (and the binary's) run it, not the pure-Python one
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]
LOCAL = "ALICE::LOCAL::SE"
XRD1, XRD2 = "ALICE::ONE::XRD", "ALICE::TWO::XRD"
HOME = "/alice/cern.ch/user/j/jdoe/"


class MoversGrid:
    def __init__(self, tmp: Path) -> None:
        try:
            binaries()
        except XRootDUnavailable as exc:
            unavailable(str(exc))
        self.tmp = tmp
        self.home, self.globus = tmp / "home", tmp / "globus"
        done = run_setup(self.home, self.globus)
        assert done.returncode == 0, done.stderr
        self.ws, self.binary, self.se_port = free_port(), free_port(), free_port()
        self.env = {
            "JALIEN_EMBEDDED_SE": "1",
            "JALIEN_SE_NAME": LOCAL,
            "JALIEN_SE_PORT": str(self.se_port),
            "JALIEN_SE_MAX_RATE": str(4_000_000),  # a big file takes long enough to kill
            "JALIEN_CACHE_HTTP_PORT": "-1",
            "JALIEN_DELETION_INTERVAL": "1",
            "JALIEN_DELETION_BACKOFF": "1",
            "JALIEN_TRANSFER_INTERVAL": "1",
            "JALIEN_TRANSFER_BACKOFF": "1",
        }
        self.starts = 0
        self.xrd = {}
        try:
            for name in (XRD1, XRD2):
                self.xrd[name] = start_xrootd(name.split("::")[1].lower())
        except XRootDUnavailable as exc:
            self.close()
            unavailable(str(exc))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1  # a log per start: each waits for its own "jcentral ready"
        self.log = self.tmp / f"jcentral-{self.starts}.log"
        self.proc = start_central(self.home, self.log, self.ws, self.binary, self.env)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        for server in self.xrd.values():
            server.close()

    def ssl(self) -> ssl.SSLContext:
        return client_context(
            self.globus / "usercert.pem", self.globus / "userkey.pem", self.home / "certificates"
        )

    def on_disk(self, pfn: str) -> Path:
        """Where a replica's bytes are, on the embedded SE or an XRootD one."""
        if pfn.startswith("https://"):
            return self.home / "se" / urlsplit(pfn).path.lstrip("/")
        port = urlsplit(pfn).port
        server = next(s for s in self.xrd.values() if s.port == port)
        return server.path_of(pfn)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    g = MoversGrid(tmp_path_factory.mktemp("movers"))
    yield g
    g.close()


async def connect(grid: MoversGrid) -> Client:
    client = Client("127.0.0.1", grid.binary, grid.ssl(), reconnect=False)
    await client.connect()
    return client


@pytest.fixture
async def central(grid):
    client = await connect(grid)
    for name in (XRD1, XRD2):
        added = await client.call("addSE", "-qos", "disk", name, grid.xrd[name].url)
        assert added.exitcode == 0, added.error
    yield client
    await client.close()


def se_ssl(grid: MoversGrid) -> ssl.SSLContext:
    ctx = ssl.create_default_context(capath=str(grid.home / "certificates"))
    ctx.check_hostname = False
    return ctx


async def upload(grid, central, tmp, names, size=50_000) -> dict[str, bytes]:
    data = make_files(tmp, names, size=size)
    for name in names:
        up = await copy(central, [f"file:{tmp}/{name}"], name, Options(ssl=se_ssl(grid)))
        assert up.exitcode == 0, [r.error for r in up.results]
    return data


async def replicas(central, lfn) -> dict[str, str]:
    where = await central.call("whereis", lfn)
    assert where.exitcode == 0, where.error
    return {r["seName"]: r["pfn"] for r in where.results if r.get("pfn")}


async def until(what, check, timeout=40.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def transfers(central, *args) -> list[dict]:
    listed = await central.call("listTransfer", *args)
    assert listed.exitcode == 0, listed.error
    return [r for r in listed.results if "transferId" in r]


async def all_done(central, ids) -> bool:
    rows = {r["transferId"]: r for r in await transfers(central)}
    failed = [rows[i] for i in ids if rows[i]["status"] == "FAILED"]
    assert not failed, failed
    return all(rows[i]["status"] == "DONE" for i in ids)


async def test_rm_r_removes_from_every_se(grid, central, tmp_path):
    names = [f"rmdir/sub/f{i}" for i in range(4)]
    await upload(grid, central, tmp_path, names)
    queued = await central.call("mirror", "rmdir", XRD1)
    assert queued.exitcode == 0, queued.error
    ids = [r["transferId"] for r in queued.results if "transferId" in r]
    assert len(ids) == 4
    await until("mirror to XRD1", lambda: all_done(central, ids))
    pfns = [p for n in names for p in (await replicas(central, n)).values()]
    assert len(pfns) == 8 and all(grid.on_disk(p).is_file() for p in pfns)

    removed = await central.call("rm", "-r", "rmdir")
    assert removed.exitcode == 0, removed.error

    async def gone():
        return not any(grid.on_disk(p).exists() for p in pfns)

    await until("the SEs to hold none of the files", gone, timeout=20)
    report = await central.call("listDeletions", "-summary")
    assert "held: 0, queued: 0, failed: 0" in report.results[0]["message"]


async def test_mirror_tpc_and_delete_mirror(grid, central, tmp_path):
    data = await upload(grid, central, tmp_path, ["tpc/a.root"], size=300_000)
    lfn = HOME + "tpc/a.root"
    one = await central.call("mirror", lfn, XRD1)
    ids = [r["transferId"] for r in one.results if "transferId" in r]
    await until("https -> xrootd", lambda: all_done(central, ids))
    local = (await replicas(central, lfn))[LOCAL]
    dropped = await central.call("deleteMirror", lfn, LOCAL)
    assert dropped.exitcode == 0, dropped.error
    assert list(await replicas(central, lfn)) == [XRD1]
    await until("the local replica's file to go", lambda: _absent(grid.on_disk(local)))
    last = await central.call("deleteMirror", lfn, XRD1)
    assert last.exitcode != 0 and "last replica" in last.error

    two = await central.call("mirror", "-r", XRD1, lfn, XRD2)  # third-party, then a move
    ids = [r["transferId"] for r in two.results if "transferId" in r]
    await until("xrootd -> xrootd", lambda: all_done(central, ids))
    where = await replicas(central, lfn)
    assert list(where) == [XRD2]
    assert grid.on_disk(where[XRD2]).read_bytes() == data["tpc/a.root"]

    back = await central.call("mirror", lfn, LOCAL)  # XRootD -> HTTPS, streamed
    ids = [r["transferId"] for r in back.results if "transferId" in r]
    await until("xrootd -> https", lambda: all_done(central, ids))
    where = await replicas(central, lfn)
    assert sorted(where) == [LOCAL, XRD2]
    assert grid.on_disk(where[LOCAL]).read_bytes() == data["tpc/a.root"]


async def _absent(path: Path) -> bool:
    return not path.exists()


async def test_bad_input_changes_nothing(grid, central, tmp_path):
    await upload(grid, central, tmp_path, ["bad/x"])
    before = await transfers(central)
    unknown = await central.call("mirror", "bad/x", "ALICE::NOWHERE::SE")
    assert unknown.exitcode == 2 and "unknown SE" in unknown.error
    there = await central.call("mirror", "bad/x", LOCAL)
    assert there.exitcode == 17 and "already exists on SE" in there.error
    missing = await central.call("mirror", "bad/none", XRD1)
    assert missing.exitcode == 2
    tries = await central.call("mirror", "-try", "0", "bad/x", XRD1)
    assert tries.exitcode == 22
    status = await central.call("listTransfer", "-status", "NOPE")
    assert status.exitcode == 22
    assert await transfers(central) == before
    assert list(await replicas(central, "bad/x")) == [LOCAL]


async def test_mirror_survives_a_kill_9(grid, central, tmp_path):
    data = await upload(grid, central, tmp_path, ["big/b.dat"], size=12_000_000)
    lfn = HOME + "big/b.dat"
    queued = await central.call("mirror", lfn, XRD2)
    [tid] = [r["transferId"] for r in queued.results if "transferId" in r]

    async def moving():
        rows = await transfers(central, "-id", tid)
        return rows and rows[0]["status"] == "TRANSFERRING"

    await until("the transfer to start", moving)
    await asyncio.sleep(0.5)  # bytes on their way (4 MB/s from the embedded SE: ~3 s)
    await central.close()
    grid.kill9()
    grid.start()
    client = await connect(grid)
    try:
        await until("the transfer to finish after the restart", lambda: all_done(client, [tid]))
        [row] = await transfers(client, "-id", tid)
        assert int(row["attempts"]) >= 2  # the one cut short, and the one that finished
        where = await client.call("whereis", lfn)
        ses = [r["seName"] for r in where.results if r.get("pfn")]
        assert sorted(ses) == [LOCAL, XRD2]  # registered once
        pfn = next(r["pfn"] for r in where.results if r["seName"] == XRD2)
        got = grid.on_disk(pfn).read_bytes()
        assert hashlib.md5(got).hexdigest() == hashlib.md5(data["big/b.dat"]).hexdigest()
    finally:
        await client.close()


async def test_rm_r_on_the_embedded_se_over_xrootd(tmp_path_factory, tmp_path):
    """The embedded SE registered with its root:// URL (se_xrootd_port): uploads go over
    XRootD, rm -r's removals too (kXR_rm with a delete envelope, checked by the SE)."""
    tmp = tmp_path_factory.mktemp("movers-xrd")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    env = {
        "JALIEN_EMBEDDED_SE": "1",
        "JALIEN_SE_NAME": LOCAL,
        "JALIEN_SE_PORT": str(free_port()),
        "JALIEN_SE_XROOTD_PORT": str(free_port()),
        "JALIEN_CACHE_HTTP_PORT": "-1",
        "JALIEN_DELETION_INTERVAL": "1",
    }
    ws, binary = free_port(), free_port()
    proc = start_central(home, tmp / "jcentral.log", ws, binary, env)
    ssl_ctx = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    client = Client("127.0.0.1", binary, ssl_ctx, reconnect=False)
    try:
        await client.connect()
        se_ctx = ssl.create_default_context(capath=str(home / "certificates"))
        se_ctx.check_hostname = False
        make_files(tmp_path, [f"x/f{i}" for i in range(3)])
        up = await copy(client, [f"file:{tmp_path}/x/*"], "xd/", Options(ssl=se_ctx, threads=3))
        assert up.exitcode == 0, [r.error for r in up.results]
        pfns = [next(iter((await replicas(client, f"xd/f{i}")).values())) for i in range(3)]
        if not all(p.startswith("root://") for p in pfns):  # before issue 16's registration
            pytest.skip("SKIPPED LOUDLY: the embedded SE is not registered with its root:// URL")
        on_disk = [home / "se" / urlsplit(p).path.lstrip("/") for p in pfns]
        assert all(p.is_file() for p in on_disk)
        removed = await client.call("rm", "-r", "xd")
        assert removed.exitcode == 0, removed.error
        await until("the files to leave the SE", lambda: _none_of(on_disk), timeout=20)
    finally:
        await client.close()
        stop(proc)


async def _none_of(paths: list[Path]) -> bool:
    return not any(p.exists() for p in paths)
