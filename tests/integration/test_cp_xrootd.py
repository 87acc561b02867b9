"""cp through real XRootD SEs (Debian's xrootd, started here as an unprivileged user) beside
jcentral's embedded HTTPS SE: upload, download, skip, resume after the SE was killed, a
corrupt replica, grid -> grid (third-party copy and through a local file), and alien.py
1.7.0's cp on files jalien wrote and the reverse."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from jalien.net.client import Client
from jalien.storage.cp import Options, copy
from tests.integration.conftest import jalien_bin
from tests.integration.test_cp_process import NEAR, Grid, make_files
from tests.integration.test_jcentral_process import alien
from tests.storage.xrootd_server import XRootDUnavailable, binaries, start_xrootd, unavailable

pytestmark = pytest.mark.integration
XRD1 = "ALICE::LOCAL::XRD"  # same site as the client: read first
XRD2 = "ALICE::FAR::XRD"
HOME = "/alice/cern.ch/user/j/jdoe/"


class XGrid(Grid):
    """jcentral with its embedded SE, the HTTPS far SE, and two XRootD SEs."""

    def __init__(self, tmp):
        try:
            binaries()
        except XRootDUnavailable as exc:
            unavailable(str(exc))
        self.xrd: dict[str, object] = {}
        super().__init__(tmp)
        try:
            for name in (XRD1, XRD2):
                self.xrd[name] = start_xrootd(name.split("::")[1].lower())
        except XRootDUnavailable as exc:
            self.close()
            unavailable(str(exc))

    def close(self):
        for server in self.xrd.values():
            server.close()
        from tests.integration.conftest import stop

        stop(self.far)
        stop(self.central)

    # what tests.integration.test_jcentral_process.alien wants of a "central"
    @property
    def ws_port(self):
        return self.ws

    @property
    def ca_dir(self):
        return self.home / "certificates"


@pytest.fixture(scope="module")
def xgrid(tmp_path_factory):
    g = XGrid(tmp_path_factory.mktemp("xrdgrid"))
    yield g
    g.close()


@pytest.fixture
async def central(xgrid):
    client = Client("127.0.0.1", xgrid.binary, xgrid.user_ssl(), reconnect=False)
    await client.connect()
    for name, site in ((XRD1, "LOCAL"), (XRD2, "FAR")):
        url = xgrid.xrd[name].url
        added = await client.call("addSE", "-site", site, "-qos", "disk", name, url)
        assert added.exitcode == 0, added.error
    yield client
    await client.close()


def opts(grid, **kw):
    return Options(ssl=grid.se_ssl(), backoff=0.2, **kw)


async def pfn_on(central, lfn, se):
    where = await central.call("whereis", lfn)
    return next(r["pfn"] for r in where.results if r["seName"] == se)


async def test_access_gives_root_urls_with_the_envelope(xgrid, central):
    reply = await central.call("access", "-s", "10", "-m", "0" * 32, "write", "acc/one", XRD1)
    assert reply.exitcode == 0, reply.error
    rec = reply.results[0]
    port = xgrid.xrd[XRD1].port
    assert rec["url"].startswith(f"root://127.0.0.1:{port}//") and rec["se"] == XRD1
    assert rec["envelope"] and "." in rec["envelope"]


async def test_upload_download_skip_and_corrupt_replica(xgrid, central, tmp_path):
    names = [f"run{r}/f{i}.root" for r in range(2) for i in range(5)]
    data = make_files(tmp_path / "src", names, size=200_000)
    for run in range(2):
        up = await copy(
            central, [f"file:{tmp_path}/src/run{run}/*"], f"x/run{run}/",
            opts(xgrid, threads=8, specs=f"{XRD1},{XRD2}"),
        )  # fmt: skip
        assert up.exitcode == 0 and up.count("copied") == 5, [r.error for r in up.results]
        assert not any(r.notes for r in up.results), [r.notes for r in up.results]
    pfn = await pfn_on(central, "x/run1/f3.root", XRD1)
    assert (
        pfn.startswith("root://")
        and xgrid.xrd[XRD1].path_of(pfn).read_bytes() == data["run1/f3.root"]
    )

    dest = tmp_path / "dl"
    down = await copy(central, ["x/*/*.root"], f"file:{dest}/", opts(xgrid, threads=8))
    assert down.exitcode == 0 and down.count("copied") == 10, [r.error for r in down.results]
    for name, content in data.items():
        assert (dest / name).read_bytes() == content
    assert not list(dest.rglob("*.jalien-part"))
    again = await copy(central, ["x/*/*.root"], f"file:{dest}/", opts(xgrid, threads=8))
    assert again.exitcode == 0 and again.count("skipped") == 10

    # the close replica goes bad: the md5 computed while it lands catches it, the far one is used
    on_disk = xgrid.xrd[XRD1].path_of(pfn)
    on_disk.write_bytes(b"X" + on_disk.read_bytes()[1:])
    for threads in (1, 4):
        (dest / "run1/f3.root").unlink()
        fixed = await copy(
            central, ["x/run1/f3.root"], f"file:{dest}/run1/", opts(xgrid, threads=threads)
        )
        assert fixed.exitcode == 0 and fixed.count("copied") == 1, fixed.results[0].error
        assert (dest / "run1/f3.root").read_bytes() == data["run1/f3.root"]
        note = fixed.results[0].notes[0]
        assert XRD1 in note and "checksum mismatch" in note


async def test_empty_file_both_ways(xgrid, central, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    up = await copy(
        central, [f"file:{tmp_path}/empty.txt"], "xe/empty.txt", opts(xgrid, specs=XRD1)
    )
    assert up.exitcode == 0, up.results[0].error
    for threads in (1, 4):
        dest = tmp_path / f"t{threads}"
        down = await copy(central, ["xe/empty.txt"], f"file:{dest}/", opts(xgrid, threads=threads))
        assert down.exitcode == 0 and down.count("copied") == 1, down.results[0].error
        assert (dest / "empty.txt").read_bytes() == b""


async def test_killed_xrootd_resumes(xgrid, central, tmp_path):
    """A paced download (64 kB requests at 2 MB/s), the SE killed mid-transfer and started
    again on its port: the download goes on from the part file, the file is correct."""
    data = make_files(tmp_path, ["big.bin"], size=8_000_000)["big.bin"]
    up = await copy(central, [f"file:{tmp_path}/big.bin"], "xbig/big.bin", opts(xgrid, specs=XRD2))
    assert up.exitcode == 0, up.results[0].error
    dest = tmp_path / "got"
    slow = opts(xgrid, retries=10, max_rate=2_000_000, chunk=65536, stall=5)
    task = asyncio.create_task(copy(central, ["xbig/big.bin"], f"file:{dest}/", slow))
    part = dest / "big.bin.jalien-part"
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > 1_000_000):
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.05)
    server = xgrid.xrd[XRD2]
    await asyncio.to_thread(server.stop, True)
    kept = part.stat().st_size
    await asyncio.sleep(0.5)
    assert not task.done(), task.result().results[0]
    await asyncio.to_thread(server.start)
    report = await asyncio.wait_for(task, 90)
    assert report.exitcode == 0, report.results[0].error
    assert (dest / "big.bin").read_bytes() == data and not part.exists()
    assert kept > 1_000_000  # what had arrived was kept, not fetched again from zero


async def test_grid_to_grid(xgrid, central, tmp_path):
    data = make_files(tmp_path, ["g.dat", "h.dat"], size=300_000)
    for name, specs in (("g.dat", XRD1), ("h.dat", NEAR)):
        up = await copy(
            central, [f"file:{tmp_path}/{name}"], f"g2g/{name}", opts(xgrid, specs=specs)
        )
        assert up.exitcode == 0, up.results[0].error
    # XRootD -> XRootD: a third-party copy to a new LFN
    tpc = await copy(central, ["g2g/g.dat"], "g2g/g-copy.dat", opts(xgrid, specs=XRD2))
    assert tpc.exitcode == 0 and tpc.count("copied") == 1, tpc.results[0].error
    assert not tpc.results[0].notes, tpc.results[0].notes
    pfn = await pfn_on(central, "g2g/g-copy.dat", XRD2)
    assert xgrid.xrd[XRD2].path_of(pfn).read_bytes() == data["g.dat"]
    # HTTPS -> XRootD and XRootD -> HTTPS through a local file; a glob into a directory
    mixed = await copy(central, ["g2g/h.dat"], "g2g/h-on-xrd.dat", opts(xgrid, specs=XRD1))
    assert mixed.exitcode == 0, mixed.results[0].error
    back = await copy(central, ["g2g/g*.dat"], "g2g/https/", opts(xgrid, specs=NEAR))
    assert back.exitcode == 0 and back.count("copied") == 2, [r.error for r in back.results]
    for lfn, content in (
        ("g2g/h-on-xrd.dat", data["h.dat"]),
        ("g2g/https/g.dat", data["g.dat"]),
        ("g2g/https/g-copy.dat", data["g.dat"]),
    ):
        dest = tmp_path / "check" / lfn
        got = await copy(central, [lfn], f"file:{dest}", opts(xgrid))
        assert got.exitcode == 0 and dest.read_bytes() == content, got.results[0].error
    # a second replica of the same LFN on another SE
    more = await copy(central, ["g2g/g.dat"], "g2g/g.dat", opts(xgrid, specs=XRD2))
    assert more.exitcode == 0, more.results[0].error
    where = await central.call("whereis", "g2g/g.dat")
    assert {r["seName"] for r in where.results} == {XRD1, XRD2}
    # the same copy again: skipped; a source that is not there: failed
    again = await copy(central, ["g2g/g.dat", "g2g/none.dat"], "g2g/https/", opts(xgrid))
    assert again.count("skipped") == 1 and again.count("failed") == 1 and again.exitcode == 1


def test_alienpy_reads_what_jalien_wrote_and_the_reverse(xgrid, alienpy, tmp_path):
    def a(*args):
        done = alien(alienpy, xgrid, *args, tmp_path=tmp_path / "alien")
        return done.returncode, (done.stdout + done.stderr).strip()

    data = make_files(tmp_path, ["ours.bin", "theirs.bin"], size=123_457)

    async def upload():
        client = Client("127.0.0.1", xgrid.binary, xgrid.user_ssl(), reconnect=False)
        await client.connect()
        try:
            for name, site in ((XRD1, "LOCAL"), (XRD2, "FAR")):
                await client.call("addSE", "-site", site, "-qos", "disk", name, xgrid.xrd[name].url)
            return await copy(
                client, [f"file:{tmp_path}/ours.bin"], "interop/ours.bin", opts(xgrid, specs=XRD1)
            )
        finally:
            await client.close()

    up = asyncio.run(upload())
    assert up.exitcode == 0, up.results[0].error
    code, out = a("cp", f"{HOME}interop/ours.bin", f"file:{tmp_path}/back/ours.bin")
    assert code == 0, out
    assert (tmp_path / "back/ours.bin").read_bytes() == data["ours.bin"]

    code, out = a("cp", f"file:{tmp_path}/theirs.bin", f"{HOME}interop/theirs.bin@{XRD2}")
    assert code == 0, out
    code, out = a("whereis", f"{HOME}interop/theirs.bin")
    assert code == 0 and XRD2 in out, out

    async def download():
        client = Client("127.0.0.1", xgrid.binary, xgrid.user_ssl(), reconnect=False)
        await client.connect()
        try:
            return await copy(client, ["interop/theirs.bin"], f"file:{tmp_path}/mine/", opts(xgrid))
        finally:
            await client.close()

    down = asyncio.run(download())
    assert down.exitcode == 0, down.results[0].error
    assert (tmp_path / "mine/theirs.bin").read_bytes() == data["theirs.bin"]


def test_cli_grid_to_grid_and_xrootd_download(xgrid, tmp_path):
    env = {
        **os.environ,
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(xgrid.binary),
        "X509_USER_CERT": str(xgrid.globus / "usercert.pem"),
        "X509_USER_KEY": str(xgrid.globus / "userkey.pem"),
        "X509_CERT_DIR": str(xgrid.home / "certificates"),
        "JALIEN_STATE_DIR": str(xgrid.home),
        "TMPDIR": str(tmp_path),  # private: no token file of another client
        "X509_USER_PROXY": str(tmp_path / "no-proxy"),
    }

    def cp(*args):
        return subprocess.run(
            [*jalien_bin(), "cp", *args], env=env, capture_output=True, text=True, timeout=120
        )

    make_files(tmp_path, ["a.bin", "b.bin"], size=70_000)
    up = cp("-T", "2", "-S", XRD1, f"file:{tmp_path}/*.bin", "cli-x/")
    assert up.returncode == 0 and "2 copied" in up.stderr, up.stderr
    g2g = cp("-S", XRD2, "cli-x/*.bin", "cli-x/copies/")
    assert g2g.returncode == 0 and "2 copied" in g2g.stderr, g2g.stderr
    down = cp("-T", "4", "cli-x/copies/*.bin", "cli-x/none.bin", f"file:{tmp_path}/back/")
    assert down.returncode == 1 and "cp: cli-x/none.bin:" in down.stderr, down.stderr
    assert "2 copied" in down.stderr
    for name in ("a.bin", "b.bin"):
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / name).read_bytes()
    mixed = cp(f"file:{tmp_path}/a.bin", "cli-x/a.bin", "cli-x/mixed/")
    assert mixed.returncode == 2 and "all local" in mixed.stderr and "Traceback" not in mixed.stderr
