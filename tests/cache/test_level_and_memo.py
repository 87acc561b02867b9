"""A level's reply cache on LMDB (net.proxy.ReplyCache), and the read-through memo of
accounts by login."""

from __future__ import annotations

import asyncio

import pytest

from jalien.auth.errors import AuthError
from jalien.auth.tls import client_context
from jalien.cache.memo import ReadThrough, file_version
from jalien.cache.reply_cache import NAMESPACE, LmdbReplyCache, level_store
from jalien.cache.store import CacheStore
from jalien.net.client import Client
from jalien.net.identity import AccountsAuthenticator, Identity
from jalien.net.proxy import UpstreamProxy


async def test_level_reply_cache_on_lmdb(make_server, connect, grid_pki, tmp_path):
    central = await make_server()
    store = level_store(tmp_path / "level-cache")
    cache = LmdbReplyCache(store, {"version": 60.0})
    cred = grid_pki.users["jdoe"]
    upstream = Client(
        "127.0.0.1",
        central.ports()["binary"],
        client_context(cred.cert, cred.key, grid_pki.ca_dir),
    )
    await upstream.connect()
    level = await make_server(handler=UpstreamProxy(upstream, cache))
    try:
        client = await connect(level)
        first = await client.call("version")
        second = await client.call("version")
        assert first.results == second.results
        assert (cache.hits, cache.misses) == (1, 1)
        await client.call("whoami")
        await client.call("whoami")
        assert cache.hits == 1  # not a command the level keeps
        # another client of the level (another channel upstream) is answered from it too
        other = await connect(level)
        assert (await other.call("version")).results == first.results
        assert cache.hits == 2
        await asyncio.wrap_future(store.flush())
        assert {s.name: s.entries for s in store.stats()}[NAMESPACE] == 1
    finally:
        await upstream.close()
        store.close()


def test_reply_cache_keys_and_values(tmp_path):
    store = CacheStore(tmp_path / "c", writer=False)
    try:
        cache = LmdbReplyCache(store, {"ls": 5.0})
        huge_key = b"/CN=someone\0" + bytes(5000)  # longer than an LMDB key: hashed
        cache.put(huge_key, (0x04, b"compressed body"), "ls")
        cache.put(b"other", (0, b"x"), "whoami")  # no TTL for it: not kept
        assert cache.get(huge_key) == (0x04, b"compressed body")
        assert cache.get(b"other") is None
    finally:
        store.close()


def test_logins_read_through_the_cache(tmp_path, grid_pki):
    accounts = AccountsAuthenticator(grid_pki.accounts)
    calls = []

    def lookup(login: str) -> Identity:
        calls.append(login)
        return accounts.identify_login(login)

    store = CacheStore(tmp_path / "c")
    try:
        version = ["v1"]
        logins = ReadThrough(store, "auth.logins", lookup, Identity, version=lambda: version[0])
        first = logins("jdoe")
        assert first == accounts.identify_login("jdoe") and first.has_role("admin")
        assert logins("jdoe") == first
        assert calls == ["jdoe"]
        with pytest.raises(AuthError):
            logins("nobody")
        with pytest.raises(AuthError):
            logins("nobody")
        assert calls == ["jdoe", "nobody", "nobody"]  # errors are not cached
        version[0] = "v2"  # the accounts file changed: asked again
        assert logins("jdoe") == first
        assert calls[-1] == "jdoe" and len(calls) == 4
    finally:
        store.close()


def test_file_version_follows_the_file(tmp_path):
    path = tmp_path / "accounts.toml"
    version = file_version(path)
    assert version() == "-"
    path.write_text("a")
    one = version()
    path.write_text("bb")
    assert version() not in ("-", one)
