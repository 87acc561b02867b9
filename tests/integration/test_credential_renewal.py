"""The levels keep working across the end of a credential (issue 14): a connection ends
with its credential, so the jBox's local clients move to the token it renewed, the VoBox
moves its upstream connection to its renewed certificate before the old one ends, and the
JobAgents submitted after the first JobAgent token's end get a valid one. Real processes,
real TLS, lifetimes of seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import pytest

from jalien.auth.accounts import Account, AccountMap
from jalien.auth.certs import (
    dn_of,
    issue_host_cert,
    load_cert,
    load_key,
    utcnow,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.net.discovery import read_token_file
from jalien.net.refusal import EXPIRED
from jalien.site.startup_script import TOKEN_CERT_NAME, TOKEN_KEY_NAME
from tests.integration.conftest import jalien_bin
from tests.integration.test_jbox_process import PASSWORD, PROMPT, base_env, desktop  # noqa: F401
from tests.integration.test_vobox_process import grid, vobox  # noqa: F401
from tests.ptyproc import PtyProcess

pytestmark = pytest.mark.integration


async def until(predicate, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def token_paths(desktop_root):
    uid = os.getuid()
    tmp = desktop_root / "tmp"
    return tmp / f"tokencert_{uid}.pem", tmp / f"tokenkey_{uid}.pem", tmp / f"jclient_token_{uid}"


def test_jbox_clients_go_on_with_the_renewed_token(central, desktop):  # noqa: F811
    """A jBox with an 11-second token renews it halfway; a local client's connection ends
    with the old token and reconnects with the new one (alien.py reads the token files at
    each connection the same way)."""
    argv = [
        *jalien_bin(),
        "--role",
        "jbox",
        "--central",
        f"127.0.0.1:{central.binary_port}",
        "--token-hours",
        "0.003",
    ]
    jbox = PtyProcess(argv, base_env(central, desktop))
    cert_path, key_path, token_file = token_paths(desktop)
    try:
        jbox.expect(PROMPT, timeout=60)
        jbox.send(PASSWORD + "\r")
        jbox.expect("jBox ready", timeout=60)
        port = int(read_token_file(token_file)["JALIEN_PORT"])
        first_end = load_cert(cert_path).not_valid_after_utc.timestamp()
        old = client_context(cert_path, key_path, central.ca_dir)

        def fresh():  # what the token files say now
            return client_context(cert_path, key_path, central.ca_dir)

        async def go():
            client = Client("127.0.0.1", port, None, credentials=fresh, backoff=(0.05, 0.5))
            await client.connect()
            try:
                assert (await client.call("whoami")).results[0]["message"] == "jdoe"
                await until(lambda: client.refusal is not None, "the old token's end", 30)
                await until(lambda: client.connected, "a reconnection", 10)
                assert time.time() >= first_end - 0.05
                assert load_cert(cert_path).not_valid_after_utc.timestamp() > first_end
                who = await client.call("whoami", timeout=10)
                assert who.results[0]["message"] == "jdoe"
            finally:
                await client.close()
            # the old token itself is of no use any more
            stale = Client("127.0.0.1", port, old, reconnect=False)
            with pytest.raises(Exception):  # noqa: B017 - TLS alert or a closed socket
                await stale.connect()
                await stale.call("whoami", timeout=10)
            await stale.close()

        asyncio.run(go())
        assert "credential expired" in jbox.output()
    finally:
        jbox.close()


def _vobox_cert(grid, root, seconds: float):  # noqa: F811
    """A certificate of the grid's CA for the VoBox (an account with the proxy role)."""
    ca = grid.home / "ca"
    cert, key = issue_host_cert(
        load_cert(ca / "ca.pem"),
        load_key(ca / "ca.key"),
        ["vobox.test"],
        not_after=utcnow() + dt.timedelta(seconds=seconds),
    )
    tmp_cert, tmp_key = root / "new-cert.pem", root / "new-key.pem"
    write_pem_cert(tmp_cert, cert, overwrite=True)
    write_pem_key(tmp_key, key, overwrite=True)
    os.replace(tmp_key, root / "vobox-key.pem")  # the key first: the VoBox looks at the cert
    os.replace(tmp_cert, root / "vobox-cert.pem")
    return cert


