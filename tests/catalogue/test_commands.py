"""Catalogue commands through a real server (binary channel client): semantics, exit codes,
permissions between users, hostile paths, streaming of big directories."""

from __future__ import annotations

import asyncio

import pytest

from jalien.catalogue.model import Replica, StorageElement

HOME = "/alice/cern.ch/user/j/jdoe/"


async def run(client, *words):
    return await client.call(words[0], *words[1:])


async def test_navigation_and_listing(cat_server, connect):
    c = await connect(cat_server)
    assert (await run(c, "pwd")).results[0]["message"] == HOME
    assert (await run(c, "mkdir", "-p", "data/run1")).exitcode == 0
    assert (await run(c, "touch", "data/run1/a.root", "data/b.txt")).exitcode == 0
    ls = await run(c, "ls", "data")
    assert [e.name for e in ls.entries] == ["b.txt", "run1"]
    assert ls.view == "ls:"
    cd = await run(c, "cd", "data")
    assert cd.metadata["currentdir"] == HOME + "data/"
    assert (await run(c, "ls", "-l", "run1")).entries[0].name == "a.root"
    assert (await run(c, "cd", "..")).metadata["currentdir"] == HOME
    assert (await run(c, "cd")).metadata["currentdir"] == HOME
    assert (await run(c, "cd", "data/b.txt")).exitcode == 20
    assert (await run(c, "cd", "nope")).exitcode == 2
    missing = await run(c, "ls", "nope", "data")
    assert missing.exitcode == 2 and missing.error == "No such file or directory : nope"
    assert len(missing.entries) == 2  # what was found is still listed
    glob = await run(c, "ls", "data/*.txt")
    assert [e.name for e in glob.entries] == ["b.txt"]


async def test_stat_type_find(cat_server, connect):
    c = await connect(cat_server)
    await run(c, "mkdir", "-p", "f/g")
    await run(c, "touch", "f/one.root", "f/g/two.root", "f/g/three.txt")
    stat = await run(c, "stat", "f/one.root")
    rec = stat.results[0]
    assert rec["lfn"] == HOME + "f/one.root" and rec["type"] == "f" and rec["perm"] == "755"
    assert rec["owner"] == "jdoe" and int(rec["mtime"]) > 0
    assert (await run(c, "stat", "f")).results[0]["lfn"] == HOME + "f/"
    assert (await run(c, "type", "f")).results[0]["type"] == "directory"
    assert (await run(c, "type", "zzz")).exitcode == 2
    found = await run(c, "find", "f", ".root")
    # sorted directory by directory (JAliEn sorts by the whole path string)
    assert [r["lfn"] for r in found.results] == [HOME + "f/one.root", HOME + "f/g/two.root"]
    assert len((await run(c, "find", "-l", "1", "f", "*")).results) == 1
    assert len((await run(c, "find", "-d", "f", "*")).results) == 4
    assert (await run(c, "find", "f/one.root", "*")).exitcode == 20
    regex = await run(c, "find", "-r", "f", r"g/t.*\.txt$")
    assert [r["lfn"] for r in regex.results] == [HOME + "f/g/three.txt"]
    wide = await run(c, "find", "-nomsg", "-f", "-a", "-s", "f/", "*.txt")
    assert wide.results[0]["size"] == "0" and wide.results[0]["md5"]
    assert (await run(c, "find", "f/*.root")).exitcode == 0


async def test_rm_rmdir_mv_semantics(cat_server, connect):
    c = await connect(cat_server)
    await run(c, "mkdir", "-p", "m/n")
    await run(c, "touch", "m/n/x", "m/y")
    assert (await run(c, "rmdir", "m")).exitcode == 5  # not empty, as JAliEn: EIO
    assert (await run(c, "rm", "m")).exitcode == 5  # a directory without -r
    assert (await run(c, "mv", "m/y", "m/n")).exitcode == 0
    assert (await run(c, "stat", "m/n/y")).exitcode == 0
    assert (await run(c, "mv", "m/n", "m/renamed")).exitcode == 0
    assert (await run(c, "stat", "m/renamed/x")).exitcode == 0
    assert (await run(c, "mv", "m/none", "m/z")).exitcode == 22
    assert (await run(c, "rm", "-r", "m/renamed")).exitcode == 0
    assert (await run(c, "rmdir", "m")).exitcode == 0
    assert (await run(c, "rm", HOME.rstrip("/"))).exitcode == 22  # your home
    assert (await run(c, "mkdir", "m2")).exitcode == 0
    assert (await run(c, "mkdir", "m2")).exitcode == 0  # existing dir: fine, as JAliEn
    assert (await run(c, "mkdir", "x/y/z")).exitcode == 2  # no parent without -p


