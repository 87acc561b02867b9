"""alien.py 1.7.0 on the grid `./jalien.sh run` starts: jcentral's embedded SE registered
with its root:// URL (and its HTTPS URL as another endpoint). Every alien.py command that
touches data works there: cp both ways, cat, cp -T 8 of a directory, submit of a JDL that
alien.py uploaded (central reads it over root://). A file whose only replica is on an
HTTPS-only SE is refused to alien.py with a clear error and a non-zero exit, never a silent
success; jalien-bin (which speaks both) reads it, and moves root:// data in process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import (
    Central,
    free_port,
    run_setup,
    run_user,
    start_central,
)
from tests.integration.conftest import stop as stop_process
from tests.integration.test_jcentral_process import alien

# nothing here depends on the Cython twins: run once, not again in the pure-Python pass
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]
HOME = "/alice/cern.ch/user/j/jdoe/"
SE = "ALICE::LOCAL::SE"
WEB = "ALICE::LOCAL::WEB"  # the embedded SE's HTTPS side registered alone: HTTPS only


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alienpy-xrd")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    ws, binary, https, xrootd = (free_port() for _ in range(4))
    env = {
        "JALIEN_EMBEDDED_SE": "1",
        "JALIEN_SE_NAME": SE,
        "JALIEN_SE_PORT": str(https),
        "JALIEN_SE_XROOTD_PORT": str(xrootd),
    }
    log = tmp / "jcentral.log"
    central = Central(home, globus, ws, binary, log, start_central(home, log, ws, binary, env))
    central.https_port, central.xrootd_port = https, xrootd  # type: ignore[attr-defined]
    yield central
    stop_process(central.proc)


def call(grid, *words):
    context = client_context(grid.globus / "usercert.pem", grid.globus / "userkey.pem", grid.ca_dir)

    async def run():
        client = Client("127.0.0.1", grid.binary_port, context, reconnect=False)
        await client.connect()
        try:
            return await client.call(*words)
        finally:
            await client.close()

    return asyncio.run(run())


def a(alienpy, grid, tmp_path, *args) -> tuple[int, str]:
    done = alien(alienpy, grid, *args, tmp_path=tmp_path / "alien")
    return done.returncode, (done.stdout + done.stderr).strip()


def files(folder: Path, count: int, size: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(count):
        data = os.urandom(size)
        (folder / f"f{i:02d}.dat").write_bytes(data)
        out[f"f{i:02d}.dat"] = data
    return out


def test_the_embedded_se_is_registered_with_its_root_url(grid):
    listed = call(grid, "listSEDistance")
    assert listed.exitcode == 0, listed.error
    assert any(r["seName"] == SE for r in listed.results)
    write = call(grid, "access", "-s", "3", "write", "probe.txt", SE)
    assert write.exitcode == 0, write.error
    assert write.results[0]["url"].startswith(f"root://127.0.0.1:{grid.xrootd_port}//se/")


def test_alienpy_cp_both_ways_and_cat(alienpy, grid, tmp_path):
    (tmp_path / "note.txt").write_text("hello from alien.py\n")
    code, out = a(alienpy, grid, tmp_path, "cp", f"file:{tmp_path}/note.txt", f"{HOME}ax/note.txt")
    assert code == 0, out
    where = call(grid, "whereis", f"{HOME}ax/note.txt")
    assert where.exitcode == 0 and where.results[0]["pfn"].startswith("root://"), where.results
    code, out = a(alienpy, grid, tmp_path, "cp", f"{HOME}ax/note.txt", f"file:{tmp_path}/back.txt")
    assert code == 0, out
    assert (tmp_path / "back.txt").read_text() == "hello from alien.py\n"
    code, out = a(alienpy, grid, tmp_path, "cat", f"{HOME}ax/note.txt")
    assert code == 0 and "hello from alien.py" in out, out
    # what jalien's copy engine writes (jalien-bin cp, a JobAgent's outputs) alien.py reads
    (tmp_path / "stdout").write_text("job output line\n")
    code, _, err = run_user(grid, tmp_path, "cp", f"file:{tmp_path}/stdout", "job/1/stdout")
    assert code == 0, err
    assert call(grid, "whereis", "job/1/stdout").results[0]["pfn"].startswith("root://")
    code, out = a(alienpy, grid, tmp_path, "cat", f"{HOME}job/1/stdout")
    assert code == 0 and "job output line" in out, out


def test_alienpy_cp_T8_of_a_directory(alienpy, grid, tmp_path):
    data = files(tmp_path / "run", 12, 50_000)
    code, out = a(alienpy, grid, tmp_path, "cp", "-T", "8", f"file:{tmp_path}/run/", f"{HOME}adir/")
    assert code == 0, out
    found = call(grid, "find", f"{HOME}adir/", "*.dat")
    assert found.exitcode == 0 and len(found.results) == 12, (found.error, out)
    code, out = a(alienpy, grid, tmp_path, "cp", "-T", "8", f"{HOME}adir/", f"file:{tmp_path}/got/")
    assert code == 0, out
    got = {p.name: p.read_bytes() for p in (tmp_path / "got").rglob("*.dat")}
    assert got == data, sorted(got)
    # jalien-bin reads the same files from the embedded SE over root://, in process, -T 8
    code, _, err = run_user(
        grid, tmp_path, "cp", "-T", "8", f"{HOME}adir/*.dat", f"file:{tmp_path}/jb/"
    )
    assert code == 0 and "12 copied" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "jb").glob("*.dat")} == data


def test_alienpy_submit_of_a_jdl_it_uploaded(alienpy, grid, tmp_path):
    (tmp_path / "hello.jdl").write_text('Executable = "/bin/echo";\nTTL = 600;\n')
    jdl = f"{HOME}jdl/hello.jdl"
    code, out = a(alienpy, grid, tmp_path, "cp", f"file:{tmp_path}/hello.jdl", jdl)
    assert code == 0, out
    code, out = a(alienpy, grid, tmp_path, "submit", jdl)  # central reads it over root://
    assert code == 0, out
    job = re.search(r"(\d+)\s*$", out)
    assert job, out
    shown = call(grid, "ps", "-j", job.group(1))
    assert shown.exitcode == 0 and shown.results, (shown.error, out)


def test_a_replica_alienpy_cannot_read_is_a_clear_error(alienpy, grid, tmp_path):
    web = f"https://127.0.0.1:{grid.https_port}/se"
    added = call(grid, "addSE", "-qos", "web", WEB, web)
    assert added.exitcode == 0, added.error
    (tmp_path / "web.txt").write_bytes(b"only over https\n")
    code, _, err = run_user(grid, tmp_path, "cp", "-S", WEB, f"file:{tmp_path}/web.txt", "web.txt")
    assert code == 0, err
    assert call(grid, "whereis", "web.txt").results[0]["pfn"].startswith("https://")
    # alien.py 1.7.0 logs central's "No read PFNs: ..." and says "No token info": exit != 0
    code, out = a(alienpy, grid, tmp_path, "cp", f"{HOME}web.txt", f"file:{tmp_path}/nope.txt")
    assert code != 0, out
    assert not (tmp_path / "nope.txt").exists()
    code, out = a(alienpy, grid, tmp_path, "cat", f"{HOME}web.txt")
    assert code != 0 and "only over https" not in out, out
    refused = call(grid, "access", "read", "web.txt")  # words on the binary channel: served
    assert refused.exitcode == 0
    # jalien-bin speaks HTTPS too: it reads the file
    code, _, err = run_user(grid, tmp_path, "cp", "web.txt", f"file:{tmp_path}/jb.txt")
    assert code == 0 and (tmp_path / "jb.txt").read_bytes() == b"only over https\n", err
    digest = hashlib.md5(b"only over https\n").hexdigest()
    assert call(grid, "stat", "web.txt").results[0]["md5"] == digest
