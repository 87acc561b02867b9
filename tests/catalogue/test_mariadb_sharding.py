"""The sharded MariaDB catalogue: where rows land (each server queried directly), GUID
tables rotating by time, find/du merged across shards, moves across shards and servers,
and two-phase commit recovery. Two real servers (tests/catalogue/mariadb_servers.py)."""

from __future__ import annotations

import pytest

from jalien.catalogue.backend import Exists, FindQuery
from jalien.catalogue.model import Entry, Replica, now_ms
from jalien.catalogue.sharding import guid_time_ms, uuid1_at
from tests.catalogue.test_backend import collect, d, f

DAY = 86_400_000


@pytest.fixture
async def sharded(mariadb_dsns):
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    config = MariaDBConfig(
        hosts=mariadb_dsns,
        prefixes={"/alice/data/": 1, "/alice/data/2024/": 0, "/alice/sim/": 1},
    )
    be = MariaDBBackend(config)
    await be.start()
    yield be
    await be.close()


@pytest.fixture
def servers(mariadb_servers):
    """Direct connections to the two servers' catalogue databases."""
    conns = [
        mariadb_servers.system.connect(mariadb_servers.database),
        mariadb_servers.second.connect(mariadb_servers.database),
    ]
    yield conns
    for conn in conns:
        conn.close()


def rows(conn, sql: str, *args) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, args)
    return [tuple(v.decode() if isinstance(v, bytes) else v for v in row) for row in cur]


def names(conn, table: str) -> list[str]:
    return sorted(d + n for d, n in rows(conn, f"SELECT dir, name FROM {table}"))


async def test_index_and_rows_land_on_their_servers(sharded, servers):
    s1, s2 = servers
    index = rows(s1, "SELECT lfn, hostIndex, tableName FROM INDEXTABLE ORDER BY lfn")
    h1, h2 = sharded.host_index(0), sharded.host_index(1)
    assert [(p, h) for p, h, _ in index] == [
        ("/", h1),
        ("/alice/data/", h2),
        ("/alice/data/2024/", h1),
        ("/alice/sim/", h2),
    ]
    tables = {p: f"L{t}L" for p, _, t in index}
    await sharded.insert(
        [d("/alice"), d("/alice/data"), d("/alice/data/2023"), d("/alice/data/2024"),
         f("/alice/data/2023/a.root"), f("/alice/data/2024/b.root"), d("/alice/sim"),
         f("/alice/sim/c.root"), f("/alice/x")]
    )  # fmt: skip
    # the entry of a prefix directory stays in its parent's table; its children move on
    assert names(s1, tables["/"]) == ["/alice", "/alice/data", "/alice/sim", "/alice/x"]
    assert names(s2, tables["/alice/data/"]) == [
        "/alice/data/2023",
        "/alice/data/2023/a.root",
        "/alice/data/2024",
    ]
    assert names(s1, tables["/alice/data/2024/"]) == ["/alice/data/2024/b.root"]
    assert names(s2, tables["/alice/sim/"]) == ["/alice/sim/c.root"]
    assert sharded.route("/alice/data/2024").prefix == "/alice/data/"
    assert sharded.route("/alice/data/2024/b.root").prefix == "/alice/data/2024/"
    # each directory's listing comes from the one shard holding its children
    listing = [e.name for e in await collect(sharded.list_dir("/alice/data/"))]
    assert listing == ["2023", "2024"]
    assert [e.name for e in await collect(sharded.list_dir("/alice/"))] == ["data", "sim", "x"]
    assert await sharded.has_children("/alice/data/2024/")
    got = await sharded.get_many(["/alice/x", "/alice/data/2024", "/alice/data/2024/b.root"])
    assert sorted(got) == ["/alice/data/2024", "/alice/data/2024/b.root", "/alice/x"]


async def test_insert_across_servers_is_all_or_nothing(sharded, servers):
    s1, _ = servers
    await sharded.insert([d("/alice"), d("/alice/sim"), f("/alice/sim/taken")])
    with pytest.raises(Exists):  # one row per server: the first must not stay
        await sharded.insert([f("/alice/new"), f("/alice/sim/taken")])
    assert await sharded.get("/alice/new") is None
    assert "/alice/new" not in names(s1, "L0L")


