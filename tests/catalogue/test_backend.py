"""The backend contract, run against every backend."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jalien.catalogue.backend import ALL_FIELDS, Exists, FindQuery, NotFound, is_shown
from jalien.catalogue.model import Entry, Replica, StorageElement
from jalien.wire.messages import DirEntry


def f(path: str, size: int = 1, **kw) -> Entry:
    d, _, n = path.rpartition("/")
    return Entry(d + "/", n, "f", size=size, owner="jdoe", gowner="jdoe", **kw)


def d(path: str) -> Entry:
    head, _, n = path.rpartition("/")
    return Entry(head + "/", n, "d", owner="jdoe", gowner="jdoe")


async def collect(aiter):
    out = []
    async for page in aiter:
        out.extend(page)
    return out


async def test_insert_get_list(backend):
    await backend.insert([d("/a"), d("/a/b"), f("/a/x.root", 10), f("/a/b/y.root", 20)])
    got = await backend.get("/a/x.root")
    assert (got.dir, got.name, got.size, got.lfn) == ("/a/", "x.root", 10, "/a/x.root")
    assert (await backend.get("/a/b")).lfn == "/a/b/"
    assert await backend.get("/nope") is None
    names = [e.name for e in await collect(backend.list_dir("/a/"))]
    assert names == ["b", "x.root"]
    assert await backend.has_children("/a/b/")
    assert not await backend.has_children("/a/b/c/")


async def test_a_listing_reads_the_fields_asked_for(backend):
    """The first *fields* fields of each row are read, the others keep their defaults; a
    listing kept whole (sqlite-kept) is kept per number of fields."""
    full = f("/l/x.root", 10, md5="ab" * 16, guid="00000001-1234-11ef-8000-0242ac120002")
    await backend.insert([d("/l"), full])
    whole = tuple(getattr(full, name) for name in DirEntry.__struct_fields__)
    for fields in (2, 7, 9, ALL_FIELDS, 2, ALL_FIELDS):  # twice: the second time kept
        (row,) = await collect(backend.list_dir("/l/", fields=fields))
        values = msgspec.structs.astuple(row)
        assert values[:fields] == whole[:fields]
        assert values[fields:] == msgspec.structs.astuple(DirEntry(""))[fields:]
    for bad in (0, ALL_FIELDS + 1):
        with pytest.raises(ValueError, match="fields"):
            await collect(backend.list_dir("/l/", fields=bad))


async def test_a_packed_listing_is_the_listing_shown_encoded(backend):
    """``list_dir_packed``: the pages of ``list_dir`` with the entries ``is_shown``, encoded as
    the binary channel carries ``list[DirEntry]`` (a page hidden whole is left out); twice,
    as a small directory is kept whole (sqlite-kept)."""
    names = [".hidden", ".more", "a.root", "sub", "z.root"] + [f"f{i:04d}" for i in range(1500)]
    await backend.insert(
        [d("/p"), d("/p/sub"), d("/small"), f("/small/.x"), f("/small/y")]
        + [f(f"/p/{n}", i) for i, n in enumerate(names) if n != "sub"]
    )
    decode = msgspec.msgpack.Decoder(list[DirEntry]).decode
    for where in ("/p/", "/small/", "/p/", "/small/"):
        for fields in (2, 7):
            for hide_dot, skip_type in ((False, ""), (True, ""), (True, "d"), (False, "d")):
                expected = [
                    [e for e in page if is_shown(e.name, e.type, hide_dot, skip_type)]
                    async for page in backend.list_dir(where, page=1000, fields=fields)
                ]
                packed = backend.list_dir_packed(where, 1000, fields, hide_dot, skip_type)
                pages = [(decode(p.rows), p.count) async for p in packed]
                assert pages == [(rows, len(rows)) for rows in expected if rows]
    only_hidden = backend.list_dir_packed("/small/", hide_dot=True, skip_type="f")
    assert [p async for p in only_hidden] == []


async def test_insert_is_all_or_nothing(backend):
    await backend.insert([f("/z1")])
    with pytest.raises(Exists):
        await backend.insert([f("/z2"), f("/z1")])
    assert await backend.get("/z2") is None


async def test_paging(backend):
    await backend.insert([d("/big")] + [f(f"/big/f{i:05d}") for i in range(2500)])
    pages = [len(p) async for p in backend.list_dir("/big/", page=1000)]
    assert pages == [512, 1000, 988]  # a short first page (FIRST_PAGE), then full ones
    pages = [len(p) async for p in backend.list_dir("/big/")]
    assert pages == [512, 1024, 964]  # each page twice the one before, up to PAGE
    names = [e.name for e in await collect(backend.list_dir("/big/", page=700))]
    assert names == [f"f{i:05d}" for i in range(2500)]


async def test_find(backend):
    await backend.insert(
        [d("/r"), d("/r/s"), f("/r/a.root"), f("/r/s/b.root", 5), f("/r/s/c.txt"), f("/rx.root")]
    )
    q = FindQuery(base="/r/", name_glob="*.root")
    assert [e.path for e in await collect(backend.find(q))] == ["/r/a.root", "/r/s/b.root"]
    assert [e.path for e in await collect(backend.find(FindQuery(base="/r/", limit=2)))] == [
        "/r/a.root",
        "/r/s/b.root",
    ]
    dirs = FindQuery(base="/r/", types=frozenset("d"))
    assert [e.path for e in await collect(backend.find(dirs))] == ["/r/s"]
    rx = FindQuery(base="/r/", lfn_regex=r"s/.*\.txt$")
    assert [e.path for e in await collect(backend.find(rx))] == ["/r/s/c.txt"]
    like = FindQuery(base="/r/", lfn_like="/r/%S/%", types=frozenset("fd"))
    assert [e.path for e in await collect(backend.find(like))] == []  # case-sensitive
    like = FindQuery(base="/r/", lfn_like="/r/%s/%.root%")
    assert [e.path for e in await collect(backend.find(like))] == ["/r/s/b.root"]
    paged = [len(p) async for p in backend.find(FindQuery(base="/r/", limit=3), page=2)]
    assert sum(paged) == 3
    # one filter for both backends (catalogue.find_sql): the same answers to the same query
    none = FindQuery(base="/r/", types=frozenset())
    assert [e.path for e in await collect(backend.find(none))] == []
    sized = FindQuery(base="/r/", name_glob="[ab].root", min_size=5)
    assert [e.path for e in await collect(backend.find(sized))] == ["/r/s/b.root"]


async def test_du_delete_tree_move(backend):
    await backend.insert([d("/m"), d("/m/n"), f("/m/n/a", 3), f("/m/b", 4), f("/mm", 100)])
    usage = await backend.du("/m/")
    assert (usage.files, usage.directories, usage.size) == (2, 1, 7)
    await backend.move("/m", "/q")
    assert await backend.get("/m/n/a") is None
    assert (await backend.get("/q/n/a")).size == 3
    with pytest.raises(NotFound):
        await backend.move("/m", "/w")
    with pytest.raises(Exists):
        await backend.move("/q", "/mm")
    assert await backend.delete_tree("/q/") == 4
    assert await backend.get("/mm") is not None


async def test_update_and_guid(backend):
    await backend.insert([f("/g1", guid="0e8a-1"), f("/g2", guid="0e8a-1")])
    await backend.update("/g1", {"perm": "700", "owner": "alice"})
    g1 = await backend.get("/g1")
    assert (g1.perm, g1.owner) == ("700", "alice")
    with pytest.raises(NotFound):
        await backend.update("/none", {"perm": "700"})
    assert sorted(e.path for e in await backend.by_guid("0e8a-1")) == ["/g1", "/g2"]


async def test_replicas_and_ses(backend):
    await backend.add_replicas(
        [
            Replica(guid="g", se="ALICE::CERN::EOS", pfn="root://x//1"),
            Replica(guid="g", se="ALICE::FZK::SE", pfn="root://y//1"),
        ]
    )
    assert [r.se for r in await backend.replicas("g")] == ["ALICE::CERN::EOS", "ALICE::FZK::SE"]
    assert await backend.delete_replicas("g", "ALICE::FZK::SE") == 1
    await backend.put_se(StorageElement(name="ALICE::CERN::EOS", url="root://x//", qos=["disk"]))
    assert [s.qos for s in await backend.list_ses()] == [["disk"]]


async def test_concurrent_writers(backend):
    await backend.insert([d("/c")])
    await asyncio.gather(*(backend.insert([f(f"/c/{i}")]) for i in range(200)))
    assert len(await collect(backend.list_dir("/c/"))) == 200


async def test_replicas_on_an_se_in_pages(backend):
    """Every replica on one SE, page by page, the other SEs' left out (the dark-data dumps
    and decommissioning walk an SE this way)."""
    import uuid

    guids = [str(uuid.uuid1()) for _ in range(23)]
    await backend.add_replicas(
        [
            Replica(guid=g, se="ALICE::A::SE", pfn=f"root://a//{i:03d}/{g}")
            for i, g in enumerate(guids)
        ]
        + [Replica(guid=g, se="ALICE::A::SE", pfn=f"root://a//copy/{g}") for g in guids[:2]]
        + [Replica(guid=g, se="ALICE::B::SE", pfn=f"root://b//{g}") for g in guids]
    )
    pages = [p async for p in backend.replicas_on("ALICE::A::SE", page=5)]
    assert all(len(p) <= 5 for p in pages)
    got = sorted((r.guid, r.pfn) for p in pages for r in p)
    want = sorted(
        [(g, f"root://a//{i:03d}/{g}") for i, g in enumerate(guids)]
        + [(g, f"root://a//copy/{g}") for g in guids[:2]]
    )
    assert got == want and {r.se for p in pages for r in p} == {"ALICE::A::SE"}
    assert [p async for p in backend.replicas_on("ALICE::NONE::SE")] == []
