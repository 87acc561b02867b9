"""The built jalien-bin as a worker node meets it: copied to a read-only folder (as on CVMFS),
started with an empty environment (no Python, no venv), writing nothing next to itself,
unpacking (if at all) into a cache per user and version. Runs when JALIEN_BIN names a built
binary (CI: `JALIEN_BIN=$PWD/dist/jalien-bin pytest tests/integration tests/packaging`)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from jalien.cli.main import ROLES
from jalien.version import __version__
from tests.integration.conftest import free_port, run_setup, start_central, stop

pytestmark = pytest.mark.integration

_cmd = shlex.split(os.environ.get("JALIEN_BIN", ""))
BINARY = Path(_cmd[0]).resolve() if len(_cmd) == 1 and Path(_cmd[0]).is_file() else None
if BINARY is None:
    pytest.skip(
        "JALIEN_BIN does not name a built binary (packaging/build_binary.sh)",
        allow_module_level=True,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def ro_bin(tmp_path_factory) -> Path:
    """A copy of the binary in a folder without write bits (a standalone build: its folder)."""
    ro = tmp_path_factory.mktemp("cvmfs") / "sw"
    if BINARY.parent.name.endswith(".dist"):
        shutil.copytree(BINARY.parent, ro, symlinks=True)
    else:
        ro.mkdir()
        shutil.copy2(BINARY, ro / "jalien-bin")
    for path in [ro, *ro.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            path.chmod(mode & ~0o222)
    yield ro / BINARY.name
    for path in [ro, *ro.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.lstat().st_mode | 0o200)


def run(argv, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


def test_version_with_an_empty_environment(ro_bin):
    done = run([ro_bin, "--version"], {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"jalien {__version__}"


def test_runs_compiled_code_and_the_cython_framing(ro_bin, tmp_path):
    done = run([ro_bin, "debug-info"], {"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    info = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert info["implementation"] == "cython"
    twins = dict(pair.split("=") for pair in info["twins"].split())
    assert set(twins.values()) == {"cython"}, twins  # none fell back to its pure twin
    assert info["compiled"] == "nuitka"
    assert info["jalien"] == __version__


def test_no_writes_next_to_the_binary_and_unpacking_cached_per_user(ro_bin, tmp_path):
    before = snapshot(ro_bin.parent)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(tmp)}
    for _ in range(2):
        assert run([ro_bin, "--version"], env).returncode == 0
    assert snapshot(ro_bin.parent) == before
    assert list(tmp.iterdir()) == [], "a temporary unpack folder was left behind"
    created = [p.relative_to(home) for p in home.rglob("*") if p.is_dir()]
    for path in created:  # a cached onefile: ~/.cache/jalien/<version>-<build id>/...
        assert path.parts[:2] == (".cache", "jalien")[: len(path.parts)], path
        if len(path.parts) >= 3:
            assert path.parts[2].startswith(f"{__version__}-"), path


def test_setup_with_an_empty_environment(ro_bin, tmp_path):
    home = tmp_path / "x"
    argv = [ro_bin, "setup", "--home", home / "home", "--globus-dir", home / "g", "--no-password"]
    done = run(argv, {"HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "g" / "usercert.pem").is_file()
    assert (home / "home" / "host" / "hostcert.pem").is_file()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_inside(ro_bin, tmp_path, role):
    done = run([ro_bin, "--role", role, "--help"], {"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_jcentral_from_the_read_only_copy(ro_bin, tmp_path, monkeypatch):
    """jcentral started from the read-only copy answers the binary channel."""
    from jalien.auth.tls import client_context
    from jalien.net.client import Client

    monkeypatch.setenv("JALIEN_BIN", str(ro_bin))
    home, globus = tmp_path / "home", tmp_path / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = start_central(home, tmp_path / "log", free_port(), port)
    try:

        async def go():
            context = client_context(
                globus / "usercert.pem", globus / "userkey.pem", home / "certificates"
            )
            client = Client("127.0.0.1", port, context, reconnect=False)
            await client.connect()
            who = await client.call("whoami")
            await client.close()
            return who

        who = asyncio.run(go())
        assert who.results[0]["message"] == "jdoe"
    finally:
        assert stop(proc) == 0
    assert "Traceback" not in (tmp_path / "log").read_text()