async def test_guid_tables_rotate_by_time(sharded, servers):
    s1, s2 = servers
    now = now_ms()
    old_guid, new_guid = uuid1_at(now - DAY), uuid1_at(now + 2 * DAY)
    assert abs(guid_time_ms(new_guid) - (now + 2 * DAY)) < 1
    with pytest.raises(ValueError):  # a rotation never takes over times handed out
        await sharded.add_guid_table(1, since=now - 1000)
    rotated = await sharded.add_guid_table(1, since=now + DAY)
    assert rotated.host == sharded.host_index(1)
    assert rows(s1, "SELECT guidTime, hostIndex FROM GUIDINDEX ORDER BY guidTime") == [
        (0, sharded.host_index(0)),
        (now + DAY, sharded.host_index(1)),
    ]
    assert sharded.guid_shard(old_guid).since == 0
    assert sharded.guid_shard(new_guid) == rotated
    assert sharded.guid_shard("not-a-uuid").since == 0
    await sharded.insert(
        [d("/alice"), d("/alice/sim"), f("/alice/old", guid=old_guid),
         f("/alice/sim/new", guid=new_guid), f("/alice/new2", guid=new_guid)]
    )  # fmt: skip
    await sharded.add_replicas(
        [Replica(guid=old_guid, se="ALICE::CERN::EOS", pfn="root://a//1"),
         Replica(guid=new_guid, se="ALICE::FZK::SE", pfn="root://b//2")]
    )  # fmt: skip
    # references and replicas sit in the table of the GUID's time, on its server
    assert [g for g, _ in rows(s1, "SELECT guid, lfnTable FROM G0L")] == [old_guid]
    new_refs = rows(s2, f"SELECT guid, lfnTable FROM {rotated.refs_table}")
    assert sorted(t for _, t in new_refs) == sorted(
        [sharded.route("/alice/sim/new").table, sharded.route("/alice/new2").table]
    )
    assert rows(s1, "SELECT guid, pfn FROM G0L_PFN") == [(old_guid, "root://a//1")]
    assert rows(s2, f"SELECT guid, pfn FROM {rotated.pfn_table}") == [(new_guid, "root://b//2")]
    assert [e.path for e in await sharded.by_guid(new_guid)] == ["/alice/new2", "/alice/sim/new"]
    assert [e.path for e in await sharded.by_guid(old_guid)] == ["/alice/old"]
    assert [r.pfn for r in await sharded.replicas(new_guid)] == ["root://b//2"]
    assert await sharded.delete_replicas(new_guid) == 1
    # a reference that outlives its entry is harmless
    await sharded.delete(["/alice/new2"])
    assert [e.path for e in await sharded.by_guid(new_guid)] == ["/alice/sim/new"]


async def test_find_and_du_merge_shards_in_order(sharded):
    # in (dir, name) order /alice/data/2023/ and /alice/data/2025/ (server 2) enclose
    # /alice/data/2024/ (server 1), and /alice/sim/ (server 2) follows /alice/ (server 1)
    entries = [d("/alice"), d("/alice/data"), d("/alice/sim")]
    entries += [d(f"/alice/data/{y}") for y in (2023, 2024, 2025)]
    for i in range(20):
        entries += [f(f"/alice/data/{y}/r{i:02d}.root", y - 2020) for y in (2023, 2024, 2025)]
        entries += [f(f"/alice/data/2024/t{i:02d}.txt", 1), f(f"/alice/sim/s{i:02d}.root", 2)]
    entries += [f(f"/alice/b{i:02d}.root", 10) for i in range(10)]
    entries += [f(f"/alice/data/d{i:02d}.root", 20) for i in range(10)]
    await sharded.insert(entries)
    files = sorted((e.dir, e.name) for e in entries if e.type == "f")
    everything = [(e.dir, e.name) for e in await collect(sharded.find(FindQuery(base="/")))]
    assert everything == files
    for page in (1, 7, 50):
        found = await collect(sharded.find(FindQuery(base="/alice/"), page=page))
        assert [(e.dir, e.name) for e in found] == files
    roots = [k for k in files if k[0].startswith("/alice/data/") and k[1].endswith(".root")]
    q = FindQuery(base="/alice/data/", name_glob="*.root", limit=55)
    got = [(e.dir, e.name) for e in await collect(sharded.find(q, page=10))]
    assert got == roots[:55]
    assert got[30] == ("/alice/data/2024/", "r00.root")  # from server 1
    assert got[50] == ("/alice/data/2025/", "r00.root")  # back on server 2
    usage = await sharded.du("/alice/")
    assert (usage.files, usage.directories) == (120, 5)
    assert usage.size == 20 * (3 + 4 + 5 + 1 + 2) + 10 * 10 + 10 * 20
    usage = await sharded.du("/alice/data/")
    assert (usage.files, usage.directories, usage.size) == (90, 3, 20 * (3 + 4 + 5 + 1) + 200)


