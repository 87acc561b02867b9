"""access / commit / addSE / listSEDistance through a real server, with the keys alien.py
1.7.0 reads (url, envelope, se, nSEs, guid, md5, size, lfn, tags); the SEs are a real
embedded SE, which ``commit`` asks what it holds before registering anything."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import aiohttp
import pytest

from jalien.storage.quota import QuotaExceeded

HOME = "/alice/cern.ch/user/j/jdoe/"
MD5 = "5d41402abc4b2a76b9719d911017c592"  # "hello"
WORLD_MD5 = "7d793037a0760186574b0282f2f435e7"  # "world"


@pytest.fixture
async def http(grid_pki):
    ctx = ssl.create_default_context(capath=str(grid_pki.ca_dir))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield session


async def put(http, replica, data: bytes) -> int:
    async with http.put(f"{replica['url']}?authz={replica['envelope']}", data=data) as r:
        return r.status


def commit_args(r, size="5", md5=MD5):  # as alien.py: envelope size lfn perm expire pfn se guid md5
    return [r["envelope"], size, r["lfn"], "644", "0", r["url"], r["se"], r["guid"], md5]


async def test_write_then_commit_then_read(data_server, connect, signer, http):
    c = await connect(data_server)
    w = await c.call("access", "-s", "5", "-m", MD5, "write", "out/a.txt", "disk:2")
    assert w.exitcode == 0, w.error
    assert [r["se"] for r in w.results] == ["ALICE::TEST::DISK1", "ALICE::FAR::DISK2"]
    first = w.results[0]
    assert first["nSEs"] == "2" and first["size"] == "5" and first["md5"] == MD5
    assert first["lfn"] == HOME + "out/a.txt" and first["tags"] == "[disk]"
    assert first["url"].startswith(f"{data_server.se.base}/se1/") and first["url"].endswith(
        first["guid"]
    )
    grant = signer.verifier.open(first["envelope"])
    assert grant.access == "write" and grant.size == 5 and grant.user == "jdoe"
    assert (await c.call("stat", "out/a.txt")).exitcode == 2  # booked, not registered
    for r in w.results:
        assert await put(http, r, b"hello") == 201
        done = await c.call("commit", *commit_args(r))
        assert done.exitcode == 0, done.error
        assert done.results[0]["lfn"] == "1" and done.results[0]["pfn"] == r["url"]
    st = await c.call("stat", "out/a.txt")
    assert st.results[0]["size"] == "5" and st.results[0]["guid"] == first["guid"]
    assert len((await c.call("whereis", "out/a.txt")).results) == 2
    read = await c.call("access", "read", "out/a.txt")
    assert [r["se"] for r in read.results] == ["ALICE::TEST::DISK1", "ALICE::FAR::DISK2"]
    path = urlsplit(read.results[1]["url"]).path
    assert signer.verifier.check(read.results[1]["envelope"], "read", path).md5 == MD5
    strict = await c.call("access", "-f", "read", "out/a.txt", "ALICE::FAR::DISK2")
    assert [r["se"] for r in strict.results] == ["ALICE::FAR::DISK2"]
    again = await c.call("access", "-s", "5", "write", "out/a.txt", "disk:2")
    assert again.exitcode == 77  # both disk SEs already hold it
    different = await c.call("access", "-s", "6", "write", "out/a.txt")
    assert different.exitcode == 22


async def test_commit_refusals(data_server, connect, signer, http):
    c = await connect(data_server)
    w = (await c.call("access", "-s", "5", "-m", MD5, "write", "b.txt")).results[0]
    assert await put(http, w, b"hello") == 201
    base = commit_args(w)
    wrong_size = await c.call("commit", *[*base[:1], "7", *base[2:]])
    assert wrong_size.exitcode == 53 and "Nothing was registered" in wrong_size.error
    wrong_lfn = await c.call("commit", base[0], "5", "other.txt", *base[3:])
    assert wrong_lfn.exitcode == 53
    forged = await c.call("commit", base[0][:-4] + "AAAA", *base[1:])
    assert forged.exitcode == 53 and "forged" in forged.error
    read_env = signer.sign(
        signer.verifier.open(w["envelope"]).__class__(access="read", pfn="/x", lfn=w["lfn"],
                                                      user="jdoe", size=5)
    )  # fmt: skip
    assert (await c.call("commit", read_env, *base[1:])).exitcode == 53
    other = await connect(data_server, login="alice")
    stolen = await other.call("commit", *base)
    assert stolen.exitcode == 53 and "another user" in stolen.error
    assert (await c.call("commit", *base)).exitcode == 0


async def test_read_errors(data_server, connect):
    c = await connect(data_server)
    assert (await c.call("access", "read", "nope")).exitcode == 2
    assert (await c.call("touch", "empty")).exitcode == 0
    assert (await c.call("access", "read", "empty")).exitcode == 77  # no replicas
    assert (await c.call("access", "fly", "empty")).exitcode == 22
    assert (await c.call("access", "-s", "1", "write", "x", "disk:0")).exitcode == 22


async def test_a_write_envelope_books_a_size(data_server, connect, signer):
    c = await connect(data_server)
    for args, why in (
        (["write", "x"], "needs the size of the file: -s SIZE"),
        (["-s", "-1", "write", "x"], "needs the size of the file: -s SIZE"),
        (["-s", "lots", "write", "x"], "Option s needs a number"),
    ):
        refused = await c.call("access", *args)
        assert refused.exitcode == 22 and not refused.results, args
        assert why in refused.error, refused.error
    empty = await c.call("access", "-s", "0", "write", "empty.txt")
    assert empty.exitcode == 0 and signer.verifier.open(empty.results[0]["envelope"]).size == 0


async def test_commit_without_upload_refused(data_server, connect):
    c = await connect(data_server)
    w = (await c.call("access", "-s", "5", "-m", MD5, "write", "ghost.txt")).results[0]
    done = await c.call("commit", *commit_args(w))
    assert done.exitcode == 53 and "Nothing was registered" in done.error, done.error
    assert "no file" in done.error and w["se"] in done.error, done.error
    assert (await c.call("stat", "ghost.txt")).exitcode == 2
    assert not (await c.call("whereis", "ghost.txt")).results


async def test_commit_checks_size_and_md5_on_the_se(data_server, connect, http):
    c = await connect(data_server)
    w = (await c.call("access", "-s", "5", "write", "nomd5.txt")).results[0]  # books no md5
    assert w["md5"] == ""
    assert await put(http, w, b"hello") == 201
    wrong = await c.call("commit", *commit_args(w, md5=WORLD_MD5))
    assert wrong.exitcode == 53 and f"the SE computed {MD5}" in wrong.error, wrong.error
    assert (await c.call("stat", "nomd5.txt")).exitcode == 2
    done = await c.call("commit", *commit_args(w, md5=""))  # none stated: the SE's md5 is kept
    assert done.exitcode == 0, done.error
    assert (await c.call("stat", "nomd5.txt")).results[0]["md5"] == MD5

    w = (await c.call("access", "-s", "5", "-m", MD5, "write", "cut.txt")).results[0]
    assert await put(http, w, b"hello") == 201
    on_disk = data_server.se.root / urlsplit(w["url"]).path.lstrip("/")
    on_disk.write_bytes(b"hel")  # the SE lost bytes since
    cut = await c.call("commit", *commit_args(w))
    assert cut.exitcode == 53 and "holds 3 bytes" in cut.error and "booked 5" in cut.error
    assert not (await c.call("whereis", "cut.txt")).results


async def test_commit_refused_when_the_se_does_not_answer(data_server, connect):
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # takes, says nothing
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    c = await connect(data_server)
    for name, port in (("ALICE::TEST::SILENT", silent_port), ("ALICE::TEST::GONE", closed_port)):
        added = await c.call("addSE", name, f"https://127.0.0.1:{port}/se")
        assert added.exitcode == 0, added.error
    data_server.storage.checker.timeout = 0.5
    async with silent:
        for name, why in (("ALICE::TEST::SILENT", "did not answer within 0.5 s"),
                          ("ALICE::TEST::GONE", "cannot reach")):  # fmt: skip
            w = (await c.call("access", "-s", "5", "write", f"{name[-4:]}.txt", name)).results[0]
            done = await c.call("commit", *commit_args(w))
            assert done.exitcode == 53 and why in done.error and name in done.error, done.error


async def test_the_quota_hook_is_asked_at_access_write(data_server, connect):
    asked = []

    class Quota:
        async def check_write(self, login: str, size: int, count: int) -> None:
            asked.append((login, size, count))
            if size > 100:
                raise QuotaExceeded(f"{login} may store no more than 100 bytes")

    data_server.storage.quota = Quota()
    c = await connect(data_server)
    assert (await c.call("access", "-s", "5", "write", "small.txt")).exitcode == 0
    over = await c.call("access", "-s", "101", "write", "big.txt")
    assert over.exitcode == QuotaExceeded.exitcode and "no more than 100" in over.error
    assert asked == [("jdoe", 5, 1), ("jdoe", 101, 1)]


async def test_add_se_and_distance(data_server, connect):
    admin = await connect(data_server)  # jdoe is an admin in the test grid
    user = await connect(data_server, login="alice")
    add = ["addSE", "-site", "TEST", "-qos", "disk,legoinput", "ALICE::TEST::NEW", "https://h:1/n"]
    assert (await user.call(*add)).exitcode == 13
    added = await admin.call(*add)
    assert added.exitcode == 0 and added.results[0]["seNumber"] == "4"
    update = await admin.call("addSE", "-capacity", "100", "alice::test::new", "https://h:2/n")
    assert update.results[0]["seNumber"] == "4" and "updated" in update.results[0]["message"]
    ses = {r["seName"]: r for r in (await user.call("listSEs")).results}
    assert ses["ALICE::TEST::NEW"]["endpointUrl"] == "https://h:2/n"
    assert ses["ALICE::TEST::NEW"]["qos"] == "disk,legoinput"
    dist = await user.call("listSEDistance")
    order = [r["seName"] for r in dist.results]
    assert set(order[:2]) == {"ALICE::TEST::DISK1", "ALICE::TEST::NEW"}
    far = await user.call("listSEDistance", "-site", "FAR", "-qos", "tape")
    assert [r["seName"] for r in far.results] == ["ALICE::FAR::TAPE"]
    assert (await admin.call("addSE", "BAD", "https://h")).exitcode == 22
