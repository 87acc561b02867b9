"""access / commit / addSE / listSEDistance through a real server, with the keys alien.py
1.7.0 reads (url, envelope, se, nSEs, guid, md5, size, lfn, tags)."""

from __future__ import annotations

HOME = "/alice/cern.ch/user/j/jdoe/"
MD5 = "5d41402abc4b2a76b9719d911017c592"  # "hello"


async def test_write_then_commit_then_read(data_server, connect, signer):
    c = await connect(data_server)
    w = await c.call("access", "-s", "5", "-m", MD5, "write", "out/a.txt", "disk:2")
    assert w.exitcode == 0, w.error
    assert [r["se"] for r in w.results] == ["ALICE::TEST::DISK1", "ALICE::FAR::DISK2"]
    first = w.results[0]
    assert first["nSEs"] == "2" and first["size"] == "5" and first["md5"] == MD5
    assert first["lfn"] == HOME + "out/a.txt" and first["tags"] == "[disk]"
    assert first["url"].startswith("https://127.0.0.1:1/se1/") and first["url"].endswith(
        first["guid"]
    )
    grant = signer.verifier.open(first["envelope"])
    assert grant.access == "write" and grant.size == 5 and grant.user == "jdoe"
    assert (await c.call("stat", "out/a.txt")).exitcode == 2  # booked, not registered
    for r in w.results:  # as alien.py: envelope size lfn perm expire pfn se guid md5
        args = [r["envelope"], "5", r["lfn"], "644", "0", r["url"], r["se"], r["guid"], MD5]
        done = await c.call("commit", *args)
        assert done.exitcode == 0, done.error
        assert done.results[0]["lfn"] == "1" and done.results[0]["pfn"] == r["url"]
    st = await c.call("stat", "out/a.txt")
    assert st.results[0]["size"] == "5" and st.results[0]["guid"] == first["guid"]
    assert len((await c.call("whereis", "out/a.txt")).results) == 2
    read = await c.call("access", "read", "out/a.txt")
    assert [r["se"] for r in read.results] == ["ALICE::TEST::DISK1", "ALICE::FAR::DISK2"]
    assert signer.verifier.check(read.results[1]["envelope"], "read", read.results[1]["url"]
                                 .split("127.0.0.1:1")[1]).md5 == MD5  # fmt: skip
    strict = await c.call("access", "-f", "read", "out/a.txt", "ALICE::FAR::DISK2")
    assert [r["se"] for r in strict.results] == ["ALICE::FAR::DISK2"]
    again = await c.call("access", "write", "out/a.txt", "disk:2")
    assert again.exitcode == 77  # both disk SEs already hold it
    different = await c.call("access", "-s", "6", "write", "out/a.txt")
    assert different.exitcode == 22


async def test_commit_refusals(data_server, connect, signer):
    c = await connect(data_server)
    w = (await c.call("access", "-s", "5", "-m", MD5, "write", "b.txt")).results[0]
    base = [w["envelope"], "5", w["lfn"], "644", "0", w["url"], w["se"], w["guid"], MD5]
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
    assert (await c.call("access", "write", "x", "disk:0")).exitcode == 22


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
