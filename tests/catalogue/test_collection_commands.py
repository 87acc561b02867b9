"""find -x, toXml and listFilesFromCollection through a real server, with storage stood in
by a dict (the upload path itself is tested in tests/integration/test_collections_process.py):
options, messages and exit codes as JAliEn's."""

from __future__ import annotations

import pytest

from jalien.auth.policy import Action
from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.collections import parse
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.catalogue_cmds import CatalogueCommands, home_preparer
from jalien.commands.collection_cmds import CollectionCommands, WritesWith
from jalien.commands.errno import ENOENT, jalien_error

HOME = "/alice/cern.ch/user/j/jdoe/"


@pytest.fixture
async def server(make_server, tmp_path):
    backend = SQLiteBackend(tmp_path / "c.db")
    await backend.start()
    cat = Catalogue(backend, cache=MemoryCache())
    files: dict[str, bytes] = {}

    async def read_file(session, lfn, limit=1 << 20):
        if lfn not in files:
            raise jalien_error(ENOENT, lfn)
        return files[lfn]

    async def write_file(session, lfn, data):
        await cat.register(session.identity, lfn, len(data), "")
        files[lfn] = data
        return lfn

    def add(table):
        commands = CatalogueCommands(table, cat)
        commands.register()
        collections = CollectionCommands(table, cat, read_file, write_file)
        collections.register()
        commands.save_collection = collections.save

    srv = await make_server(add_commands=add, prepare=home_preparer(cat))
    srv.files = files
    yield srv
    await backend.close()


async def test_find_x_writes_and_answers_nothing(server, connect):
    c = await connect(server)
    await c.call("mkdir", "-p", "d/a", "d/b")
    await c.call("touch", "d/a/1.root", "d/a/2.root", "d/b/3.root", "d/b/log.txt")
    found = await c.call("find", "-x", "c.xml", "d", "*.root")
    assert (found.exitcode, found.results) == (0, [])
    coll = parse(server.files[HOME + "c.xml"])
    assert coll.lfns == [HOME + f for f in ("d/a/1.root", "d/a/2.root", "d/b/3.root")]
    assert coll.name == HOME + "c.xml" and coll.creator == "jdoe"
    assert coll.command == f"find {HOME}d/ *.root -x {HOME}c.xml"
    # -l limits the collection, -o does not apply to it (JAliEn); an existing one is replaced
    assert (await c.call("find", "-o", "1", "-l", "2", "-x", "c.xml", "d", "*.root")).exitcode == 0
    assert len(parse(server.files[HOME + "c.xml"]).files) == 2
    # -y: no metadata tag tables here, nothing matches; it needs a tag:condition query
    assert (await c.call("find", "-y", "d", "*.root")).exitcode == 22
    y = await c.call("find", "-c", "-y", "d", "*.root", "tag:x>1")
    assert y.exitcode == 0 and y.results == [{"message": "Found 0 maching entries"}]


async def test_to_xml_options(server, connect):
    c = await connect(server)
    await c.call("mkdir", "-p", "t")
    await c.call("touch", "t/a", "t/b", "t/c")
    printed = await c.call("toXml", "t/a", "t/b")
    assert printed.exitcode == 0
    assert parse(printed.results[0]["message"]).lfns == [HOME + "t/a", HOME + "t/b"]
    missing = await c.call("toXml", "t/a", "t/zz")
    assert missing.exitcode == 2
    assert missing.error.endswith("Only 1 out of 2 files could be resolved")
    ignored = await c.call("toXml", "-i", "t/a", "t/zz")
    assert ignored.exitcode == 0 and "Only 1 out of 2" in ignored.error
    assert parse(ignored.results[0]["message"]).lfns == [HOME + "t/a"]
    assert (await c.call("toXml")).exitcode == 61  # ENODATA: Empty content
    assert (await c.call("toXml", "-i", "t/zz")).exitcode == 61  # Empty collection
    server.files[HOME + "list.txt"] = f"t/b\n\n{HOME}t/c\n".encode()
    listed = await c.call("toXml", "-l", "list.txt", "t/a")
    assert parse(listed.results[0]["message"]).lfns == [HOME + f for f in ("t/b", "t/c", "t/a")]
    assert (await c.call("toXml", "-l", "none.txt")).exitcode == 5
    assert (await c.call("toXml", "-x", "m.xml", "t/a")).results == []
    again = await c.call("toXml", "-a", "-x", "m.xml", "t/a")
    assert again.results[0]["message"] == (
        "Collection was not modified, all 1 entries were already included in it"
    )
    assert (await c.call("toXml", "-a", "-x", "m.xml", "t/b", "t/c")).exitcode == 0
    assert parse(server.files[HOME + "m.xml"]).lfns == [HOME + f for f in ("t/a", "t/b", "t/c")]
    assert (await c.call("stat", "m.xml~")).exitcode == 0  # the previous one kept
    assert (await c.call("toXml", "-a", "t/a")).exitcode == 22


async def test_list_files_from_collection(server, connect):
    c = await connect(server)
    await c.call("mkdir", "-p", "l")
    await c.call("touch", "l/x.root")
    await c.call("toXml", "-x", "l.xml", "l/x.root")
    listed = await c.call("listFilesFromCollection", "l.xml")
    guid = listed.results[0]["guid"]
    assert listed.results == [
        {
            "guid": guid,
            "lfn": HOME + "l/x.root",
            "message": f"{guid} (from the file {HOME}l/x.root)",
        }
    ]
    z = await c.call("listFilesFromCollection", "-z", "l.xml")
    assert z.results[0]["size"] == " 0" and "(size = 0) (md5 = " in z.results[0]["message"]
    assert "message" not in (await c.call("listFilesFromCollection", "-s", "l.xml")).results[0]
    assert (await c.call("listFilesFromCollection")).exitcode == 22
    assert (await c.call("listFilesFromCollection", "a", "b")).exitcode == 22
    none = await c.call("listFilesFromCollection", "none.xml")
    assert (none.exitcode, none.error) == (1, f'No such LFN "{HOME}none.xml"')
    assert (await c.call("listFilesFromCollection", "l")).exitcode == 1  # a directory
    server.files[HOME + "bad.xml"] = b"<alien><file lfn='/x'>"
    await c.call("touch", "bad.xml")
    bad = await c.call("listFilesFromCollection", "bad.xml")
    assert bad.exitcode == 22 and "not well-formed XML at line 1" in bad.error


def test_the_policy_action_follows_x():
    action = WritesWith("x")
    assert action(["-w", "dir", "pat"]) is Action.READ
    assert action(["-x", "c.xml", "dir", "pat"]) is Action.WRITE
    assert action(["--x=c.xml", "dir", "pat"]) is Action.WRITE
    assert action(["--", "-x", "pat"]) is Action.READ