async def test_permissions_between_users(cat_server, connect):
    jdoe = await connect(cat_server)
    alice = await connect(cat_server, login="alice")
    await run(jdoe, "mkdir", "-p", "shared")
    await run(jdoe, "touch", "shared/f")
    # alice may read jdoe's 755 tree but not write into it
    assert (await run(alice, "ls", HOME + "shared")).exitcode == 0
    assert (await run(alice, "touch", HOME + "shared/g")).exitcode == 121
    assert (await run(alice, "mkdir", HOME + "shared/d")).exitcode == 2
    assert (await run(alice, "rm", HOME + "shared/f")).exitcode == 5
    assert (await run(alice, "chmod", "777", HOME + "shared")).exitcode == 5
    await run(jdoe, "chmod", "700", "shared")
    assert (await run(alice, "ls", HOME + "shared")).exitcode != 0
    # jdoe has the admin role in the test grid: chown works for him
    assert (await run(jdoe, "chown", "alice", "shared/f")).exitcode == 0
    assert (await run(jdoe, "stat", "shared/f")).results[0]["owner"] == "alice"
    assert (await run(alice, "chown", "alice", HOME + "shared")).exitcode == 5


@pytest.mark.parametrize(
    "path",
    ["", "\0evil", "a" * 5000, "../../../../../../..", "/..", "ünï©ødé", "sp ace", "x/" * 200],
)
async def test_hostile_paths(cat_server, connect, path):
    c = await connect(cat_server)
    reply = await run(c, "stat", path) if path else await run(c, "stat", "")
    assert reply.exitcode in (0, 2, 22), reply
    made = await run(c, "mkdir", "-p", path) if path else await run(c, "mkdir", "")
    assert made.exitcode in (0, 2, 22)
    assert (await run(c, "pwd")).exitcode == 0  # the session goes on


async def test_unicode_and_spaces_round_trip(cat_server, connect):
    c = await connect(cat_server)
    assert (await run(c, "touch", "ünï©ødé file.root")).exitcode == 0
    assert [e.name for e in (await run(c, "ls")).entries] == ["ünï©ødé file.root"]


async def test_whereis_and_guids(cat_server, connect):
    c = await connect(cat_server)
    await run(c, "touch", "w.root")
    cat = cat_server.catalogue
    entry = await cat.get(HOME + "w.root")
    await cat.backend.put_se(
        StorageElement(name="ALICE::CERN::EOS", url="root://eos//grid", qos=["disk"], number=3)
    )
    await cat.backend.add_replicas(
        [
            Replica(
                guid=entry.guid,
                se="ALICE::CERN::EOS",
                pfn="root://eos//grid/01/12345/" + entry.guid,
            )
        ]
    )
    where = await run(c, "whereis", "w.root")
    assert where.results[0]["seName"] == "ALICE::CERN::EOS"
    assert where.results[0]["seNumber"] == "3"
    assert where.results[0]["message"].startswith("the file w.root is in")
    assert (await run(c, "guid2lfn", entry.guid)).results[0]["lfn"] == HOME + "w.root"
    assert (await run(c, "lfn2guid", "w.root")).results[0]["guid"] == entry.guid
    assert (await run(c, "whereis", "-g", entry.guid)).exitcode == 0
    ses = await run(c, "listSEs")
    assert ses.results[0]["seName"] == "ALICE::CERN::EOS"
    assert ses.results[0]["endpointUrl"] == "root://eos//grid"
    assert (await run(c, "listSEs", "-qos", "tape")).results == []
    assert (await run(c, "md5sum", "w.root")).results[0]["md5"]
    assert (await run(c, "du", "-n", ".")).results[0]["logical_files_count"] == "1"
    # the whereis answer was cached and a write drops it
    await run(c, "whereis", "w.root")
    assert cat.cache.hits >= 1
    await run(c, "rm", "w.root")
    assert (await run(c, "whereis", "w.root")).exitcode == 2


