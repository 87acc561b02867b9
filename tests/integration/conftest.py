"""Real jalien-bin processes on loopback: a test grid made by `jalien-bin setup`, and
jcentral started as users start it. JALIEN_BIN points the suite at a built binary
(default: this Python's `python -m jalien`)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def jalien_bin() -> list[str]:
    custom = os.environ.get("JALIEN_BIN")
    return shlex.split(custom) if custom else [sys.executable, "-m", "jalien"]


@dataclass
class Central:
    home: Path
    globus: Path
    ws_port: int
    binary_port: int
    log: Path
    proc: subprocess.Popen

    @property
    def ca_dir(self) -> Path:
        return self.home / "certificates"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def run_setup(home: Path, globus: Path, login: str = "jdoe") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *jalien_bin(),
            "setup",
            "--home",
            str(home),
            "--globus-dir",
            str(globus),
            "--no-password",
            "--login",
            login,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_central(
    home: Path, log: Path, ws_port: int, binary_port: int, env: dict[str, str] | None = None
) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            *jalien_bin(),
            "--role",
            "jcentral",
            "--home",
            str(home),
            "--ws-port",
            str(ws_port),
            "--binary-port",
            str(binary_port),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "jcentral ready" in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"jcentral exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"jcentral did not start:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("central")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    log = tmp / "jcentral.log"
    ws_port, binary_port = free_port(), free_port()
    proc = start_central(home, log, ws_port, binary_port)
    yield Central(home, globus, ws_port, binary_port, log, proc)
    stop(proc)


@pytest.fixture(scope="session")
def alienpy() -> Path:
    """alien.py 1.7.0 in its own venv (./jalien.sh test makes it; CI must have it)."""
    found = os.environ.get("ALIENPY") or shutil.which(
        "alien.py", path=str(ROOT / ".venv-alienpy/bin")
    )
    if found:
        return Path(found)
    message = "alien.py not installed: run ./jalien.sh test (it creates .venv-alienpy)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def start_embedded_grid(tmp: Path) -> Central:
    """A test grid (setup) and its jcentral with the embedded SE ALICE::LOCAL::SE."""
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    ws, binary = free_port(), free_port()
    env = {"JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_NAME": "ALICE::LOCAL::SE"}
    env["JALIEN_SE_PORT"] = str(free_port())
    log = tmp / "jcentral.log"
    proc = start_central(home, log, ws, binary, env)
    return Central(home, globus, ws, binary, log, proc)


def user_env(grid: Central, tmp_path: Path) -> dict[str, str]:
    """jalien-bin's environment as the grid's user, straight to its jcentral."""
    return {
        **os.environ,
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(grid.binary_port),
        "X509_USER_CERT": str(grid.globus / "usercert.pem"),
        "X509_USER_KEY": str(grid.globus / "userkey.pem"),
        "X509_CERT_DIR": str(grid.ca_dir),
        "JALIEN_STATE_DIR": str(grid.home),
        "TMPDIR": str(tmp_path),
        "X509_USER_PROXY": str(tmp_path / "no-proxy"),
    }


def run_user(grid: Central, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`jalien-bin ARGS...` as the grid's user: exit code, stdout, stderr."""
    done = subprocess.run(
        [*jalien_bin(), *args],
        env=user_env(grid, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr
