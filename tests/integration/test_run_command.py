"""The README's promise, kept as users follow it: `./jalien.sh run` starts the whole
single-machine grid (jcentral, the embedded SE, a VoBox on fork) and `./jalien.sh client`
submits docs/examples/hello.jdl, sees it DONE and downloads its output. Then a user's daily
session on that grid: files in, `find -x` into a collection and an analysis submitted over it
(InputDataCollection, Split=file), followed with alien.py's ps and jobInfo, its outputs
inspected. Ctrl-C stops all."""

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


def test_run_then_a_first_job_then_a_daily_session(tmp_path, alienpy):
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
        daily_session(tmp_path, env, client, alienpy, lambda p: _wait(p, run, log))
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


ANALYSIS = """Executable = "/bin/sh";
Arguments = "-c 'cat *.txt'";
InputDataCollection = {"LF:%sana.xml"};
Split = "file";
OutputFile = {"stdout"};
TTL = 300;
"""


def daily_session(tmp_path: Path, env: dict[str, str], client, alienpy: Path, wait) -> None:
    home_dir = Path(env["JALIEN_STATE_DIR"])
    ap_home = tmp_path / "alienpy"
    ap_home.mkdir()

    def alien(*args: str) -> subprocess.CompletedProcess:
        ap_env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(ap_home),
            "TMPDIR": str(ap_home),
            "ALIENPY_JCENTRAL": "127.0.0.1",
            "ALIENPY_JCENTRAL_PORT": env["JALIEN_WS_PORT"],
            "X509_USER_CERT": str(home_dir / "globus" / "usercert.pem"),
            "X509_USER_KEY": str(home_dir / "globus" / "userkey.pem"),
            "X509_CERT_DIR": str(home_dir / "certificates"),
        }
        return subprocess.run(
            [str(alienpy), *args], env=ap_env, capture_output=True, text=True, timeout=120
        )

    user_home = alien("pwd").stdout.strip().splitlines()[-1]
    assert user_home.startswith("/alice/"), user_home
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        (inputs / f"{name}.txt").write_text(f"event data {name}\n")
        up = client("cp", f"file:{inputs}/{name}.txt", f"ana/{name}.txt")
        assert up.returncode == 0, up.stdout + up.stderr
    found = alien("find", "-x", "ana.xml", "ana", "*.txt")
    assert found.returncode == 0, found.stdout + found.stderr
    listed = alien("listFilesFromCollection", "ana.xml")
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 3, listed
    jdl = tmp_path / "ana.jdl"
    jdl.write_text(ANALYSIS % user_home)
    submitted = client("submit", f"file:{jdl}")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    master = int(submitted.stdout.split("Your new job ID is ")[1].split()[0])
    info = alien("jobInfo", str(master))
    assert info.returncode == 0, info.stdout + info.stderr
    subjobs = [master + 1, master + 2, master + 3]

    def all_done() -> bool:
        shown = alien("ps", "-f", "d", "-j", ",".join(map(str, subjobs)))
        return shown.returncode == 0 and all(str(j) in shown.stdout for j in subjobs)

    try:
        wait(all_done)
    except AssertionError as e:  # say where each subjob stands, and what its agent saw
        traces = [client("ps", "-trace", str(job)).stdout for job in subjobs]
        agents = sorted(home_dir.glob("**/jobagent*.log"))
        tails = [f"{a}:\n{a.read_text(errors='replace')[-3000:]}" for a in agents[-4:]]
        listing = client("ps", "-a").stdout
        raise AssertionError("\n".join([str(e)[-3000:], listing, *traces, *tails])) from None
    outputs = tmp_path / "outputs"
    seen = []
    for job in subjobs:
        got = client("cp", f"alien-job-{job}/stdout", f"file:{outputs}/{job}/")
        assert got.returncode == 0, got.stdout + got.stderr
        seen.append((outputs / str(job) / "stdout").read_text())
    assert sorted(seen) == ["event data a\n", "event data b\n", "event data c\n"], seen


def _wait(predicate, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting:\n{log.read_text(errors='replace')[-5000:]}")
