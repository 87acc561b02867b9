"""The embedded SE over real HTTPS on loopback: envelopes enforced on every request, byte
ranges, md5 checked while uploading, nothing half-written under the final name."""

from __future__ import annotations

import hashlib
import ssl
import time

import aiohttp
import pytest

from jalien.storage.envelope import EnvelopeSigner, Grant
from jalien.storage.se_server import StorageServer, se_context

DATA = bytes(range(256)) * 4096  # 1 MiB
MD5 = hashlib.md5(DATA).hexdigest()
PATH = "/se/01/00001/0a1b2c3d-0000-11ee-8000-000000000001"


@pytest.fixture
async def se(tmp_path, grid_pki, signer):
    server = StorageServer(tmp_path / "root", signer.verifier)
    port = await server.start(["127.0.0.1"], 0, se_context(grid_pki.host_cert, grid_pki.host_key))
    ctx = ssl.create_default_context(capath=str(grid_pki.ca_dir))
    ctx.check_hostname = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        server.base = f"https://127.0.0.1:{port}"
        server.http = http
        yield server
    await server.close()


def url(se, envelope, path=PATH):
    return f"{se.base}{path}?authz={envelope}"


async def test_put_get_range_head(se, signer):
    write = signer.sign(Grant(access="write", pfn=PATH, size=len(DATA), md5=MD5))
    async with se.http.put(url(se, write), data=DATA) as r:
        assert r.status == 201 and r.headers["X-Md5"] == MD5
    async with se.http.put(url(se, write), data=DATA) as r:
        assert r.status == 409  # write-once
    read = signer.sign(Grant(access="read", pfn=PATH))
    async with se.http.get(url(se, read)) as r:
        assert r.status == 200 and await r.read() == DATA
    async with se.http.get(url(se, read), headers={"Range": "bytes=1000-"}) as r:
        assert r.status == 206 and await r.read() == DATA[1000:]
    async with se.http.head(url(se, write)) as r:
        assert r.status == 200 and r.content_length == len(DATA)
    files = [p.name for p in (se.root / "se/01/00001").iterdir()]
    assert files == [PATH.rsplit("/", 1)[1]]


async def test_refusals(se, signer, tmp_path):
    write = signer.sign(Grant(access="write", pfn=PATH, size=len(DATA), md5=MD5))
    forger, _ = EnvelopeSigner.load_or_create(tmp_path / "forger")
    forged = forger.sign(Grant(access="write", pfn=PATH, size=len(DATA), md5=MD5))
    expired = signer.sign(Grant(access="write", pfn=PATH), now=time.time() - 10**5)
    other = signer.sign(Grant(access="write", pfn=PATH + "x"))
    read = signer.sign(Grant(access="read", pfn=PATH))
    cases = [
        ("", 401, "no envelope"),
        ("garbage", 401, "malformed"),
        (forged, 403, "forged"),
        (expired, 403, "expired"),
        (other, 403, "not " + PATH),
        (read, 403, "grants read"),
    ]
    for envelope, status, text in cases:
        async with se.http.put(url(se, envelope), data=DATA) as r:
            assert r.status == status and text in await r.text(), (text, await r.text())
    async with se.http.get(url(se, write)) as r:
        assert r.status == 403  # a write envelope does not read
    bad = bytearray(DATA)
    bad[5] ^= 1
    async with se.http.put(url(se, write), data=bytes(bad)) as r:
        assert r.status == 422 and "md5" in await r.text()
    async with se.http.put(url(se, write), data=DATA[:-1]) as r:
        assert r.status == 422
    assert not [p for p in se.root.rglob("*") if p.is_file()]  # neither final nor temporary
    async with se.http.get(url(se, read)) as r:
        assert r.status == 404
