"""jBox as users run it: started on a terminal with an encrypted key (the password asked
once), then alien.py, one-shot commands and the shell work through its token file with no
other configuration; killed with -9 and started again."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jalien.auth.certs import load_key, write_pem_key
from jalien.net.discovery import read_token_file
from tests.integration.conftest import jalien_bin
from tests.ptyproc import PtyProcess

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
PROMPT = "Grid certificate password"
TOKEN_KEYS = {
    "JALIEN_HOST",
    "JALIEN_PORT",
    "JALIEN_WSPORT",
    "JALIEN_PID",
    "JALIEN_USER",
    "JALIEN_HOME",
    "Host",
    "Port",
    "WSPort",
    "User",
    "Home",
    "Passwd",
    "Debug",
    "PID",
}


@pytest.fixture(scope="module")
def desktop(central, tmp_path_factory):
    """A user's desktop: ~/.globus with an encrypted key, a private TMPDIR."""
    root = tmp_path_factory.mktemp("desktop")
    globus = root / "home/.globus"
    globus.mkdir(parents=True, mode=0o700)
    (globus / "usercert.pem").write_bytes((central.globus / "usercert.pem").read_bytes())
    key = load_key(central.globus / "userkey.pem")
    assert isinstance(key, rsa.RSAPrivateKey)
    write_pem_key(globus / "userkey.pem", key, PASSWORD.encode())
    (root / "tmp").mkdir()
    (root / "bare").mkdir()  # a HOME with nothing in it, for clients
    return root


def base_env(central, desktop) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(desktop / "home"),
        "TMPDIR": str(desktop / "tmp"),
        "X509_CERT_DIR": str(central.ca_dir),
        "JALIEN_HOME": str(desktop / "home/.jalien"),
        "PYTHONUNBUFFERED": "1",
    }
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
    return env


def client_env(central, desktop) -> dict[str, str]:
    """What a client gets: a HOME without credentials, the TMPDIR, PATH, and the CA
    directory (alien.py has no CA default outside /etc/grid-security or cvmfs)."""
    env = base_env(central, desktop)
    env["HOME"] = str(desktop / "bare")
    del env["JALIEN_HOME"]
    return env


def start_jbox(central, desktop) -> PtyProcess:
    argv = [*jalien_bin(), "--role", "jbox", "--central", f"127.0.0.1:{central.binary_port}"]
    proc = PtyProcess(argv, base_env(central, desktop))
    try:
        proc.expect(PROMPT, timeout=60)
        proc.send(PASSWORD + "\r")
        proc.expect("jBox ready", timeout=60)
    except BaseException:
        proc.close()
        raise
    assert proc.output().count(PROMPT) == 1, proc.output()
    return proc


def run(argv, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)


def alien(alienpy, central, desktop, *args) -> subprocess.CompletedProcess:
    env = client_env(central, desktop)
    env = {k: env[k] for k in ("HOME", "TMPDIR", "PATH", "X509_CERT_DIR")}
    env["PATH"] = "/usr/bin:/bin"
    return run([str(alienpy), *args], env, check=False, cwd=desktop / "bare")


def token_files(desktop):
    uid = os.getuid()
    return desktop / f"tmp/jclient_token_{uid}", desktop / f"tmp/jalien_token_{uid}"