async def test_big_directory_streams(cat_server, connect):
    from jalien.catalogue.model import Entry
    from jalien.wire.messages import Request

    cat = cat_server.catalogue
    c = await connect(cat_server)
    await run(c, "mkdir", "big")
    rows = [Entry(HOME + "big/", f"f{i:06d}", "f", "755", "jdoe", "jdoe") for i in range(12000)]
    await cat.backend.insert(rows)
    pages = [
        len(p.entries) async for p in c.main.stream(Request(command="ls", options=["-l", "big"]))
    ]
    assert sum(pages) == 12000 and len(pages) >= 3
    find = await run(c, "find", "-l", "10", "big", "*")
    assert len(find.results) == 10


async def test_concurrent_writers(cat_server, connect):
    clients = [await connect(cat_server) for _ in range(4)]
    await run(clients[0], "mkdir", "conc")
    replies = await asyncio.gather(
        *(run(clients[i % 4], "touch", f"conc/f{i}") for i in range(200))
    )
    assert all(r.exitcode == 0 for r in replies)
    assert len((await run(clients[0], "ls", "conc")).entries) == 200


async def test_empty_answers_still_answer_on_the_binary_channel(cat_server, connect):
    """ls of an empty directory and find with no match produce no page: the client must
    still get one (empty) answer, not wait for its timeout."""
    c = await connect(cat_server)
    assert (await run(c, "mkdir", "-p", "empty")).exitcode == 0
    ls = await c.call("ls", "empty", timeout=5)
    assert (ls.exitcode, ls.entries) == (0, [])
    found = await c.call("find", "empty", "*.root", timeout=5)
    assert found.exitcode == 0 and not found.results


async def test_du_h_is_help_as_in_jalien(cat_server, connect):
    """JAliEn's commander takes -h (-help, --help) out of every command's arguments and prints
    the command's help with exit 0: du has no human-readable -h (its sizes are human-readable
    unless -n), so `du -h DIR` prints du's usage, exit 0, and lists nothing."""
    c = await connect(cat_server)
    for words in (("du", "-h"), ("du", "-h", "."), ("du", ".", "--help")):
        reply = await run(c, *words)
        assert reply.exitcode == 0, words
        assert len(reply.results) == 1 and "du" in reply.results[0]["message"]
        assert "logical_files_count" not in reply.results[0]
    assert (await run(c, "du", "-x", ".")).exitcode == 22  # an unknown option: EINVAL


async def test_ls_over_the_binary_channel_shows_what_ls_shows(cat_server, connect):
    """On the binary channel a listing's pages go from SQLite to the wire encoded
    (``_fast.rowpack``, never Python objects): hidden names without -a, no directories with
    -b, the fields each view reads, the same rows as the listing itself."""
    from jalien.catalogue.backend import is_shown

    c = await connect(cat_server)
    assert (await run(c, "mkdir", "-p", "h/sub", "h/.dot")).exitcode == 0
    assert (await run(c, "touch", "h/.x", "h/a", "h/b")).exitcode == 0
    for flags, names in [
        ([], ["a", "b", "sub"]),
        (["-a"], [".dot", ".x", "a", "b", "sub"]),
        (["-b"], ["a", "b"]),
        (["-a", "-b"], [".x", "a", "b"]),
        (["-l"], ["a", "b", "sub"]),
    ]:
        ls = await run(c, "ls", *flags, "h")
        assert [e.name for e in ls.entries] == names, flags
    long = (await run(c, "ls", "-l", "h")).entries
    listing = [e async for page in cat_server.catalogue.backend.list_dir(HOME + "h/") for e in page]
    expected = [e for e in listing if is_shown(e.name, e.type, True, "")]
    assert [(e.name, e.type, e.perm, e.owner, e.size, e.ctime) for e in long] == [
        (e.name, e.type, e.perm, e.owner, e.size, e.ctime) for e in expected
    ]
    assert all(e.guid == "" for e in long)  # ls -l does not read the GUIDs
