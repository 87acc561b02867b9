"""The shell across the end of its credential, and a refused credential's message.

A connection ends with its credential (the server closes it at the notAfter): the shell
then takes fresh credentials from discovery - the token file a jBox renewed meanwhile - and
goes on. A certificate the server refuses gets the server's reason and exit code 13."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import time

from jalien.auth.certs import certs_pem, utcnow
from jalien.auth.files import write_file
from jalien.auth.tokens import TokenKind, TokenSubject, token_key_pem
from jalien.cli.shell import Connection, one_shot
from jalien.config import Settings
from jalien.net import discovery
from jalien.wire.errors import EXIT_PERMISSION
from tests.tokengrid import token_central


def env_for(central, tmp_path) -> dict[str, str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),  # no ~/.globus: the token file or nothing
        "TMPDIR": str(tmp_path),
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(central.binary_port),
        "X509_CERT_DIR": str(central.ca_dir),
    }


def write_token(central, env, seconds: float) -> float:
    """A user token of jdoe in the token files, as a jBox writes them; its notAfter."""
    cert, key = central.authority.issue(
        TokenSubject(TokenKind.USER, login="jdoe"), utcnow() + dt.timedelta(seconds=seconds)
    )
    cert_path, key_path = discovery.token_cert_paths(env)
    write_file(key_path, token_key_pem(key), 0o400, overwrite=True)
    write_file(cert_path, certs_pem(cert), 0o440, overwrite=True)
    return cert.not_valid_after_utc.timestamp()


async def test_the_shell_goes_on_with_the_renewed_token(grid_pki, tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "MIN_LEFT", dt.timedelta(seconds=1))
    async with token_central(grid_pki, tmp_path / "central") as central:
        env = env_for(central, tmp_path)
        first_end = write_token(central, env, 3)
        connection = Connection(Settings(home=str(tmp_path / "jalien")), env)
        try:
            who = await asyncio.to_thread(connection.call, "whoami", [])
            assert who.results[0]["message"] == "jdoe"
            second_end = write_token(central, env, 3600)  # the jBox renewed it
            deadline = time.monotonic() + 15
            while connection.client is not None and connection.client.connected:
                assert time.monotonic() < deadline, "the server kept the connection"
                await asyncio.sleep(0.02)
            assert time.time() >= first_end - 0.05
            assert connection.client is not None and connection.client.last_error.startswith(
                "credential expired"
            )
            who = await asyncio.to_thread(connection.call, "whoami", [])
            assert who.exitcode == 0 and who.results[0]["message"] == "jdoe"
            assert abs(connection._not_after - second_end) < 1
        finally:
            await asyncio.to_thread(connection.close)


async def test_refused_certificate_prints_the_reason(grid_pki, tmp_path, monkeypatch):
    async with token_central(grid_pki, tmp_path / "central") as central:
        env = env_for(central, tmp_path)
        stranger = grid_pki.users["stranger"]
        env |= {"X509_USER_CERT": str(stranger.cert), "X509_USER_KEY": str(stranger.key)}
        for name in list(os.environ):
            if name.startswith(("JALIEN_", "X509_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(one_shot, ["whoami"], out, err)
        assert code == EXIT_PERMISSION, err.getvalue()
        assert err.getvalue() == (
            "jalien-bin: not authorized: unknown user /C=ch/O=jalien/OU=Users/CN=stranger\n"
        )
