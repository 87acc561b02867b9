"""Sharded MariaDB catalogue benchmarks, one run, each beside the raw SQL query as its limit.

    python bench/bench_catalogue_mariadb.py [--scale 1.0] [--server mysql://root:@127.0.0.1:3306]

Two catalogue hosts (two databases on the server, so that cross-host paths run: the
index and the root table on host 1, /alice/data/ and /alice/sim/ on host 2, and one
/alice/sim/ directory in 50 sharded back onto host 1 so that find merges two servers).
Targets (issue 4, "the same on MariaDB"): ls -l of a 100k-entry directory <= 100 ms server
time and its first page <= 50 ms; bulk stat of 1,000 LFNs <= 20 ms; batched inserts; find
over 1M entries with a limit. Skips with one line when no MariaDB answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from catalogue_benchlib import Caller, line, raw_time, row, timed  # bench/
from msgspec.structs import astuple

from jalien.catalogue.backend import FindQuery
from jalien.catalogue.service import Catalogue
from jalien.wire import codec
from jalien.wire.messages import Reply

try:
    import MySQLdb

    from jalien.catalogue.mariadb_backend import (
        DIRENTRY_COLUMNS,
        ENTRY_COLUMNS,
        INSERT_COLUMNS,
        MariaDBBackend,
        MariaDBConfig,
        connect,
        lfn_table_ddl,
        parse_dsn,
    )
except ImportError as exc:  # the [mariadb] extra is not installed
    MySQLdb = None
    IMPORT_ERROR = str(exc)


def server_problem(server: str) -> str:
    if MySQLdb is None:
        return f"the mysqlclient driver is missing ({IMPORT_ERROR}); pip install '.[mariadb]'"
    try:
        connect(parse_dsn(server.rstrip("/") + "/mysql")).close()
    except Exception as exc:
        return f"no MariaDB at {server} ({exc})"
    return ""


async def main(scale: float, server: str) -> None:
    problem = server_problem(server)
    if problem:
        print(f"bench_catalogue_mariadb: skipped: {problem}")
        return
    n_dir = max(1000, int(100_000 * scale))
    n_tree = max(2000, int(1_000_000 * scale))
    per_dir = 1000
    databases = [f"jalien_bench_{os.getpid()}_{i}" for i in (1, 2)]
    admin = connect(parse_dsn(server.rstrip("/") + "/mysql"))
    for db in databases:
        admin.cursor().execute(f"CREATE DATABASE {db}")
    dsns = [f"{server.rstrip('/')}/{db}" for db in databases]
    prefixes = {"/alice/data/": 1, "/alice/sim/": 1}
    prefixes.update({f"/alice/sim/{d:05d}/": 0 for d in range(0, n_tree // per_dir, 50)})
    backend = MariaDBBackend(MariaDBConfig(hosts=dsns, prefixes=prefixes))
    await backend.start()
    raw = connect(parse_dsn(dsns[1]))  # autocommit: every raw read sees the latest rows
    cur = raw.cursor()
    try:
        cat = Catalogue(backend)
        print(
            f"== MariaDB catalogue, 2 hosts ({n_dir:,}-entry directory, {n_tree:,}-entry "
            f"tree over {len(prefixes) + 1} tables), mysqlclient {MySQLdb.version_info[:3]}"
        )
        big = "/alice/data/big/"
        await cat.mkdir(Caller(), big.rstrip("/"), parents=True)
        await cat.mkdir(Caller(), "/alice/sim", parents=True)
        big_table = backend.route(big + "x").sql_table

        # batched inserts, 5,000 LFNs a call, beside executemany on one connection
        rows = [row(big, i) for i in range(n_dir)]
        t0 = time.perf_counter()
        for i in range(0, n_dir, 5000):
            await backend.insert(rows[i : i + 5000])
        t_ins = time.perf_counter() - t0
        cur.execute(lfn_table_ddl("rawbench"))  # the same rows into a table of its own
        raw_rows = [astuple(e) for e in rows]
        t0 = time.perf_counter()
        for i in range(0, n_dir, 5000):
            cur.execute("BEGIN")
            cur.executemany(
                f"INSERT INTO rawbench ({INSERT_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})",
                raw_rows[i : i + 5000],
            )
            raw.commit()
        t_raw_ins = time.perf_counter() - t0
        print(
            f"  batched inserts                    {n_dir / t_ins:9,.0f} LFN/s  raw SQL "
            f"{n_dir / t_raw_ins:9,.0f} LFN/s"
        )

        # ls -l of the big directory: pages of typed rows, encoded for the binary channel
        async def full_listing():
            async for page in cat.listing(Caller(), big.rstrip("/")):
                codec.encode_msgpack(Reply(entries=page, view="ls:l"))

        async def first_page():
            async for page in cat.listing(Caller(), big.rstrip("/")):
                codec.encode_msgpack(Reply(entries=page, view="ls:l"))
                break

        def raw_list(limit: str = ""):
            cur.execute(
                f"SELECT {DIRENTRY_COLUMNS} FROM {big_table} WHERE dir=%s ORDER BY name{limit}",
                (big,),
            )
            cur.fetchall()

        line(
            "ls -l, binary channel (all pages)",
            await timed(full_listing),
            raw_time(raw_list),
            "(target <= 100 ms at 100k)",
        )
        line(
            "ls -l, first page",
            await timed(first_page),
            raw_time(lambda: raw_list(" LIMIT 5000")),
            "(target <= 50 ms)",
        )

        # bulk stat of 1,000 LFNs
        names = [big + f"AO2D_{i:07d}.root" for i in range(0, n_dir, max(1, n_dir // 1000))]
        names = names[:1000]
        stat_sql = (
            f"SELECT {ENTRY_COLUMNS} FROM {big_table} WHERE dir=%s AND name IN "
            f"({','.join(['%s'] * len(names))})"
        )
        stat_args = [big, *(n.rsplit("/", 1)[1] for n in names)]
        line(
            f"bulk stat of {len(names)} LFNs",
            await timed(lambda: cat.stat_many(Caller(), names)),
            raw_time(lambda: (cur.execute(stat_sql, stat_args), cur.fetchall())),
            "(target <= 20 ms)",
        )

        # find over a large tree spread over two hosts
        tree = "/alice/sim/"
        for d in range(n_tree // per_dir):
            await backend.insert([row(f"{tree}{d:05d}/", i) for i in range(per_dir)])
        limited = FindQuery(base=tree, lfn_like=tree + "%.root%", limit=1000)
        scan = FindQuery(base=tree, lfn_like=tree + "%_0000999.root%")

        async def run_find(q):
            async for _ in cat.find(Caller(), q):
                pass

        cat.cache = type(cat.cache)()  # no cache: measure the search
        sim_table = backend.route(tree + "x").sql_table
        like_sql = (
            f"SELECT {ENTRY_COLUMNS} FROM {sim_table} WHERE dir >= %s AND dir < %s AND "
            "CONVERT(CONCAT(dir, name) USING utf8mb4) COLLATE utf8mb4_bin LIKE %s "
            "ORDER BY dir, name"
        )
        line(
            f"find, limit 1000 of {n_tree:,}",
            await timed(lambda: run_find(limited)),
            raw_time(
                lambda: (
                    cur.execute(like_sql + " LIMIT 1000", (tree, "/alice/sim0", limited.lfn_like)),
                    cur.fetchall(),
                )
            ),
            "(raw: one table)",
        )
        line(
            f"find, full scan of {n_tree:,}",
            await timed(lambda: run_find(scan), 1),
            raw_time(
                lambda: (
                    cur.execute(like_sql, (tree, "/alice/sim0", scan.lfn_like)),
                    cur.fetchall(),
                ),
                1,
            ),
            "(raw: the biggest table)",
        )
    finally:
        raw.close()
        await backend.close()
        for db in databases:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    parser.add_argument(
        "--server",
        default=os.environ.get("JALIEN_BENCH_MARIADB", "mysql://root:@127.0.0.1:3306"),
        help="MariaDB server URL without a database ($JALIEN_BENCH_MARIADB)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.server))