async def test_move_across_servers(sharded, servers):
    s1, s2 = servers
    guid = uuid1_at(now_ms())
    await sharded.insert(
        [d("/alice"), d("/alice/data"), d("/alice/tmp"), d("/alice/tmp/run"),
         f("/alice/tmp/run/a.root", 7, guid=guid), f("/alice/tmp/b.root", 8)]
    )  # fmt: skip
    data = sharded.route("/alice/data/x")
    assert data.host == sharded.host_index(1)
    await sharded.move("/alice/tmp", "/alice/data/tmp")  # root table (1) -> /alice/data/ (2)
    assert names(s2, data.sql_table) == [
        "/alice/data/tmp",
        "/alice/data/tmp/b.root",
        "/alice/data/tmp/run",
        "/alice/data/tmp/run/a.root",
    ]
    assert "/alice/tmp/run" not in names(s1, "L0L")
    assert [e.path for e in await sharded.by_guid(guid)] == ["/alice/data/tmp/run/a.root"]
    assert (await sharded.du("/alice/data/tmp/")).size == 15
    # a file, one server to the other
    await sharded.move("/alice/data/tmp/b.root", "/alice/b.root")
    assert "/alice/b.root" in names(s1, "L0L")
    with pytest.raises(Exists):  # nothing moves when the target exists
        await sharded.move("/alice/data/tmp", "/alice/data")
    assert (await sharded.get("/alice/data/tmp/run/a.root")).guid == guid
    assert len(names(s2, data.sql_table)) == 3


async def test_move_splits_a_subtree_over_shards(sharded, servers):
    """Moving onto a path with shards below it: each row goes to the table of its new dir;
    and back: rows from several tables on two servers merge into one."""
    s1, s2 = servers
    guid = uuid1_at(now_ms())
    await sharded.insert(
        [d("/alice"), d("/alice/stage"), d("/alice/stage/2023"), d("/alice/stage/2024"),
         f("/alice/stage/top.root", guid=guid), f("/alice/stage/2023/a.root"),
         f("/alice/stage/2024/b.root", guid=guid)]
    )  # fmt: skip
    data, y2024 = sharded.route("/alice/data/x"), sharded.route("/alice/data/2024/x")
    await sharded.move("/alice/stage", "/alice/data")  # /alice/data has no entry, only shards
    assert names(s1, "L0L") == ["/alice", "/alice/data"]
    assert names(s2, data.sql_table) == [
        "/alice/data/2023",
        "/alice/data/2023/a.root",
        "/alice/data/2024",
        "/alice/data/top.root",
    ]
    assert names(s1, y2024.sql_table) == ["/alice/data/2024/b.root"]
    assert [e.path for e in await sharded.by_guid(guid)] == [  # in (dir, name) order
        "/alice/data/top.root",
        "/alice/data/2024/b.root",
    ]
    await sharded.move("/alice/data", "/alice/stage")
    assert names(s2, data.sql_table) == [] and names(s1, y2024.sql_table) == []
    assert len(names(s1, "L0L")) == 7
    found = await collect(sharded.find(FindQuery(base="/alice/", types=frozenset("fd"))))
    assert [e.path for e in found] == [
        "/alice/stage",
        "/alice/stage/2023",
        "/alice/stage/2024",
        "/alice/stage/top.root",
        "/alice/stage/2023/a.root",
        "/alice/stage/2024/b.root",
    ]
    assert [e.path for e in await sharded.by_guid(guid)] == [
        "/alice/stage/top.root",
        "/alice/stage/2024/b.root",
    ]