def test_jbox_serves_alienpy_and_one_shot_commands(central, desktop, alienpy):
    jbox = start_jbox(central, desktop)
    try:
        jclient, jalien = token_files(desktop)
        for path in (jclient, jalien):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert jclient.read_text() == jalien.read_text()
        values = read_token_file(jclient)
        assert set(values) == TOKEN_KEYS
        assert values["JALIEN_PID"] == values["PID"] == str(jbox.pid)
        assert values["JALIEN_HOST"] == "127.0.0.1"
        assert values["JALIEN_USER"] == "jdoe"
        assert values["JALIEN_HOME"] == "/alice/cern.ch/user/j/jdoe/"
        assert values["JALIEN_WSPORT"] == values["WSPort"] != values["JALIEN_PORT"]
        uid = os.getuid()
        key = desktop / f"tmp/tokenkey_{uid}.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o400
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # EC: alien.py below

        pwd = alien(alienpy, central, desktop, "pwd")
        assert pwd.returncode == 0, pwd.stdout + pwd.stderr
        assert pwd.stdout.strip().splitlines()[-1] == "/alice/cern.ch/user/j/jdoe/"
        who = alien(alienpy, central, desktop, "whoami")
        assert who.returncode == 0, who.stdout + who.stderr
        assert who.stdout.strip().splitlines()[-1] == "jdoe"
        assert "connected" in jbox.output()  # through jBox, not central directly

        env = client_env(central, desktop)
        one = run([*jalien_bin(), "whoami"], env, check=False)
        assert (one.returncode, one.stdout.strip()) == (0, "jdoe"), one.stderr
        doc = run([*jalien_bin(), "-json", "pwd"], env, check=False)
        assert doc.returncode == 0, doc.stderr
        parsed = json.loads(doc.stdout)
        assert parsed["metadata"]["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
        assert parsed["metadata"]["exitcode"] == "0"
        missing = run([*jalien_bin(), "frobnicate"], env, check=False)
        assert missing.returncode == 2 and "Traceback" not in missing.stderr

        jbox.signal(signal.SIGTERM)
        assert jbox.wait() == 0
        assert not jclient.exists() and not jalien.exists()
    finally:
        jbox.close()


def test_shell_on_a_terminal(central, desktop):
    jbox = start_jbox(central, desktop)
    shell = PtyProcess([*jalien_bin(), "shell"], base_env(central, desktop))
    try:
        at = shell.expect("jsh: [jdoe@")
        at = shell.expect("/alice/cern.ch/user/j/jdoe/ > ", start=at)
        shell.send("whoami\r")
        at = shell.expect("\njdoe\n", start=at)
        shell.send("whoa\t-v\r")  # command names complete from commandlist (with a space)
        at = shell.expect("/C=ch/O=jalien/OU=Users/CN=jdoe", start=at)
        shell.send('echo "unterminated\r')  # bad input: a message, no traceback
        at = shell.expect("No closing quotation", start=at)
        shell.send("exit\r")
        assert shell.wait() == 22  # the last command's exit code
        assert "Traceback" not in shell.output()
        history = (desktop / "home/.jalien/history").read_text()
        assert "whoami -v" in history
    finally:
        shell.close()
        jbox.close()


def test_jbox_killed_and_restarted(central, desktop, alienpy):
    jbox = start_jbox(central, desktop)
    env = client_env(central, desktop)
    try:
        assert run([*jalien_bin(), "whoami"], env, check=False).returncode == 0
        jbox.signal(signal.SIGKILL)
        jbox.wait()
        jclient, _ = token_files(desktop)
        assert jclient.exists()  # nobody could remove it
        down = run([*jalien_bin(), "whoami"], env, check=False)
        assert down.returncode == 107, down.stdout + down.stderr
        assert "not running" in down.stderr and "Traceback" not in down.stderr
    finally:
        jbox.close()
    again = start_jbox(central, desktop)  # the stale token file is replaced
    try:
        assert read_token_file(jclient)["JALIEN_PID"] == str(again.pid)
        who = alien(alienpy, central, desktop, "whoami")
        assert who.returncode == 0, who.stdout + who.stderr
        assert who.stdout.strip().splitlines()[-1] == "jdoe"
        second = PtyProcess(
            [*jalien_bin(), "--role", "jbox", "--central", f"127.0.0.1:{central.binary_port}"],
            base_env(central, desktop),
        )
        assert second.wait() == 1  # one jBox per user, refused before asking anything
        assert "already running" in second.output() and PROMPT not in second.output()
    finally:
        again.close()


def test_detached_jbox(central, desktop):
    """ssh-agent style: the command returns once jBox is ready; it goes on in the background."""
    argv = [*jalien_bin(), "--role", "jbox", "--central", f"127.0.0.1:{central.binary_port}"]
    done = run(
        [*argv, "--detach", "--password-stdin"],
        base_env(central, desktop),
        input=PASSWORD + "\n",
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    jclient, _ = token_files(desktop)
    pid = int(read_token_file(jclient)["JALIEN_PID"])
    try:
        assert "jBox ready" in done.stdout and f"(pid {pid})" in done.stdout
        who = run([*jalien_bin(), "whoami"], client_env(central, desktop), check=False)
        assert (who.returncode, who.stdout) == (0, "jdoe\n"), who.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while jclient.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not jclient.exists()
    assert "stopping" in (desktop / "home/.jalien/jbox.log").read_text()
