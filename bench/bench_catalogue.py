"""Catalogue benchmarks, one run, each beside the raw SQL query as its limit.

    python bench/bench_catalogue.py [--scale 1.0]

Targets (issue 4): ls -l of a 100k-entry directory <= 100 ms server time and its first
page <= 50 ms; bulk stat of 1,000 LFNs <= 20 ms; batched inserts >= 50k LFNs/s on SQLite;
find over 1M entries (with a limit, and a full scan).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from catalogue_benchlib import Caller, line, raw_time, row, timed  # bench/

from jalien.catalogue.backend import FindQuery
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import COLUMNS, SQLiteBackend
from jalien.wire import codec
from jalien.wire.jalien_json import OutputMode, render_reply
from jalien.wire.messages import Reply


async def main(scale: float) -> None:
    n_dir = max(1000, int(100_000 * scale))
    n_tree = max(2000, int(1_000_000 * scale))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        backend = SQLiteBackend(path)
        await backend.start()
        cat = Catalogue(backend)
        raw = sqlite3.connect(path)
        try:
            print(f"== SQLite catalogue ({n_dir:,}-entry directory, {n_tree:,}-entry tree)")
            # batched inserts
            big = "/alice/data/big/"
            await cat.mkdir(Caller(), big.rstrip("/"), parents=True)
            await cat.mkdir(Caller(), "/alice/sim", parents=True)
            rows = [row(big, i) for i in range(n_dir)]
            t0 = time.perf_counter()
            for i in range(0, n_dir, 5000):
                await backend.insert(rows[i : i + 5000])
            t_ins = time.perf_counter() - t0
            raw_rows = [
                (f"/raw/{i % 100}/", f"x{i:07d}", "f", "755", "b", "b", 0, 0, "", "", 0)
                for i in range(n_dir)
            ]
            t0 = time.perf_counter()
            with raw:
                raw.executemany(
                    f"INSERT INTO entries (dir, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", raw_rows
                )
            t_raw_ins = time.perf_counter() - t0
            print(
                f"  batched inserts                    {n_dir / t_ins:9,.0f} LFN/s  raw SQL "
                f"{n_dir / t_raw_ins:9,.0f} LFN/s   (target >= 50,000/s)"
            )

            # ls -l of the big directory: pages of typed rows + JSON rendering
            async def full_listing():
                async for page in cat.listing(Caller(), big.rstrip("/")):
                    codec.encode_msgpack(Reply(entries=page, view="ls:l"))

            async def first_page():
                async for page in cat.listing(Caller(), big.rstrip("/")):
                    codec.encode_msgpack(Reply(entries=page, view="ls:l"))
                    break

            async def json_listing():
                async for page in cat.listing(Caller(), big.rstrip("/")):
                    render_reply(Reply(entries=page, view="ls:l"), OutputMode.ALL)

            sql = f"SELECT {COLUMNS} FROM entries WHERE dir=? ORDER BY name"
            t_raw = raw_time(lambda: raw.execute(sql, (big,)).fetchall())
            t_raw_first = raw_time(lambda: raw.execute(sql + " LIMIT 5000", (big,)).fetchall())
            line(
                "ls -l, binary channel (all pages)",
                await timed(full_listing),
                t_raw,
                "(target <= 100 ms at 100k)",
            )
            line("ls -l, first page", await timed(first_page), t_raw_first, "(target <= 50 ms)")
            line("ls -l, JAliEn JSON (all pages)", await timed(json_listing, 1), t_raw, "")

            # bulk stat of 1000 LFNs
            names = [big + f"AO2D_{i:07d}.root" for i in range(0, n_dir, max(1, n_dir // 1000))]
            names = names[:1000]
            keys = [(big, n.rsplit("/", 1)[1]) for n in names]

            def raw_stat():
                for k in keys:
                    raw.execute(
                        f"SELECT {COLUMNS} FROM entries WHERE dir=? AND name=?", k
                    ).fetchone()

            line(
                f"bulk stat of {len(names)} LFNs",
                await timed(lambda: cat.stat_many(Caller(), names)),
                raw_time(raw_stat),
                "(target <= 20 ms)",
            )

            # find over a large tree
            tree = "/alice/sim/"
            per_dir = 1000
            for d in range(n_tree // per_dir):
                await backend.insert([row(f"{tree}{d:05d}/", i) for i in range(per_dir)])
            limited = FindQuery(base=tree, lfn_like=tree + "%.root%", limit=1000)
            scan = FindQuery(base=tree, lfn_like=tree + "%_0000999.root%")

            async def run_find(q):
                async for _ in cat.find(Caller(), q):
                    pass

            cat.cache = type(cat.cache)()  # no cache: measure the search
            like_sql = (
                f"SELECT dir, {COLUMNS} FROM entries WHERE dir >= ? AND dir < ? AND "
                "dir || name LIKE ?"
            )
            t_lim_raw = raw_time(
                lambda: raw.execute(
                    like_sql + " LIMIT 1000", (tree, "/alice/sim0", limited.lfn_like)
                ).fetchall()
            )
            t_scan_raw = raw_time(
                lambda: raw.execute(like_sql, (tree, "/alice/sim0", scan.lfn_like)).fetchall(), 1
            )
            raw.execute("PRAGMA case_sensitive_like=ON")
            line(
                f"find, limit 1000 of {n_tree:,}",
                await timed(lambda: run_find(limited)),
                t_lim_raw,
                "",
            )
            line(
                f"find, full scan of {n_tree:,}",
                await timed(lambda: run_find(scan), 1),
                t_scan_raw,
                "",
            )
        finally:
            raw.close()
            await backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    asyncio.run(main(parser.parse_args().scale))
