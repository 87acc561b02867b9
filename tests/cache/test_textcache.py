"""JAliEn's TextCache HTTP shape on loopback: set/get/ERR lines, timeout and ifnull, clear by
key or pattern, clean, listings, private namespaces, POST forms, pipelining, bad requests."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest

from jalien.cache.store import CacheStore, Policy
from jalien.cache.textcache import TextCache
from jalien.net.http import HttpError, HttpParser, HttpServer


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def text_cache(tmp_path):
    clock = Clock()
    store = CacheStore(
        tmp_path / "cache", clock=clock, policies={"catalogue.find": Policy(private=True)}
    )
    server = HttpServer(TextCache(store))
    await server.start(["127.0.0.1"], 0)
    server.store, server.clock = store, clock  # type: ignore[attr-defined]
    yield server
    await server.close()
    store.close()


class Http:
    """A keep-alive HTTP/1.1 connection that reads responses by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def get(self, **params: str) -> bytes:
        self.writer.write(f"GET /TextCache?{urlencode(params)} HTTP/1.1\r\n\r\n".encode())
        status, _, body = await self.response()
        assert status == 200
        return body

    async def post(self, path: str = "/cache", **params: str) -> bytes:
        form = urlencode(params).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n".encode()
            + form
        )
        status, _, body = await self.response()
        assert status == 200
        return body


@pytest.fixture
async def http(text_cache):
    reader, writer = await asyncio.open_connection("127.0.0.1", text_cache.port())
    yield Http(reader, writer)
    writer.close()


async def test_set_get_and_errors(text_cache, http):
    assert await http.get(ns="jobs", key="42", value="running") == b""
    assert await http.get(ns="jobs", key="42") == b"running\n"
    assert await http.get(ns="jobs", key="43") == b"ERR: null\n"
    assert await http.get(key="k", value="in default") == b""  # ns defaults to "default"
    assert await http.get(ns="default", key="k") == b"in default\n"
    assert await http.post(ns="jobs", key="posted", value="a b&c=d é") == b""
    assert await http.get(ns="jobs", key="posted") == "a b&c=d é\n".encode()


async def test_timeout_and_ifnull(text_cache, http):
    await http.get(ns="t", key="short", value="1", timeout="10")
    await http.get(ns="t", key="long", value="2")  # the namespace's default: an hour
    text_cache.clock.now += 11
    assert await http.get(ns="t", key="short") == b"ERR: expired\n"
    assert await http.get(ns="t", key="long") == b"2\n"
    await http.get(ns="t", key="long", value="3", ifnull="true")
    assert await http.get(ns="t", key="long") == b"2\n"
    await http.get(ns="t", key="short", value="4", ifnull="true")  # expired: replaced
    await asyncio.wrap_future(text_cache.store.flush())
    assert await http.get(ns="t", key="short") == b"4\n"
    await http.get(ns="t", key="long", value="5", timeout="0")  # dead at once
    assert await http.get(ns="t", key="long") == b"ERR: null\n"


async def test_clear_by_key_and_pattern(text_cache, http):
    for key in ("irc_/alice/a", "irc_/alice/b", "irtc_/alice/a", "other"):
        await http.get(ns="whereis", key=key, value="x")
    await asyncio.wrap_future(text_cache.store.flush())
    out = await http.get(ns="whereis", key="other", clear="true")
    assert out == b"OK: removed 1 values from ns 'whereis' matching [other]\n"
    out = await http.get(ns="whereis", key="irc_.*", clear="true")
    assert out == b"OK: removed 2 values from ns 'whereis' matching [irc_.*]\n"
    assert await http.get(ns="whereis", key="irtc_/alice/a") == b"x\n"
    bad = await http.get(ns="whereis", key="(unclosed", clear="true")
    assert bad.startswith(b"ERR: invalid pattern syntax: (unclosed")


async def test_clean_summary_and_listing(text_cache, http):
    await http.get(ns="one", key="a", value="1")
    await http.get(ns="one", key="b", value="22")
    await http.get(ns="two", key="c", value="3")
    await asyncio.wrap_future(text_cache.store.flush())
    await http.get(ns="one", key="a")
    summary = (await http.get()).decode()
    assert "one : 2 keys" in summary and ": 1 hits" in summary and "two : 1 keys" in summary
    listing = (await http.get(ns="one", values="1")).decode()
    assert "a : size 1 : 1" in listing and "b : size 2 : 22" in listing
    assert "2 entries" in listing
    await http.get(ns="two", clean="")
    assert await http.get(ns="two", key="c") == b"ERR: null\n"
    assert await http.get(ns="one", key="a") == b"1\n"
    await http.get(clean="")
    assert await http.get(ns="one", key="a") == b"ERR: null\n"


async def test_private_and_bad_namespaces_and_keys(text_cache, http):
    text_cache.store.set("catalogue.find", b"k", b"secret")
    assert (
        await http.get(ns="catalogue.find", key="k")
        == b"ERR: namespace catalogue.find is private\n"
    )
    assert (await http.get(ns="catalogue.find", key="k", value="poison")).startswith(b"ERR:")
    assert (await http.get(ns="bad ns", key="k")).startswith(b"ERR: bad cache namespace")
    assert (await http.get(ns="x", key="k" * 600)).startswith(b"ERR: cache key of 600 bytes")
    assert "catalogue.find" not in (await http.get()).decode()


async def test_pipelined_requests_answer_in_order(text_cache, http):
    batch = b"".join(
        f"GET /TextCache?ns=p&key=k{i}&value=v{i} HTTP/1.1\r\n\r\n".encode() for i in range(50)
    ) + b"".join(f"GET /TextCache?ns=p&key=k{i} HTTP/1.1\r\n\r\n".encode() for i in range(50))
    http.writer.write(batch)
    bodies = [(await http.response())[2] for _ in range(100)]
    assert bodies[:50] == [b""] * 50
    assert bodies[50:] == [f"v{i}\n".encode() for i in range(50)]


async def test_bad_requests(text_cache):
    async def exchange(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", text_cache.port())
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(), 5)  # the server closes
        writer.close()
        return data

    assert (await exchange(b"NONSENSE\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")).startswith(
        b"HTTP/1.1 404"
    )
    assert (await exchange(b"POST /cache HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 411")
    chunked = b"POST /cache HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert (await exchange(chunked)).startswith(b"HTTP/1.1 501")
    old = await exchange(b"GET /TextCache?ns=a&key=b HTTP/1.0\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 200") and b"Connection: close" in old
    assert (await exchange(b"DELETE /cache HTTP/1.1\r\nConnection: close\r\n\r\n")).startswith(
        b"HTTP/1.1 405"
    )


def test_parser_limits():
    parser = HttpParser(max_header=64, max_body=10)
    with pytest.raises(HttpError) as err:
        parser.feed(b"GET /" + b"x" * 100)
    assert err.value.status == 431
    parser = HttpParser(max_header=1024, max_body=10)
    with pytest.raises(HttpError) as err:
        parser.feed(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert err.value.status == 413
    parser = HttpParser()
    assert parser.feed(b"GET /cache?ns=a&key=b HTT") == []
    (request,) = parser.feed(b"P/1.1\r\nHost: x\r\n\r\n")
    assert (request.method, request.path, request.first("key")) == ("GET", "/cache", "b")
    assert request.headers == {"host": "x"} and request.keep_alive
