"""Storage writes bounded and verified, on real processes: jcentral with its embedded SE and
two real XRootD SEs (tests/storage/xrootd_server.py). An envelope always books a size; the
embedded SE takes no byte beyond it and keeps nothing of a refused upload; commit asks the
SE what it holds and registers nothing that is missing or differs in size or md5, also when
the envelope booked no md5; alien.py shows why a commit was refused."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess

import aiohttp
import pytest

from jalien.net.client import Client
from jalien.storage.xrd import transfer_url
from tests.integration.test_cp_process import NEAR
from tests.integration.test_cp_xrootd import HOME, XRD1, XGrid
from tests.integration.test_jcentral_process import alien

pytestmark = pytest.mark.integration
HELLO, WORLD = b"hello", b"world"
HELLO_MD5 = hashlib.md5(HELLO).hexdigest()
WORLD_MD5 = hashlib.md5(WORLD).hexdigest()


@pytest.fixture(scope="module")
def xgrid(tmp_path_factory):
    g = XGrid(tmp_path_factory.mktemp("boundsgrid"))
    yield g
    g.close()


@pytest.fixture
async def central(xgrid):
    client = Client("127.0.0.1", xgrid.binary, xgrid.user_ssl(), reconnect=False)
    await client.connect()
    added = await client.call("addSE", "-site", "LOCAL", "-qos", "disk", XRD1, xgrid.xrd[XRD1].url)
    assert added.exitcode == 0, added.error
    yield client
    await client.close()


def commit_args(r, size: int, md5: str) -> list[str]:  # what alien.py sends
    return [r["envelope"], str(size), r["lfn"], "644", "0", r["url"], r["se"], r["guid"], md5]


def se_files(xgrid) -> set[str]:
    return {str(p) for p in (xgrid.home / "se").rglob("*") if p.is_file()}


async def put_https(xgrid, replica, data) -> tuple[int, str]:
    url = f"{replica['url']}?authz={replica['envelope']}"
    connector = aiohttp.TCPConnector(ssl=xgrid.se_ssl())
    async with aiohttp.ClientSession(connector=connector) as h, h.put(url, data=data) as r:
        return r.status, await r.text()


async def put_xrootd(tmp_path, replica, data: bytes) -> None:
    src = tmp_path / replica["guid"]
    src.write_bytes(data)
    url = transfer_url(replica["url"], replica["envelope"])
    done = await asyncio.to_thread(
        subprocess.run, ["xrdcp", "-s", "-f", str(src), url], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def test_access_write_without_a_size_is_refused(central):
    for args in (["write", "nosize.bin"], ["-s", "-1", "write", "nosize.bin"]):
        refused = await central.call("access", *args)
        assert refused.exitcode == 22 and not refused.results, refused
        assert "-s SIZE" in refused.error


async def test_bytes_beyond_the_envelope_are_refused_and_nothing_is_kept(xgrid, central):
    w = await central.call("access", "-s", "1000", "write", "bounded/big.bin", NEAR)
    assert w.exitcode == 0 and w.results[0]["size"] == "1000", w.error
    before = se_files(xgrid)
    status, text = await put_https(xgrid, w.results[0], bytes(64 << 20))  # a stated 64 MiB
    assert status == 413 and "books 1000 bytes" in text, text

    async def stream():  # the same, chunked: nothing stated
        for _ in range(64):
            yield bytes(1 << 20)

    status, text = await put_https(xgrid, w.results[0], stream())
    assert status == 413 and "more than the 1000 bytes" in text, text
    assert se_files(xgrid) == before  # neither the file nor a temporary part
    done = await central.call("commit", *commit_args(w.results[0], 1000, ""))
    assert done.exitcode == 53 and "no file at" in done.error, done.error
    assert not (await central.call("whereis", "bounded/big.bin")).results


@pytest.mark.parametrize("se", [NEAR, XRD1])
async def test_commit_without_upload_is_refused(central, se):
    lfn = f"ghost/{se.rsplit('::', 1)[1].lower()}.bin"
    w = (await central.call("access", "-s", "5", "-m", HELLO_MD5, "write", lfn, se)).results[0]
    done = await central.call("commit", *commit_args(w, 5, HELLO_MD5))
    assert done.exitcode == 53 and "Nothing was registered" in done.error, done.error
    assert f"no file at {w['url']} on {se}" in done.error, done.error
    assert (await central.call("stat", lfn)).exitcode == 2
    assert not (await central.call("whereis", lfn)).results


@pytest.mark.parametrize("se", [NEAR, XRD1])
async def test_wrong_md5_is_refused_when_the_envelope_booked_none(xgrid, central, se, tmp_path):
    lfn = f"nomd5/{se.rsplit('::', 1)[1].lower()}.txt"
    w = (await central.call("access", "-s", "5", "write", lfn, se)).results[0]
    assert w["md5"] == ""
    if se == NEAR:
        assert (await put_https(xgrid, w, HELLO))[0] == 201
    else:
        await put_xrootd(tmp_path, w, HELLO)
    wrong = await central.call("commit", *commit_args(w, 5, WORLD_MD5))
    assert wrong.exitcode == 53, wrong.error
    assert f"the SE computed {HELLO_MD5}, not {WORLD_MD5}" in wrong.error, wrong.error
    assert not (await central.call("whereis", lfn)).results
    done = await central.call("commit", *commit_args(w, 5, HELLO_MD5))
    assert done.exitcode == 0, done.error
    assert (await central.call("stat", lfn)).results[0]["md5"] == HELLO_MD5
    assert [r["seName"] for r in (await central.call("whereis", lfn)).results] == [se]


async def test_more_bytes_on_an_xrootd_se_are_refused_at_commit(central, tmp_path):
    """Debian's xrootd cannot enforce the envelope: commit finds the size that differs."""
    w = (await central.call("access", "-s", "5", "write", "xbig/ten.bin", XRD1)).results[0]
    await put_xrootd(tmp_path, w, HELLO + WORLD)
    done = await central.call("commit", *commit_args(w, 5, ""))
    assert done.exitcode == 53 and "holds 10 bytes, the envelope booked 5" in done.error
    assert not (await central.call("whereis", "xbig/ten.bin")).results


def test_alienpy_shows_why_a_commit_was_refused(xgrid, alienpy, tmp_path):
    async def book():
        client = Client("127.0.0.1", xgrid.binary, xgrid.user_ssl(), reconnect=False)
        await client.connect()
        try:
            return await client.call("access", "-s", "5", "write", "ghost/alienpy.bin", NEAR)
        finally:
            await client.close()

    w = asyncio.run(book()).results[0]
    done = alien(alienpy, xgrid, "commit", *commit_args(w, 5, HELLO_MD5), tmp_path=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 53, out
    assert "Nothing was registered" in out and f"no file at {w['url']}" in out, out
    listed = alien(alienpy, xgrid, "whereis", f"{HOME}ghost/alienpy.bin", tmp_path=tmp_path)
    assert listed.returncode != 0, listed.stdout
