"""A JDL's InputDataCollection feeds the job's inputs and its split (JobService.submit);
it used to be parsed and ignored: the master had no InputData and Split=file was refused."""

from __future__ import annotations

import pytest

from jalien.jobs.broker import Broker
from jalien.jobs.jdl import parse_jdl
from jalien.jobs.service import JobService
from jalien.net.identity import Identity
from jalien.wire.errors import RequestError

CALLER = Identity(dn="/CN=jdoe", login="jdoe", home="/alice/cern.ch/user/j/jdoe/")
FILES = ["/d/run1/a.root", "/d/run1/b.root", "/d/run2/c.root"]


def jdl(split: str, extra: str = "") -> str:
    return (
        'Executable = "/bin/echo";\n'
        'InputDataCollection = {"LF:/alice/cern.ch/user/j/jdoe/coll.xml,nodownload"};\n'
        f'Split = "{split}";\n{extra}'
    )


@pytest.fixture
async def jobs(taskqueue):
    service = JobService(taskqueue, Broker())
    await service.start()
    asked: list[str] = []

    async def read(caller, spec):
        assert caller.login == "jdoe"
        asked.append(spec)
        return list(FILES)

    service.collections = read
    service.asked = asked  # type: ignore[attr-defined]
    return service


async def _inputs(jobs, master: int, count: int) -> list[list[str]]:
    rows = await jobs.store.query(ids=list(range(master + 1, master + 1 + count)), limit=count)
    return sorted(parse_jdl(r.jdl).input_data for r in rows)


async def test_split_file_gives_each_subjob_one_file(jobs):
    (master,) = await jobs.submit(CALLER, jdl("file"), [])
    assert jobs.asked == ["LF:/alice/cern.ch/user/j/jdoe/coll.xml,nodownload"]
    assert await _inputs(jobs, master, 3) == [[f"LF:{f}"] for f in FILES]


async def test_split_se_keeps_a_dataset_together(jobs):
    (master,) = await jobs.submit(CALLER, jdl("se"), [])
    assert await _inputs(jobs, master, 2) == [
        ["LF:/d/run1/a.root", "LF:/d/run1/b.root"],
        ["LF:/d/run2/c.root"],
    ]


async def test_inputdata_and_the_collection_are_joined_once(jobs):
    extra = 'InputData = {"LF:/d/run1/a.root", "LF:/d/other.root"};\n'
    (master,) = await jobs.submit(CALLER, jdl("file", extra), [])
    got = await _inputs(jobs, master, 4)
    assert [x[0] for x in got] == sorted(
        ["LF:/d/run1/a.root", "LF:/d/other.root", "LF:/d/run1/b.root", "LF:/d/run2/c.root"]
    )


async def test_without_split_the_job_gets_every_file(jobs):
    text = jdl("").replace('Split = "";\n', "")
    (job,) = await jobs.submit(CALLER, text, [])
    row = await jobs.store.get(job)
    assert parse_jdl(row.jdl).input_data == [f"LF:{f}" for f in FILES]


async def test_no_reader_is_a_clear_error(taskqueue):
    service = JobService(taskqueue, Broker())
    await service.start()
    with pytest.raises(RequestError, match="InputDataCollection") as info:
        await service.submit(CALLER, jdl("file"), [])
    assert info.value.exitcode == 22


async def test_split_se_groups_by_the_ses_holding_the_files(jobs):
    async def locate(caller, lfns):
        assert lfns == FILES
        return {"/d/run1/a.root": ("A::B::C",), "/d/run2/c.root": ("A::B::C",)}

    jobs.locations = locate
    (master,) = await jobs.submit(CALLER, jdl("se"), [])
    assert await _inputs(jobs, master, 2) == [
        ["LF:/d/run1/a.root", "LF:/d/run2/c.root"],  # both on A::B::C
        ["LF:/d/run1/b.root"],  # no replica known: by its directory
    ]
