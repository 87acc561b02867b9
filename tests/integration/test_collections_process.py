"""XML collections on a real jcentral with its embedded SE, through alien.py 1.7.0 and
jalien-bin: find -x writes a collection to storage, listFilesFromCollection and toXml read
and write them, and a JDL's InputDataCollection with Split=file gives each subjob a file."""

from __future__ import annotations

import asyncio

import pytest

from jalien.auth.tls import client_context
from jalien.net.client import Client
from tests.integration.conftest import run_user, start_embedded_grid
from tests.integration.conftest import stop as stop_process
from tests.integration.test_jcentral_process import alien

pytestmark = pytest.mark.integration
HOME = "/alice/cern.ch/user/j/jdoe/"
FILES = [f"{HOME}ana/run{r}/AO2D_{i}.root" for r in (1, 2) for i in (1, 2)]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    central = start_embedded_grid(tmp_path_factory.mktemp("collections"))
    yield central
    stop_process(central.proc)


def jb(grid, tmp_path, *args):
    return run_user(grid, tmp_path, *args)


def test_find_x_list_and_to_xml(alienpy, grid, tmp_path):
    def a(*args):
        done = alien(alienpy, grid, *args, tmp_path=tmp_path / "ap")
        return done.returncode, done.stdout.strip(), done.stderr.strip()

    assert a("mkdir", "-p", "ana/run1", "ana/run2")[0] == 0
    for lfn in FILES:
        assert a("touch", lfn)[0] == 0
    assert a("touch", "ana/run1/log.txt")[0] == 0
    # find -x writes the collection and answers nothing, as JAliEn does
    code, out, err = a("find", "-x", "coll.xml", "ana", "*.root")
    assert (code, out) == (0, ""), err
    code, out, _ = a("type", "coll.xml")
    assert code == 0 and "file" in out
    code, out, err = a("whereis", "coll.xml")
    assert code == 0 and "ALICE::LOCAL::SE" in out, err
    code, out, err = a("listFilesFromCollection", "coll.xml")
    assert code == 0, err
    listed = [line.split("(from the file ")[1].rstrip(")") for line in out.splitlines()]
    assert listed == FILES
    code, out, err = a("listFilesFromCollection", "-z", "coll.xml")
    assert code == 0 and "(size = 0) (md5 = " in out, err
    # -l limits the collection
    assert a("find", "-l", "1", "-x", "one.xml", "ana", "*.root")[0] == 0
    code, out, _ = a("listFilesFromCollection", "one.xml")
    assert code == 0 and len(out.splitlines()) == 1
    # toXml prints the XML; toXml -x writes it; -a appends
    code, out, err = a("toXml", "ana/run1/AO2D_1.root")
    assert code == 0 and out.startswith('<?xml version="1.0"?>\n<alien>'), (out, err)
    assert f'lfn="{FILES[0]}"' in out
    assert a("toXml", "-x", "mine.xml", "ana/run1/AO2D_1.root")[0] == 0
    assert a("toXml", "-a", "-x", "mine.xml", "ana/run2/AO2D_2.root")[0] == 0
    code, out, _ = a("listFilesFromCollection", "mine.xml")
    assert code == 0 and [line.split()[-1].rstrip(")") for line in out.splitlines()] == [
        FILES[0],
        FILES[3],
    ]
    # errors with JAliEn's exit codes
    code, _, err = a("toXml", "ana/nothing.root")
    assert code == 2 and "Only 0 out of 1 files could be resolved" in err
    code, _, err = a("listFilesFromCollection", "missing.xml")
    assert code == 1 and f'No such LFN "{HOME}missing.xml"' in err
    code, _, err = a("listFilesFromCollection", "-v", "coll.xml")
    assert code == 1 and "not an AliEn collection" in err
    code, _, err = a("toXml", "-a", "ana/run1/AO2D_1.root")  # alien.py refuses it itself
    assert code == 1 and "need -x" in err


