"""The embedded SE over XRootD (``jalien-bin --role se`` with se_xrootd_port), with real
clients on loopback: Debian's xrdcp and xrdfs, the XRootD Python bindings (PyPI xrootd,
what alien.py uses) and uproot; envelopes signed here with the key the SE trusts. Then
alien.py 1.7.0 against jcentral's embedded SE registered by its root:// URL (cp both ways,
cat, cp -T 8 of a directory).
Forged, expired, out-of-scope envelopes and path traversal are refused (kXR_NotAuthorized
or kXR_NotFound with a readable reason)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from jalien.storage.envelope import EnvelopeSigner, Grant
from tests.gridpki import make_grid_pki
from tests.integration.conftest import (
    Central,
    free_port,
    jalien_bin,
    run_setup,
    start_central,
    stop,
)
from tests.integration.test_jcentral_process import alien
from tests.storage.xrootd_server import unavailable

pytestmark = pytest.mark.integration


def _need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        unavailable(f"{', '.join(missing)} missing (apt install xrootd-client)")


class SE:
    def __init__(self, tmp):
        self.home = tmp / "home"
        pki = make_grid_pki(tmp / "pki")  # the HTTPS side's host credentials
        self.signer, _ = EnvelopeSigner.load_or_create(self.home / "envelope")
        self.root = tmp / "se"
        self.port = free_port()
        self.log = tmp / "se.log"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "JALIEN_SE_ROOT": str(self.root),
            "JALIEN_SE_PORT": str(free_port()),
            "JALIEN_SE_XROOTD_PORT": str(self.port),
            "JALIEN_HOST_CERT": str(pki.host_cert),
            "JALIEN_HOST_KEY": str(pki.host_key),
        }
        cmd = [*jalien_bin(), "--role", "se", "--home", str(self.home), "--listen", "127.0.0.1"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while "se xrootd ready" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def envelope(self, access: str, pfn: str, size: int = -1, md5: str = "", **kw) -> str:
        return self.signer.sign(Grant(access=access, pfn=pfn, size=size, md5=md5), **kw)

    def url(self, pfn: str, envelope: str = "") -> str:
        cgi = f"?xrd.wantprot=unix&authz={envelope}" if envelope else ""
        return f"root://127.0.0.1:{self.port}/{pfn}{cgi}"  # pfn starts with /: root://h//se/..

    def xrdfs(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["xrdfs", f"127.0.0.1:{self.port}", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def se(tmp_path_factory):
    server = SE(tmp_path_factory.mktemp("xrdse"))
    yield server
    stop(server.proc)


def _xrdcp(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "30"}
    return subprocess.run(
        ["xrdcp", "-s", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_xrdcp_both_ways_and_xrdfs(se, tmp_path):
    _need("xrdcp", "xrdfs")
    data = os.urandom(3_000_000)  # > the sendfile threshold, several reads
    md5 = hashlib.md5(data).hexdigest()
    (tmp_path / "src").write_bytes(data)
    pfn = "/se/01/00001/aaaa-xrdcp"
    up = _xrdcp(
        "--posc", "--cksum", f"md5:{md5}", str(tmp_path / "src"),
        se.url(pfn, se.envelope("write", pfn, len(data), md5)),
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert (se.root / pfn.lstrip("/")).read_bytes() == data
    assert not [p for p in (se.root / "se/01/00001").iterdir() if p.name.startswith(".")]
    again = _xrdcp("-f", str(tmp_path / "src"), se.url(pfn, se.envelope("write", pfn, len(data))))
    assert again.returncode != 0 and "write-once" in again.stderr  # an existing file is kept

    read = se.envelope("read", "/" + pfn)  # the root:// PFN's path: //se/...
    down = _xrdcp("--cksum", f"md5:{md5}", se.url(pfn, read), str(tmp_path / "back"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back").read_bytes() == data

    stat = se.xrdfs("stat", f"{pfn}?authz={read}")
    assert stat.returncode == 0 and "Size:   3000000" in stat.stdout, stat.stdout + stat.stderr
    checksum = se.xrdfs("query", "checksum", f"{pfn}?authz={read}")
    assert checksum.returncode == 0 and checksum.stdout.split() == ["md5", md5]
    listing = se.envelope("read", "/se/01/00001")
    ls = se.xrdfs("ls", "-l", f"/se/01/00001?authz={listing}")
    assert ls.returncode == 0 and pfn in ls.stdout and "3000000" in ls.stdout, ls.stderr
    assert se.xrdfs("stat", pfn).returncode != 0  # no envelope, no answer
    refused = se.xrdfs("rm", f"{pfn}?authz={read}")  # a read envelope does not delete
    assert refused.returncode != 0 and "grants read, not delete" in refused.stderr
    rm = se.xrdfs("rm", f"{pfn}?authz={se.envelope('delete', pfn)}")
    assert rm.returncode == 0, rm.stderr
    assert not (se.root / pfn.lstrip("/")).exists()


def test_bindings_write_read_readv(se):
    client = pytest.importorskip("XRootD.client")
    from XRootD.client.flags import OpenFlags

    pfn, data = "/se/02/00002/bbbb-bindings", b"hello world, " * 1000
    f = client.File()
    status, _ = f.open(
        se.url(pfn, se.envelope("write", pfn, len(data))), OpenFlags.NEW | OpenFlags.MAKEPATH
    )
    assert status.ok, status.message
    half = len(data) // 2
    assert f.write(data[:half], 0)[0].ok and f.write(data[half:], half)[0].ok
    status, _ = f.close()
    assert status.ok, status.message

    f = client.File()
    assert f.open(se.url(pfn, se.envelope("read", pfn)))[0].ok
    status, info = f.stat()
    assert status.ok and info.size == len(data)
    status, got = f.read(0, len(data) + 100)
    assert status.ok and got == data
    status, vec = f.vector_read([(0, 5), (6, 5), (len(data) - 2, 2)])
    assert status.ok, status.message
    assert [c.buffer for c in vec.chunks] == [b"hello", b"world", data[-2:]]
    status, _ = f.vector_read([(0, 5), (len(data) - 2, 10)], timeout=10)
    assert not status.ok and "readv past EOF" in status.message
    assert f.close()[0].ok


def test_bindings_write_beyond_or_short_of_booking(se):
    client = pytest.importorskip("XRootD.client")
    from XRootD.client.flags import OpenFlags

    pfn = "/se/02/00003/cccc-booked"
    f = client.File()
    assert f.open(se.url(pfn, se.envelope("write", pfn, 10)), OpenFlags.NEW | OpenFlags.MAKEPATH)[
        0
    ].ok
    status, _ = f.write(b"x" * 11, 0)
    assert not status.ok and "books" in status.message
    f.close()
    f = client.File()
    assert f.open(se.url(pfn, se.envelope("write", pfn, 10)), OpenFlags.NEW)[0].ok
    assert f.write(b"x" * 5, 0)[0].ok
    status, _ = f.close()
    assert not status.ok and "got 5 bytes, the envelope books 10" in status.message
    assert not (se.root / pfn.lstrip("/")).exists()
    assert not list((se.root / "se/02/00003").iterdir())  # no temporary file left


def test_refusals(se, tmp_path):
    client = pytest.importorskip("XRootD.client")
    from XRootD.client.flags import OpenFlags

    pfn = "/se/03/00004/dddd-refusals"
    target = se.root / pfn.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"secret")
    good = se.envelope("read", pfn)
    body, _, sig = good.partition(".")
    forged = f"{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    cases = {
        "no envelope": (se.url(pfn), OpenFlags.READ, "no envelope"),
        "forged": (se.url(pfn, forged), OpenFlags.READ, "does not verify"),
        "expired": (
            se.url(pfn, se.envelope("read", pfn, now=time.time() - 7200)),
            OpenFlags.READ,
            "expired",
        ),
        "other file": (
            se.url(pfn, se.envelope("read", "/se/03/00004/other")),
            OpenFlags.READ,
            "envelope is for /se/03/00004/other",
        ),
        "read envelope to write": (
            se.url("/se/03/00004/new", se.envelope("read", "/se/03/00004/new")),
            OpenFlags.NEW,
            "grants read, not write",
        ),
    }
    for name, (url, flags, reason) in cases.items():
        f = client.File()
        status, _ = f.open(url, flags)
        assert not status.ok and status.errno == 3010, (name, status.message)
        assert reason in status.message, (name, status.message)
    # traversal: even a genuine envelope for a path out of the SE's root is refused
    (tmp_path / "outside").write_bytes(b"x")
    for bad in ("/se/../../outside", "/se/03/.hidden", "/se/03/00004/.dddd-refusals.1.part"):
        f = client.File()
        status, _ = f.open(se.url(bad, se.envelope("read", bad)), OpenFlags.READ)
        assert not status.ok and status.errno in (3010, 3011), (bad, status.message)
    f = client.File()
    assert f.open(se.url(pfn, good))[0].ok and f.read(0, 100)[1] == b"secret"
    f.close()


def test_uproot_reads_a_root_file_by_url(se, tmp_path):
    if os.environ.get("CI"):
        import fsspec_xrootd  # noqa: F401 - CI must test it
        import uproot
    else:
        uproot = pytest.importorskip("uproot")
        pytest.importorskip("fsspec_xrootd")
    import numpy as np

    local = tmp_path / "events.root"
    with uproot.recreate(local) as out:
        out["events"] = {"px": np.arange(5000, dtype="f8"), "n": np.arange(5000, dtype="i4")}
    data = local.read_bytes()
    pfn = "/se/04/00005/eeee-events.root"
    up = _xrdcp(str(local), se.url(pfn, se.envelope("write", pfn, len(data))))
    assert up.returncode == 0, up.stderr
    with uproot.open(se.url(pfn, se.envelope("read", pfn))) as f:
        arrays = f["events"].arrays(library="np")
    assert arrays["px"].sum() == np.arange(5000).sum() and arrays["n"][-1] == 4999


@pytest.fixture(scope="module")
def xgrid(tmp_path_factory):
    """jcentral with its embedded SE over HTTPS and XRootD (registered by its root:// URL)."""
    tmp = tmp_path_factory.mktemp("xrdgrid")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    ws, binary = free_port(), free_port()
    env = {
        "JALIEN_EMBEDDED_SE": "1",
        "JALIEN_SE_PORT": str(free_port()),
        "JALIEN_SE_XROOTD_PORT": str(free_port()),
    }
    log = tmp / "jcentral.log"
    proc = start_central(home, log, ws, binary, env)
    yield Central(home, globus, ws, binary, log, proc)
    stop(proc)


def test_alienpy_cp_cat_and_directories(alienpy, xgrid, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        done = alien(alienpy, xgrid, *args, tmp_path=tmp_path / "alien")
        assert done.returncode == 0, (args, done.stdout + done.stderr)
        return done

    data = os.urandom(1_500_000)
    (tmp_path / "one.bin").write_bytes(data)
    run("cp", f"file:{tmp_path / 'one.bin'}", "one.bin")
    assert "root://127.0.0.1:" in run("whereis", "one.bin").stdout  # alien.py's grid
    run("cp", "one.bin", f"file:{tmp_path / 'back.bin'}")
    assert (tmp_path / "back.bin").read_bytes() == data
    (tmp_path / "note.txt").write_text("hello from the grid\n")
    run("cp", f"file:{tmp_path / 'note.txt'}", "note.txt")
    assert "hello from the grid" in run("cat", "note.txt").stdout

    src = tmp_path / "dir"
    src.mkdir()
    files = {f"f{i}.bin": os.urandom(i * 70_000) for i in range(1, 11)}
    for name, content in files.items():
        (src / name).write_bytes(content)
    run("cp", "-T", "8", f"file:{src}/", "dir/")
    run("cp", "-T", "8", "dir/", f"file:{tmp_path / 'dback'}/")
    got = {p.name: p.read_bytes() for p in (tmp_path / "dback").rglob("*.bin")}
    assert got == files
