"""The durable state of placement rules, decommissions and the dark-data crawl: one SQLite
file (``<home>/lifecycle.db``) through jalien.sqlstore (reads on its pool, writes in its
group-commit writer thread, never on the event loop)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from jalien.sqlstore.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS dark_files (
    se TEXT NOT NULL, path TEXT NOT NULL, found REAL NOT NULL, state TEXT NOT NULL,
    seen INTEGER NOT NULL, removed REAL NOT NULL DEFAULT 0, PRIMARY KEY (se, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lost_replicas (
    se TEXT NOT NULL, path TEXT NOT NULL, guid TEXT NOT NULL, found REAL NOT NULL,
    PRIMARY KEY (se, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crawls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, se TEXT NOT NULL, started REAL NOT NULL,
    seconds REAL NOT NULL, first INTEGER NOT NULL, listed INTEGER NOT NULL,
    second INTEGER NOT NULL, dark INTEGER NOT NULL, lost INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rules (
    name TEXT PRIMARY KEY, doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS decommissions (
    se TEXT PRIMARY KEY, doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS decommission_files (
    se TEXT NOT NULL, guid TEXT NOT NULL, lfn TEXT NOT NULL, state TEXT NOT NULL,
    transfers TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (se, guid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decommission_files_state ON decommission_files (se, state);
"""

QUARANTINED, REMOVED = "QUARANTINED", "REMOVED"


class DarkFile(msgspec.Struct, kw_only=True, frozen=True):
    se: str
    path: str  # the PFN path on the SE (se_listing.key_of's spelling)
    found: float  # when a crawl first found it dark
    state: str  # QUARANTINED: waiting for its grace period; REMOVED: queued for deletion
    removed: float = 0.0


class LostReplica(msgspec.Struct, kw_only=True, frozen=True):
    se: str
    path: str
    guid: str
    found: float


class CrawlReport(msgspec.Struct, kw_only=True, frozen=True):
    se: str
    started: float
    seconds: float
    first: int  # replicas in the catalogue's first dump
    listed: int  # files the SE listed
    second: int  # replicas in the catalogue's second dump
    dark: int  # dark files found (quarantined now or before)
    lost: int  # lost replicas found
    error: str = ""


