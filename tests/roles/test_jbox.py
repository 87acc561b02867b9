"""jBox in process, in front of an in-process central with a token CA: who gets in, token
renewal (real short tokens and a simulated clock), and central going away and coming back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import time

import pytest
from websockets.asyncio.client import connect as ws_connect

from jalien.auth.certs import certs_pem, utcnow
from jalien.auth.errors import AuthError
from jalien.auth.tls import client_context, context_from_pem
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem
from jalien.config import Settings
from jalien.net import discovery
from jalien.net.client import Client, ConnectionLost
from jalien.roles.jbox import JBox, JBoxOptions, Token, TokenKeeper, renew_at
from jalien.wire.errors import RequestError
from tests.ports import free_port
from tests.tokengrid import token_central


@pytest.fixture
async def central(grid_pki, tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    for name in ("X509_CERT_DIR", "JALIEN_TOKEN_CERT", "JALIEN_TOKEN_KEY", "X509_USER_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with token_central(grid_pki, tmp_path / "central") as server:
        yield server


@pytest.fixture
async def make_jbox(grid_pki, central, tmp_path):
    boxes: list[JBox] = []

    async def start(hours: float = 1.0, login: str = "jdoe") -> JBox:
        settings = Settings(home=str(tmp_path / "home"), ca_dir=str(central.ca_dir))
        cred = grid_pki.users[login]
        options = JBoxOptions("127.0.0.1", central.binary_port, hours, connect_wait=1.0)
        jbox = JBox(settings, options, cred.cert.read_bytes(), cred.key.read_bytes())
        boxes.append(jbox)
        await jbox.start()
        return jbox

    yield start
    for jbox in boxes:
        await jbox.close()


def token_ctx(central):
    """A client context from the token files jBox wrote (what alien.py uses)."""
    cert, key = discovery.token_cert_paths()
    return client_context(cert, key, central.ca_dir)


async def local_client(jbox, ctx) -> Client:
    client = Client("127.0.0.1", jbox.server.ports()["binary"], ctx, reconnect=False)
    await client.connect()
    return client


async def test_owner_gets_in_others_do_not(central, make_jbox, grid_pki):
    jbox = await make_jbox()
    files = discovery.token_file_paths()
    values = discovery.read_token_file(files[0])
    assert values["JALIEN_PID"] == str(os.getpid())
    assert values["JALIEN_PORT"] == str(jbox.server.ports()["binary"])
    assert values["JALIEN_USER"] == "jdoe" and values["Home"] == "/alice/cern.ch/user/j/jdoe/"
    # the token file's own credentials, then the user certificate itself
    assert discovery.find_credentials().kind == "token"
    jdoe = grid_pki.users["jdoe"]
    for ctx in (token_ctx(central), client_context(jdoe.cert, jdoe.key, central.ca_dir)):
        client = await local_client(jbox, ctx)
        who = await client.call("whoami")
        assert who.results[0]["user"] == "jdoe", who
        await client.close()
    # raw WebSocket client (JAliEn JSON) with the token
    uri = f"wss://127.0.0.1:{jbox.server.ports()['websocket']}/websocket/json"
    async with ws_connect(uri, ssl=token_ctx(central), server_hostname="localhost") as ws:
        await ws.send(json.dumps({"command": "pwd", "options": []}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["results"][0]["message"] == "/alice/cern.ch/user/j/jdoe/"
    # another user, with a certificate or a token of theirs: refused
    alice = grid_pki.users["alice"]
    alice_ctx = client_context(alice.cert, alice.key, central.ca_dir)
    reply = await (await central.connect(alice_ctx)).call("token", "-hours", "1")
    alice_token = context_from_pem(
        "client",
        reply.results[0]["tokencert"].encode(),
        reply.results[0]["tokenkey"].encode(),
        central.ca_dir,
    )
    for ctx in (alice_ctx, alice_token):
        with pytest.raises(ConnectionLost):
            client = await local_client(jbox, ctx)
            await client.call("whoami", timeout=5)
        await client.close()
    # closing removes the token files (not the token itself: it stays valid)
    await jbox.close()
    assert not any(path.exists() for path in files)
    assert discovery.token_cert_paths()[0].exists()


async def test_token_renewal_past_expiry(central, make_jbox):
    """Tokens of 2 seconds: jBox renews at half-life, so after the first one has expired
    new clients still get in (and jBox's own TLS certificate is the new token)."""
    jbox = await make_jbox(hours=2 / 3600)
    first = jbox.keeper.token
    assert first.not_after - time.time() < 3
    old_ctx = context_from_pem("client", first.cert_pem, first.key_pem, central.ca_dir)
    deadline = time.monotonic() + 10
    while time.time() < first.not_after + 0.5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert jbox.keeper.renewals >= 1
    assert jbox.keeper.token.not_after > first.not_after
    client = await local_client(jbox, token_ctx(central))
    assert (await client.call("whoami")).results[0]["user"] == "jdoe"
    await client.close()
    with pytest.raises(ConnectionLost):  # the expired token is refused
        stale = await local_client(jbox, old_ctx)
        await stale.call("whoami", timeout=5)


async def test_central_down_then_back(central, make_jbox, grid_pki, tmp_path):
    jbox = await make_jbox()
    client = await local_client(jbox, token_ctx(central))
    assert (await client.call("whoami")).exitcode == 0
    port = central.binary_port
    await central.close()
    started = time.monotonic()
    reply = await client.call("whoami", timeout=10)
    assert reply.exitcode == 107, reply
    assert "connect" in reply.error
    assert time.monotonic() - started < 5  # a clear answer, not a hang
    async with token_central(grid_pki, tmp_path / "central", port=port):
        deadline = time.monotonic() + 15
        while True:
            reply = await client.call("whoami", timeout=10)
            if reply.exitcode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert reply.exitcode == 0, reply.error
        assert reply.results[0]["user"] == "jdoe"
        await client.close()


# -- the keeper with a simulated clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return TokenAuthority.load_or_create(tmp_path_factory.mktemp("tokenca"))[0]


def make_token(authority, clock: FakeClock, seconds: float) -> Token:
    not_after = dt.datetime.fromtimestamp(clock.now + seconds, dt.UTC)
    start = dt.datetime.fromtimestamp(clock.now - 300, dt.UTC)
    cert, key = authority.issue(
        TokenSubject(TokenKind.USER, login="jdoe"), not_after, not_before=start
    )
    return Token(certs_pem(cert), token_key_pem(key), cert)


async def test_keeper_renews_past_expiry_with_a_simulated_clock(authority):
    clock = FakeClock()
    installed: list[Token] = []
    failing = False

    async def fetch() -> Token:
        if failing:
            raise RequestError("no connection to central", 107)
        return make_token(authority, clock, 3600)

    keeper = TokenKeeper(fetch, installed.append, clock=clock)
    delay = await keeper.run_once()
    assert len(installed) == 1
    first = installed[0]
    # an hour's token: renewed with 15 minutes left
    assert renew_at(first) == pytest.approx(clock.now + 2700, abs=2)
    assert delay == pytest.approx(2700, abs=2)
    clock.now += 1000
    assert await keeper.run_once() == pytest.approx(1700, abs=2)
    assert len(installed) == 1
    # central is down when renewal is due: retries, never sleeping past the token's end
    failing = True
    clock.now = first.not_after - 10
    delay = await keeper.run_once()
    assert keeper.failures == 1 and delay <= 10
    # the clock jumps past the expiry (a laptop waking up): the next run gets a new token
    clock.now = first.not_after + 600
    failing = False
    await keeper.run_once()
    assert len(installed) == 2 and keeper.renewals == 1 and keeper.failures == 0
    assert installed[1].not_after > clock.now + 3000


def test_renewal_margins():
    class T:  # received at 1000 s, backdated by 5 minutes
        def __init__(self, life: float) -> None:
            self.received, self.not_before, self.not_after = 1000.0, 700.0, 1000.0 + life

    assert renew_at(T(3600)) == 1000 + 2700  # 15 minutes before the end
    assert renew_at(T(86400)) == 1000 + 86400 * 0.8  # a fifth of a day before
    assert renew_at(T(4)) == 1000 + 2  # short tokens: half-life


async def test_start_fails_clearly_without_central(grid_pki, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    settings = Settings(home=str(tmp_path / "home"), ca_dir=str(grid_pki.ca_dir))
    cred = grid_pki.users["jdoe"]
    port = free_port()  # nothing listens there
    jbox = JBox(
        settings,
        JBoxOptions("127.0.0.1", port),
        cred.cert.read_bytes(),
        cred.key.read_bytes(),
    )
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await jbox.start()
    await jbox.close()
    assert not discovery.token_file_paths()[0].exists()


def test_no_token_from_a_wrong_record():
    with pytest.raises(AuthError):
        Token.from_record({"tokencert": "", "tokenkey": ""})
    with pytest.raises(AuthError):
        Token.from_record({"tokencert": "junk", "tokenkey": "junk"})
    assert utcnow()


async def test_token_files_are_the_owners_alone(central, make_jbox):
    """tokencert_<uid>.pem and tokenkey_<uid>.pem as alien.py writes them: 0400 each."""
    await make_jbox()
    for path in discovery.token_cert_paths():
        assert stat.S_IMODE(path.stat().st_mode) == 0o400, path