def test_jalien_bin_and_malformed_collections(grid, tmp_path):
    code, out, err = jb(grid, tmp_path, "find", "-x", "bin.xml", "ana", "run2/*.root")
    assert (code, out.strip()) == (0, ""), err
    code, out, err = jb(grid, tmp_path, "listFilesFromCollection", "bin.xml")
    assert code == 0 and FILES[2] in out and FILES[0] not in out, err
    code, out, err = jb(grid, tmp_path, "listFilesFromCollection", "coll.xml")
    assert code == 0 and FILES[0] in out, err
    code, _, err = jb(grid, tmp_path, "toXml", "-a", "ana/run1/AO2D_1.root")
    assert code == 22 and "-x as well" in err, err
    bad = tmp_path / "bad.xml"
    bad.write_text("<alien><collection><event>\n")
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE alien [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<alien><file lfn="/&b;"/></alien>\n'
    )
    for local in (bad, hostile):
        code, _, err = jb(grid, tmp_path, "cp", f"file:{local}", local.name)
        assert code == 0, err
    code, _, err = jb(grid, tmp_path, "listFilesFromCollection", "bad.xml")
    assert code == 22 and "not well-formed XML at line 2" in err, err
    code, _, err = jb(grid, tmp_path, "listFilesFromCollection", "hostile.xml")
    assert code == 22 and "not allowed" in err, err


JDL = """Executable = "/bin/echo";
Arguments = "analysis";
InputDataCollection = {"LF:%scoll.xml,nodownload"};
Split = "file";
TTL = 300;
"""


def test_submit_with_input_data_collection(grid):
    async def main():
        context = client_context(
            grid.globus / "usercert.pem", grid.globus / "userkey.pem", grid.ca_dir
        )
        client = Client("127.0.0.1", grid.binary_port, context, reconnect=False)
        await client.connect()
        try:
            reply = await client.call("submit", "=<", JDL % HOME)
            assert reply.exitcode == 0, reply.error
            master = int(reply.results[0]["jobId"])
            inputs = []
            for sub in range(master + 1, master + 1 + len(FILES)):
                shown = await client.call("ps", "-jdl", str(sub))
                assert shown.exitcode == 0, shown.error
                jdl = shown.results[0]["jdl"]
                inputs.append([f for f in FILES if f'"LF:{f}"' in jdl])
            assert sorted(inputs) == sorted([f] for f in FILES)
            bad = await client.call("submit", "=<", JDL.replace("coll.xml", "nothing.xml") % HOME)
            assert bad.exitcode == 1 and "No such LFN" in bad.error
        finally:
            await client.close()

    asyncio.run(main())


def test_archive_list_and_members(alienpy, grid, tmp_path):
    import zipfile

    local = tmp_path / "out.zip"
    with zipfile.ZipFile(local, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("stdout", "hello from the job\n")
        zf.writestr("sub/log.txt", "x" * 5000)
    code, _, err = jb(grid, tmp_path, "cp", f"file:{local}", "job/out.zip")
    assert code == 0, err
    done = alien(alienpy, grid, "archiveList", "job/out.zip", tmp_path=tmp_path / "ap")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    size = local.stat().st_size
    assert lines[0] == f"Content of: {HOME}job/out.zip ({size} bytes = {size} B)"
    assert lines[1].startswith("  stdout\t , guid ") and "(19 bytes = 19 B = " in lines[1]
    assert lines[2].startswith("  sub/log.txt\t , guid ")
    code, out, err = jb(grid, tmp_path, "archiveList", "job/none.zip")
    assert code == 2 and "job/none.zip does not exist in the catalogue" in err, (out, err)
    (tmp_path / "plain.txt").write_text("not a zip, long enough to hold an end record\n")
    assert jb(grid, tmp_path, "cp", f"file:{tmp_path}/plain.txt", "job/plain.txt")[0] == 0
    code, out, _ = jb(grid, tmp_path, "archiveList", "job/plain.txt")
    assert code == 0 and "looks like this is not a ZIP archive" in out
    # access of archive.zip#member: the archive's URL with #member, the member's size
    code, out, err = jb(grid, tmp_path, "access", "read", "job/out.zip#stdout")
    assert code == 0 and "#stdout" in out, (out, err)
    # cp reads the member out of the archive
    code, _, err = jb(grid, tmp_path, "cp", "job/out.zip#sub/log.txt", f"file:{tmp_path}/got/")
    assert code == 0, err
    assert (tmp_path / "got" / "log.txt").read_text() == "x" * 5000
    code, _, err = jb(grid, tmp_path, "cp", "job/out.zip#nothing", f"file:{tmp_path}/got/")
    assert code != 0 and "no member nothing" in err, err
