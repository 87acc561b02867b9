"""The embedded SE over real HTTPS on loopback: envelopes enforced on every request, byte
ranges, md5 checked while uploading, nothing half-written under the final name."""

from __future__ import annotations

import hashlib
import ssl
import time

import aiohttp
import msgspec
import pytest

from jalien.storage.envelope import EnvelopeSigner, Grant, _b64
from jalien.storage.replica_check import StoredReplica
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
    expired = signer.sign(Grant(access="write", pfn=PATH, size=1), now=time.time() - 10**5)
    other = signer.sign(Grant(access="write", pfn=PATH + "x", size=1))
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

    hidden = PATH.rsplit("/", 1)[0] + "/.part"
    async with se.http.get(url(se, signer.sign(Grant(access="read", pfn=hidden)), hidden)) as r:
        assert r.status == 404  # temporary names are never served


def stored_files(se):
    return [p for p in se.root.rglob("*") if p.is_file()]


def raw_envelope(signer, grant):
    """An envelope our signer no longer makes (a write booking no size, from an older
    central), signed with its key all the same."""
    body = msgspec.json.encode(grant)
    return f"{_b64(body)}.{_b64(signer._key.sign(body))}"


async def test_a_write_envelope_must_book_a_size(se, signer):
    now = int(time.time())
    unbounded = raw_envelope(signer, Grant(access="write", pfn=PATH, issued=now, expires=now + 60))
    async with se.http.put(url(se, unbounded), data=DATA) as r:
        assert r.status == 403 and "books no size" in await r.text()
    assert not stored_files(se)


async def test_no_byte_beyond_the_booked_size_and_none_fewer(se, signer):
    write = signer.sign(Grant(access="write", pfn=PATH, size=1000))  # books no md5
    async with se.http.put(url(se, write), data=DATA) as r:  # stated length: refused at once
        assert r.status == 413 and "books 1000 bytes" in await r.text()
    async with se.http.put(url(se, write), data=DATA, expect100=True) as r:
        assert r.status == 413  # answered instead of "100 Continue": the body never leaves

    async def chunks(data):  # no stated length: chunked
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    async with se.http.put(url(se, write), data=chunks(DATA)) as r:
        assert r.status == 413 and "more than the 1000 bytes" in await r.text()
    assert not stored_files(se)  # neither final nor temporary
    async with se.http.put(url(se, write), data=DATA[:999]) as r:
        assert r.status == 422 and "999" in await r.text()
    async with se.http.put(url(se, write), data=chunks(DATA[:999])) as r:
        assert r.status == 422 and "got 999 bytes" in await r.text()
    assert not stored_files(se)
    async with se.http.put(url(se, write), data=chunks(DATA[:1000])) as r:
        assert r.status == 201
    assert [p.stat().st_size for p in stored_files(se)] == [1000]


async def test_stat_answers_the_ses_own_record_to_central(se, signer, tmp_path):
    grant = Grant(access="write", pfn=PATH, size=len(DATA))  # books no md5
    async with se.http.put(url(se, signer.sign(grant)), data=DATA) as r:
        assert r.status == 201
    question = signer.stat_envelope(grant)
    async with se.http.get(url(se, question)) as r:
        assert r.status == 200
        assert msgspec.json.decode(await r.read(), type=StoredReplica) == StoredReplica(
            size=len(DATA), md5=MD5
        )
    forger, _ = EnvelopeSigner.load_or_create(tmp_path / "forger")
    async with se.http.get(url(se, forger.stat_envelope(grant))) as r:
        assert r.status == 403 and "forged" in await r.text()
    async with se.http.get(url(se, signer.sign(grant))) as r:
        assert r.status == 403  # a write envelope neither reads nor stats
    async with se.http.head(url(se, question)) as r:
        assert r.status == 403  # stat is a GET
    missing = PATH[:-1] + "2"
    async with se.http.get(
        url(se, signer.stat_envelope(Grant(access="write", pfn=missing, size=1)), missing)
    ) as r:
        assert r.status == 404  # fmt: skip
    # a file stored without the SE's record (before records existed): its md5 is computed
    (se.root / missing.lstrip("/")).write_bytes(b"hello")
    async with se.http.get(url(se, signer.sign(Grant(access="stat", pfn=missing)), missing)) as r:
        assert msgspec.json.decode(await r.read(), type=StoredReplica) == StoredReplica(
            size=5, md5="5d41402abc4b2a76b9719d911017c592"
        )
