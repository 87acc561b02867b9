"""The README's promise, kept as users follow it: `./jalien.sh run` starts the whole
single-machine grid (jcentral, the embedded SE, a VoBox on fork) and `./jalien.sh client`
submits docs/examples/hello.jdl, sees it DONE and downloads its output. Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import free_port
from tests.readme import run_command

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_run_then_a_first_job(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
    env.update(
        JALIEN_STATE_DIR=str(tmp_path / "home"),
        JALIEN_WS_PORT=str(free_port()),
        JALIEN_BINARY_PORT=str(free_port()),
        JALIEN_SE_PORT=str(free_port()),
        JALIEN_CACHE_HTTP_PORT="-1",
        JALIEN_SUBMIT_INTERVAL="0.5",
        TMPDIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            run_command(),  # the README's first command, as typed in the clone
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait(lambda: "vobox ready" in log.read_text(errors="replace"), run, log)

        def client(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(ROOT / "jalien.sh"), "client", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        submitted = client("submit", f"file:{ROOT}/docs/examples/hello.jdl")
        assert submitted.returncode == 0, submitted.stderr
        assert "Your new job ID is 1" in submitted.stdout, submitted.stdout
        _wait(lambda: "  D  " in client("ps").stdout, run, log)  # JAliEn's code for DONE
        copied = client("cp", "alien-job-1/*", f"file:{tmp_path}/hello/")
        assert copied.returncode == 0, copied.stdout + copied.stderr
        assert "hello from job 1" in (tmp_path / "hello" / "stdout").read_text()
        assert (tmp_path / "hello" / "when.txt").read_text().strip()
    finally:
        os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C in its terminal
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(5)
        for proc in psutil.process_iter(["environ"]):  # fork agents outlive their VoBox
            with contextlib.suppress(psutil.Error, TypeError):
                if str(tmp_path) in (proc.info["environ"] or {}).get("JALIEN_WORKDIR", ""):
                    proc.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert "was never awaited" not in text, text  # Ctrl-C ends every process cleanly


def _wait(predicate, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting:\n{log.read_text(errors='replace')[-5000:]}")