async def test_two_phase_recovery(sharded, servers, mariadb_servers):
    """A crash after the decision commits every branch; before it, rolls them back."""
    s1, _ = servers
    t0 = sharded.route("/x").sql_table
    t1 = sharded.route("/alice/sim/x").sql_table
    old = now_ms() - 40_000
    for gtrid, decided in ((f"jalien-{old}-decided", True), (f"jalien-{old}-undecided", False)):
        for server, table, host in (
            (mariadb_servers.system, t0, sharded.host_index(0)),
            (mariadb_servers.second, t1, sharded.host_index(1)),
        ):
            conn = server.connect(mariadb_servers.database)  # a process that then dies
            cur = conn.cursor()
            cur.execute(f"XA START '{gtrid}','{host}'")
            cur.execute(
                f"INSERT INTO {table} VALUES (%s, %s, 'f', '755', 'a', 'a', 1, 1, '', '', 0)",
                ("/" if table == t0 else "/alice/sim/", gtrid),
            )
            cur.execute(f"XA END '{gtrid}','{host}'")
            cur.execute(f"XA PREPARE '{gtrid}','{host}'")
            conn.close()
        if decided:
            s1.cursor().execute("INSERT INTO XALOG VALUES (%s, %s)", (gtrid, old))
    assert await sharded.recover(min_age=60) == (0, 0)  # too young: maybe still running
    assert await sharded.recover(min_age=30) == (2, 2)
    assert await sharded.get(f"/jalien-{old}-decided") is not None
    assert await sharded.get(f"/alice/sim/jalien-{old}-decided") is not None
    assert await sharded.get(f"/jalien-{old}-undecided") is None
    assert rows(s1, "SELECT gtrid FROM XALOG") == []


async def test_add_shard_rules_and_reload(sharded, mariadb_dsns):
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    await sharded.insert([d("/full"), f("/full/x")])
    with pytest.raises(ValueError, match="already has entries"):
        await sharded.add_shard("/full/", 1)
    with pytest.raises(ValueError, match="already a shard"):
        await sharded.add_shard("/alice/sim", 0)
    other = MariaDBBackend(MariaDBConfig(hosts=mariadb_dsns))  # a second process
    await other.start()
    try:
        shard = await sharded.add_shard("/empty", 1)
        assert shard.prefix == "/empty/" and sharded.route("/empty/x") == shard
        assert other.route("/empty/x").prefix == "/"  # until it re-reads the index
        await other.reload()
        await other.insert([d("/empty"), f("/empty/x")])
        assert (await sharded.get("/empty/x")) is not None
        assert other.route("/empty/x") == shard
    finally:
        await other.close()


async def test_globs(backend):
    """Find's GLOB semantics (classes, LIKE's own wildcards as plain characters), the same
    on every backend."""
    await backend.insert(
        [d("/g"), f("/g/a1.root"), f("/g/b2.root"), f("/g/c_3.root"), f("/g/d%4.root"),
         f("/g/É5.root"), f("/g/A6.root")]
    )  # fmt: skip

    async def find(glob: str) -> list[str]:
        return [e.name for e in await collect(backend.find(FindQuery(base="/g/", name_glob=glob)))]

    assert await find("[ab]?.root") == ["a1.root", "b2.root"]
    assert await find("[^ab]?.root") == ["A6.root", "É5.root"]
    assert await find("?_*") == ["c_3.root"]
    assert await find("?%*") == ["d%4.root"]
    assert await find("a*") == ["a1.root"]  # case-sensitive
    assert await find("?5.root") == ["É5.root"]  # one character, not one byte


