"""jcentral as a real process: the official alien.py client, the binary client, refusals,
IPv6, clean shutdown and clear errors for bad start-up input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest

from jalien.auth.certs import issue_user_cert, make_ca, write_pem_cert, write_pem_key
from jalien.auth.tls import client_context
from jalien.net.client import Client, ConnectionLost
from tests.integration.conftest import free_port, jalien_bin, run_setup, start_central, stop

pytestmark = pytest.mark.integration


def alien(alienpy, central, *args, tmp_path) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "ALIENPY_JCENTRAL": "127.0.0.1",
        "ALIENPY_JCENTRAL_PORT": str(central.ws_port),
        "X509_USER_CERT": str(central.globus / "usercert.pem"),
        "X509_USER_KEY": str(central.globus / "userkey.pem"),
        "X509_CERT_DIR": str(central.ca_dir),
    }
    return subprocess.run(
        [str(alienpy), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_alienpy_pwd_and_whoami(alienpy, central, tmp_path):
    pwd = alien(alienpy, central, "pwd", tmp_path=tmp_path / "a")
    assert pwd.returncode == 0, pwd.stdout + pwd.stderr
    assert pwd.stdout.strip().splitlines()[-1] == "/alice/cern.ch/user/j/jdoe/"
    who = alien(alienpy, central, "whoami", tmp_path=tmp_path / "b")
    assert who.returncode == 0, who.stdout + who.stderr
    assert who.stdout.strip().splitlines()[-1] == "jdoe"


def test_alienpy_json_output(alienpy, central, tmp_path):
    out = alien(alienpy, central, "-json", "pwd", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    assert doc["metadata"]["currentdir"] == "/alice/cern.ch/user/j/jdoe/"


def _client(central, cert, key, host="127.0.0.1"):
    return Client(
        host, central.binary_port, client_context(cert, key, central.ca_dir), reconnect=False
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_binary_client(central, host):
    async def go():
        client = _client(
            central, central.globus / "usercert.pem", central.globus / "userkey.pem", host
        )
        await client.connect()
        replies = await asyncio.gather(*(client.call("ping") for _ in range(200)))
        who = await client.call("whoami")
        await client.close()
        return replies, who

    replies, who = asyncio.run(go())
    assert all(r.exitcode == 0 for r in replies)
    assert who.results[0]["message"] == "jdoe"


def test_foreign_certificate_refused_and_logged(central, tmp_path):
    ca, ca_key = make_ca("not the grid's CA")
    cert, key = issue_user_cert(ca, ca_key, "intruder")
    write_pem_cert(tmp_path / "c.pem", cert)
    write_pem_key(tmp_path / "k.pem", key)

    async def go():
        client = _client(central, tmp_path / "c.pem", tmp_path / "k.pem")
        with pytest.raises(ConnectionLost):
            await client.connect()
            await client.call("whoami", timeout=5)
        await client.close()

    asyncio.run(go())
    deadline = time.monotonic() + 5
    while "unable to get local issuer certificate" not in central.log_text():
        assert time.monotonic() < deadline, central.log_text()
        time.sleep(0.05)


def test_start_without_credentials_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [
            *jalien_bin(),
            "--role",
            "jcentral",
            "--home",
            str(tmp_path / "empty"),
            "--ws-port",
            str(free_port()),
            "--binary-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "jalien-bin setup" in done.stderr


def test_bad_port_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [*jalien_bin(), "--role", "jcentral", "--ws-port", "notaport"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_setup_never_overwrites(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    before = (globus / "userkey.pem").read_bytes()
    again = run_setup(home, globus)
    assert again.returncode == 0
    assert "kept existing" in again.stdout
    assert (globus / "userkey.pem").read_bytes() == before


def test_sigterm_stops_cleanly(tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    proc = start_central(home, tmp_path / "log", free_port(), free_port())
    assert stop(proc) == 0
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_version_command():
    done = subprocess.run(
        [*jalien_bin(), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("jalien ")


def test_unknown_command_exit_code(central, tmp_path):
    """Words are commands for the server (exit code 2 for an unknown one, as JAliEn);
    an unknown flag is refused locally."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "JALIEN_CENTRAL_HOST": "127.0.0.1",
        "JALIEN_BINARY_PORT": str(central.binary_port),
        "X509_USER_CERT": str(central.globus / "usercert.pem"),
        "X509_USER_KEY": str(central.globus / "userkey.pem"),
        "X509_CERT_DIR": str(central.ca_dir),
    }
    for argv, text in ((["frobnicate"], "frobnicate"), (["--frobnicate"], "unknown command")):
        done = subprocess.run(
            [*jalien_bin(), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert done.returncode == 2, done.stderr
        assert text in done.stderr
        assert "Traceback" not in done.stderr