class LifecycleStore:
    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteStore(path, SCHEMA, readers=1, name="lifecycle")

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    # -- dark data
    async def record_crawl(
        self, report: CrawlReport, dark: Sequence[str], lost: Sequence[tuple[str, str]]
    ) -> int:
        """A crawl's findings for its SE at once (small ones; a crawl streams its own with
        begin_crawl, add_dark, add_lost and end_crawl). Returns the crawl's id."""
        crawl = await self.begin_crawl(report)
        await self.add_dark(report.se, crawl, dark)
        await self.add_lost(report.se, lost, first=True)
        await self.end_crawl(report.se, crawl)
        return crawl

    async def begin_crawl(self, report: CrawlReport) -> int:
        """The crawl's row (its id marks the dark files it finds)."""

        def run(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO crawls (se, started, seconds, first, listed, second, dark, lost,"
                " error) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    report.se,
                    report.started,
                    report.seconds,
                    report.first,
                    report.listed,
                    report.second,
                    report.dark,
                    report.lost,
                    report.error,
                ),
            )
            return int(cur.lastrowid or 0)

        return await self._db.write(run)

    async def add_dark(self, se: str, crawl: int, paths: Sequence[str]) -> None:
        """Dark files found by *crawl*: new ones enter the quarantine now, known ones keep
        the time they were first found."""
        now = time.time()
        await self._db.write(
            lambda c: c.executemany(
                "INSERT INTO dark_files (se, path, found, state, seen) VALUES (?,?,?,?,?)"
                " ON CONFLICT (se, path) DO UPDATE SET seen = excluded.seen",
                [(se, p, now, QUARANTINED, crawl) for p in paths],
            )
        )

    async def add_lost(self, se: str, lost: Sequence[tuple[str, str]], first: bool) -> None:
        """Lost replicas (path, guid) of the SE; *first*: the batch replacing the last
        crawl's list."""
        now = time.time()

        def run(c: sqlite3.Connection) -> None:
            if first:
                c.execute("DELETE FROM lost_replicas WHERE se=?", (se,))
            c.executemany(
                "INSERT OR IGNORE INTO lost_replicas (se, path, guid, found) VALUES (?,?,?,?)",
                [(se, p, g, now) for p, g in lost],
            )

        await self._db.write(run)

    async def end_crawl(self, se: str, crawl: int) -> None:
        """Quarantined files *crawl* did not find dark leave the quarantine."""
        await self._db.write(
            lambda c: c.execute(
                "DELETE FROM dark_files WHERE se=? AND state=? AND seen != ?",
                (se, QUARANTINED, crawl),
            )
        )

    async def record_failed_crawl(self, report: CrawlReport) -> None:
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO crawls (se, started, seconds, first, listed, second, dark, lost,"
                " error) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    report.se,
                    report.started,
                    report.seconds,
                    report.first,
                    report.listed,
                    report.second,
                    report.dark,
                    report.lost,
                    report.error,
                ),
            )
        )

    async def dark_files(self, se: str = "", state: str = "", limit: int = 0) -> list[DarkFile]:
        sql = "SELECT se, path, found, state, removed FROM dark_files WHERE 1=1"
        args: list[object] = []
        if se:
            sql, args = sql + " AND se=?", [*args, se]
        if state:
            sql, args = sql + " AND state=?", [*args, state]
        sql += " ORDER BY se, path" + (f" LIMIT {int(limit)}" if limit else "")
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [DarkFile(se=r[0], path=r[1], found=r[2], state=r[3], removed=r[4]) for r in rows]

    async def due_dark(self, before: float, limit: int) -> list[DarkFile]:
        """Quarantined files found before *before* (their grace period is over)."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT se, path, found, state, removed FROM dark_files WHERE state=?"
                " AND found < ? ORDER BY found LIMIT ?",
                (QUARANTINED, before, limit),
            ).fetchall()
        )
        return [DarkFile(se=r[0], path=r[1], found=r[2], state=r[3], removed=r[4]) for r in rows]

    async def set_dark(self, se: str, path: str, state: str | None) -> None:
        """A quarantined file moves to *state* (REMOVED), or leaves the table (None)."""

        def run(c: sqlite3.Connection) -> None:
            if state is None:
                c.execute("DELETE FROM dark_files WHERE se=? AND path=?", (se, path))
            else:
                c.execute(
                    "UPDATE dark_files SET state=?, removed=? WHERE se=? AND path=?",
                    (state, time.time(), se, path),
                )

        await self._db.write(run)

    async def lost_replicas(self, se: str = "", limit: int = 0) -> list[LostReplica]:
        sql, args = "SELECT se, path, guid, found FROM lost_replicas", []
        if se:
            sql, args = sql + " WHERE se=?", [se]
        sql += " ORDER BY se, path" + (f" LIMIT {int(limit)}" if limit else "")
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [LostReplica(se=r[0], path=r[1], guid=r[2], found=r[3]) for r in rows]

    async def crawls(self, se: str = "", limit: int = 20) -> list[CrawlReport]:
        sql, args = (
            "SELECT se, started, seconds, first, listed, second, dark, lost, error FROM crawls",
            [],
        )
        if se:
            sql, args = sql + " WHERE se=?", [se]
        sql += f" ORDER BY id DESC LIMIT {int(limit)}"
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [
            CrawlReport(
                se=r[0],
                started=r[1],
                seconds=r[2],
                first=r[3],
                listed=r[4],
                second=r[5],
                dark=r[6],
                lost=r[7],
                error=r[8],
            )
            for r in rows
        ]

    async def dark_counts(self) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT state, COUNT(*) FROM dark_files GROUP BY state").fetchall()
        )
        counts = {QUARANTINED: 0, REMOVED: 0}
        counts.update({str(s): int(n) for s, n in rows})
        counts["LOST"] = await self._db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM lost_replicas").fetchone()[0]
        )
        return counts

    # -- documents by key (rules, decommissions)
    async def put_doc(self, table: str, key: str, doc: bytes) -> None:
        assert table in ("rules", "decommissions")
        await self._db.write(
            lambda c: c.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (key, doc))
        )

    async def drop_doc(self, table: str, key: str) -> int:
        assert table in ("rules", "decommissions")
        return await self._db.write(
            lambda c: c.execute(f"DELETE FROM {table} WHERE {_key(table)}=?", (key,)).rowcount
        )

    async def docs(self, table: str) -> list[tuple[str, bytes]]:
        assert table in ("rules", "decommissions")
        rows: list[Any] = await self._db.read(
            lambda c: c.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        )
        return [(str(k), bytes(d)) for k, d in rows]

    # -- the files of a decommission (one row per GUID on the SE, once decided)
    async def decided(self, se: str, guids: Sequence[str]) -> set[str]:
        """Which of *guids* have a row already (a walk resumed after a restart skips them)."""
        marks = ",".join("?" * len(guids))
        if not guids:
            return set()
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT guid FROM decommission_files WHERE se=? AND guid IN ({marks})",
                (se, *guids),
            ).fetchall()
        )
        return {r[0] for r in rows}

    async def put_files(self, se: str, rows: Sequence[DecommissionFile]) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT OR REPLACE INTO decommission_files VALUES (?,?,?,?,?,?)",
                [
                    (se, r.guid, r.lfn, r.state, ",".join(map(str, r.transfers)), r.reason)
                    for r in rows
                ],
            )

        await self._db.write(run)

    async def files(self, se: str, state: str = "", limit: int = 0) -> list[DecommissionFile]:
        sql = "SELECT guid, lfn, state, transfers, reason FROM decommission_files WHERE se=?"
        args: list[object] = [se]
        if state:
            sql, args = sql + " AND state=?", [*args, state]
        sql += " ORDER BY lfn" + (f" LIMIT {int(limit)}" if limit else "")
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [
            DecommissionFile(
                guid=r[0],
                lfn=r[1],
                state=r[2],
                transfers=[int(t) for t in r[3].split(",") if t],
                reason=r[4],
            )
            for r in rows
        ]

    async def file_counts(self, se: str) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT state, COUNT(*) FROM decommission_files WHERE se=? GROUP BY state", (se,)
            ).fetchall()
        )
        return {str(s): int(n) for s, n in rows}

    async def forget_files(self, se: str, state: str = "") -> int:
        sql, args = "DELETE FROM decommission_files WHERE se=?", [se]
        if state:
            sql, args = sql + " AND state=?", [se, state]
        return await self._db.write(lambda c: c.execute(sql, args).rowcount)


class DecommissionFile(msgspec.Struct, kw_only=True):
    """A file of an SE being decommissioned and what became of it."""

    guid: str
    lfn: str
    state: str  # decommission.OK, WAITING, STUCK, LOST, DROPPED
    transfers: list[int] = []
    reason: str = ""


def _key(table: str) -> str:
    return "name" if table == "rules" else "se"