async def test_paths_too_long_for_the_key(sharded):
    """dir and name are the key, which InnoDB caps (2048 + 1024 bytes): longer is refused
    as a bad path, also when a move would make it so, and nothing changes."""
    from jalien.catalogue.paths import BadPath

    with pytest.raises(BadPath):
        await sharded.insert([Entry("/", "€" * 512)])  # 512 characters, 1536 bytes
    with pytest.raises(BadPath):
        await sharded.insert([Entry("/" + "d" * 2047 + "/", "x")])
    await sharded.insert([d("/s"), d("/s/sub"), f("/s/sub/x")])
    with pytest.raises(BadPath):
        await sharded.move("/s", "/" + "y" * 2040)
    assert (await sharded.get("/s/sub/x")) is not None


async def test_a_batch_with_failures_keeps_the_others(backend):
    """Group commit: operations batched together fail or land each on its own."""
    import asyncio

    await backend.insert([d("/c"), f("/c/taken")])
    results = await asyncio.gather(
        *(
            backend.insert([f(f"/c/{i}"), *([f("/c/taken")] if i % 3 == 0 else [])])
            for i in range(60)
        ),
        backend.move("/c/none", "/c/other"),
        backend.update("/c/taken", {"size": 5}),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results[:6]] == ["Exists", "NoneType", "NoneType"] * 2
    assert type(results[60]).__name__ == "NotFound" and results[61] is None
    listed = {e.name for e in await collect(backend.list_dir("/c/"))}
    assert listed == {"taken"} | {str(i) for i in range(60) if i % 3}
    assert (await backend.get("/c/taken")).size == 5


async def test_connections_killed_by_the_server_come_back(
    sharded, servers, mariadb_servers, caplog
):
    """A server that drops every connection (restart, wait_timeout) costs no request: reads
    and writes reconnect, a lost transaction is run again."""
    await sharded.insert([d("/alice"), d("/alice/sim"), f("/alice/sim/a")])
    await sharded.move("/alice/sim/a", "/alice/b")  # cross-server: XA connections exist

    def kill_all(conn):
        cur = conn.cursor()
        cur.execute(
            "SELECT id FROM information_schema.PROCESSLIST WHERE db=%s AND id <> CONNECTION_ID()",
            (mariadb_servers.database,),
        )
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {pid}")

    for round_ in range(2):
        for conn in servers:
            kill_all(conn)
        assert (await sharded.get("/alice/b")) is not None
        await sharded.insert([f(f"/alice/sim/n{round_}")])  # server 2's writer
        await sharded.move(f"/alice/sim/n{round_}", f"/alice/n{round_}")  # both servers, XA
        assert [e.name for e in await collect(sharded.list_dir("/alice/sim/"))] == []
    assert {e.name for e in await collect(sharded.list_dir("/alice/"))} == {"b", "n0", "n1", "sim"}
    assert "writer connection lost" in caplog.text


async def test_move_between_tables_of_one_server(sharded, servers):
    """Root table -> /alice/data/2024/'s table, both on server 1: the server copies."""
    s1, _ = servers
    guid = uuid1_at(now_ms())
    await sharded.insert(
        [d("/alice"), d("/alice/run"), d("/alice/run/sub"), f("/alice/run/sub/a", 3, guid=guid),
         f("/alice/run/b", 4)]
    )  # fmt: skip
    y2024 = sharded.route("/alice/data/2024/x")
    assert y2024.host == sharded.route("/alice/x").host
    await sharded.move("/alice/run", "/alice/data/2024/run")
    assert names(s1, y2024.sql_table) == [
        "/alice/data/2024/run",
        "/alice/data/2024/run/b",
        "/alice/data/2024/run/sub",
        "/alice/data/2024/run/sub/a",
    ]
    assert names(s1, "L0L") == ["/alice"]
    assert (await sharded.get("/alice/data/2024/run")).type == "d"
    assert [e.path for e in await sharded.by_guid(guid)] == ["/alice/data/2024/run/sub/a"]
    assert (await sharded.du("/alice/data/2024/run/")).size == 7