def test_vobox_moves_upstream_to_its_renewed_certificate(grid, vobox):  # noqa: F811
    root = grid.tmp / "vobox-credentials"
    root.mkdir()
    short = _vobox_cert(grid, root, 12)
    accounts = AccountMap.load(grid.home / "accounts.toml")
    accounts.add(Account(login="vobox", dn=dn_of(short), roles=["proxy"], home="/alice/vobox/"))
    accounts.save(grid.home / "accounts.toml")
    box = vobox(
        JALIEN_VOBOX_CERT=str(root / "vobox-cert.pem"),
        JALIEN_VOBOX_KEY=str(root / "vobox-key.pem"),
    )
    port = box.status().get("binary_port") or _port_from_log(box)
    short_end = short.not_valid_after_utc.timestamp()

    async def go():
        client = Client("127.0.0.1", port, grid.user_context(), reconnect=False)
        await client.connect()
        try:
            assert (await client.call("whoami")).results[0]["message"] == "jdoe"
            _vobox_cert(grid, root, 3600)  # the site's admin renews it
            await until(lambda: time.time() > short_end + 1, "the old certificate's end", 30)
            for _ in range(3):
                who = await client.call("whoami", timeout=10)
                assert who.exitcode == 0 and who.results[0]["message"] == "jdoe", who
            status = (await client.call("vobox.status", timeout=10)).results[0]
            assert status["upstream_connected"] == "True"
        finally:
            await client.close()

    asyncio.run(go())
    central_log = (grid.tmp / "jcentral.log").read_text(errors="replace")
    assert "CN=vobox.test; renew it" not in central_log  # never closed for its end
    assert "credential expired" not in box.log_text()
    assert "reconnected to central with the renewed certificate" in box.log_text()


def submit_short(grid) -> None:  # noqa: F811
    """One job that fits agents of one second."""

    async def go():
        client = Client("127.0.0.1", grid.binary_port, grid.user_context(), reconnect=False)
        await client.connect()
        reply = await client.call("submit", "=<", 'Executable = "/bin/true"; TTL = 1;')
        await client.close()
        assert reply.exitcode == 0, reply.error

    asyncio.run(go())


def test_agents_after_the_first_jobagent_token_get_a_valid_one(grid, vobox):  # noqa: F811
    """JobAgent tokens of 11 seconds, agents of 1: an agent's connection to the VoBox ends
    with its token; the VoBox renewed it halfway, so an agent submitted after the first
    token's end gets the new one, which works through the VoBox. (The stand-in agents'
    own jalien-bin skips tokens this short: the test connects with their token files.)"""
    box = vobox(JALIEN_JOBAGENT_TOKEN_HOURS="0.003", JALIEN_JOBAGENT_TTL="1")
    port = box.status().get("binary_port") or _port_from_log(box)
    ca_dir = grid.home / "certificates"

    def agent_token(directory):
        cert = directory / TOKEN_CERT_NAME
        context = client_context(cert, directory / TOKEN_KEY_NAME, ca_dir)
        return context, load_cert(cert).not_valid_after_utc.timestamp()

    submit_short(grid)
    box.wait(lambda: len(list(box.dir.glob("agents/*/env.json"))) == 1, "the first agent")
    first, first_end = agent_token(box.agent_dirs()[0])

    async def first_agent():
        client = Client("127.0.0.1", port, first, reconnect=False)
        await client.connect()
        try:
            assert (await client.call("whoami")).results[0]["message"] == "jobagent"
            await until(lambda: not client.connected, "the VoBox to end it", 30)
            assert client.refused == EXPIRED and time.time() >= first_end - 0.05
        finally:
            await client.close()

    asyncio.run(first_agent())
    submit_short(grid)
    box.wait(lambda: len(list(box.dir.glob("agents/*/env.json"))) == 2, "an agent after it")
    newest = max(box.agent_dirs(), key=lambda d: d.stat().st_mtime)
    second, second_end = agent_token(newest)
    assert second_end > first_end  # a renewed one

    async def second_agent():
        client = Client("127.0.0.1", port, second, reconnect=False)
        await client.connect()
        try:
            assert (await client.call("whoami")).results[0]["message"] == "jobagent"
        finally:
            await client.close()

    asyncio.run(second_agent())
    assert box.status()["token_renewals"] >= 1


def _port_from_log(box) -> int:
    line = next(x for x in box.log_text().splitlines() if "vobox ready" in x)
    return int(line.split("binary port ")[1].split(",")[0])
