"""The embedded catalogue: one SQLite file in WAL mode (jalien.sqlstore.sqlite runs it off
the event loop: a reader pool and one group-commit writer). Entries
are keyed (dir, name), so a listing is a range scan of the primary key and a subtree
(find, du, rm -r, mv) a range over dir.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from jalien._fast import rowpack
from jalien.catalogue import find_sql
from jalien.catalogue.backend import (
    ALL_FIELDS,
    PAGE,
    CatalogueBackend,
    DiskUsage,
    Exists,
    FindQuery,
    NotFound,
    NotSharded,
    PackedEntries,
    listing_fields,
    page_rows,
)
from jalien.catalogue.model import DIRECTORY, Entry, Replica, StorageElement
from jalien.catalogue.paths import prefix_end, split
from jalien.catalogue.table_counts import TableCount
from jalien.loops import Pool
from jalien.net.fairness import step_rows
from jalien.sqlstore.kept_reads import MISSING, KeptReads
from jalien.sqlstore.sqlite import SQLiteStore
from jalien.wire.messages import DirEntry

COLUMNS = "name, type, perm, owner, gowner, size, ctime, md5, guid, jobid"
LISTING = "listing"  # kept listings are keyed (LISTING, directory, ...), lookups by path
PACKED_LISTING = "packed"  # and (PACKED_LISTING, directory, ...)
KEPT_LISTING = 512  # directories up to this many entries are kept whole

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    dir TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, perm TEXT NOT NULL,
    owner TEXT NOT NULL, gowner TEXT NOT NULL, size INTEGER NOT NULL, ctime INTEGER NOT NULL,
    md5 TEXT NOT NULL, guid TEXT NOT NULL, jobid INTEGER NOT NULL,
    PRIMARY KEY (dir, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_guid ON entries (guid) WHERE guid != '';
CREATE TABLE IF NOT EXISTS replicas (
    guid TEXT NOT NULL, se TEXT NOT NULL, pfn TEXT NOT NULL, PRIMARY KEY (guid, se, pfn)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ses (name TEXT PRIMARY KEY, doc BLOB NOT NULL);
"""


class SQLiteBackend:
    def __init__(
        self,
        path: str | Path,
        readers: int = 2,
        *,
        inline_reads: bool = False,
        kept_reads: bool = False,
    ) -> None:
        self.path = str(path)
        self._store = SQLiteStore(
            path, SCHEMA, readers=readers, name="catalogue", inline_reads=inline_reads
        )
        # lookups and whole small listings, while nothing commits (sqlstore.kept_reads)
        self._kept = KeptReads(self._store.data_version) if inline_reads and kept_reads else None
        self._read = self._store.read
        # point lookups and one page of a listing: on the loop's thread with inline_reads
        self._short = functools.partial(self._store.read, short=True)
        self._write = self._store.write

    async def start(self) -> None:
        await self._store.start()

    async def close(self) -> None:
        await self._store.close()

    def pools(self) -> list[Pool]:
        """The reader pool and the writer (for the role's registry)."""
        return self._store.pools()

    async def table_counts(self) -> list[TableCount]:
        """One table of entries and one of replicas (counted: an embedded catalogue is
        small enough for COUNT(*) at the optimizers' pace)."""

        def run(c: sqlite3.Connection) -> tuple[int, int]:
            entries = c.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            return entries, c.execute("SELECT COUNT(*) FROM replicas").fetchone()[0]

        entries, replicas = await self._read(run)
        return [
            TableCount(table="entries", kind="lfn", host=0, rows=entries, prefix="/"),
            TableCount(table="replicas", kind="pfn", host=0, rows=replicas),
        ]

    async def rotate_guid_table(self) -> str:
        raise NotSharded("the embedded catalogue keeps its replicas in one table")

    async def move_directory(self, directory: str, host: int | None = None) -> str:
        raise NotSharded("the embedded catalogue keeps its entries in one table")

    # -- reads
    async def get(self, path: str) -> Entry | None:
        kept = self._kept
        if kept is not None:
            entry = kept.lookup(path)
            if entry is not MISSING:
                return entry  # type: ignore[no-any-return]
        d, n = split(path)
        row = await self._short(
            lambda c: c.execute(
                f"SELECT dir, {COLUMNS} FROM entries WHERE dir=? AND name=?", (d, n)
            ).fetchone()
        )
        entry = Entry(*row) if row else None
        if kept is not None:
            kept.keep(path, entry)
        return entry

    async def get_many(self, paths: list[str]) -> dict[str, Entry]:
        kept = self._kept
        found: dict[str, Entry] = {}
        if kept is not None:
            found = kept.lookup_many(paths)
            paths = [p for p in paths if p not in found]
            if not paths:
                return {p: e for p, e in found.items() if e is not None}
        keys = [split(p) for p in paths]

        def run(c: sqlite3.Connection) -> list[tuple]:
            out: list[tuple] = []
            sql = f"SELECT dir, {COLUMNS} FROM entries WHERE dir=? AND name=?"
            for key in keys:
                row = c.execute(sql, key).fetchone()
                if row:
                    out.append(row)
            return out

        read = {e.path: e for e in itertools.starmap(Entry, await self._short(run))}
        if kept is not None:
            for path in paths:  # an absence is kept too
                kept.keep(path, read.get(path))
            read.update((p, e) for p, e in found.items() if e is not None)
        return read

    async def list_dir(
        self, directory: str, page: int = PAGE, fields: int = ALL_FIELDS
    ) -> AsyncIterator[list[DirEntry]]:
        kept = self._kept
        key = (LISTING, directory, fields)
        if kept is not None:
            whole = kept.lookup(key)
            if whole is not MISSING:
                if whole:
                    yield whole
                return
        after = ""
        columns = ", ".join(listing_fields(fields))
        sql = f"SELECT {columns} FROM entries WHERE dir=? AND name>? ORDER BY name LIMIT ?"
        for index in itertools.count():
            # short first pages; a short page while another user waits (net.fairness)
            size = step_rows(page_rows(page, index))

            def run(c: sqlite3.Connection, a: str = after, n: int = size) -> list[Any]:
                return c.execute(sql, (directory, a, n)).fetchall()

            rows = await self._short(run)
            entries = list(itertools.starmap(DirEntry, rows))
            if kept is not None and not after and len(rows) < min(size, KEPT_LISTING):
                kept.keep(key, entries)  # the whole directory in one small page
            if not rows:
                return
            yield entries
            if len(rows) < size:
                return
            after = rows[-1][0]

    async def list_dir_packed(
        self,
        directory: str,
        page: int = PAGE,
        fields: int = ALL_FIELDS,
        hide_dot: bool = False,
        skip_type: str = "",
    ) -> AsyncIterator[PackedEntries]:
        kept = self._kept
        key = (PACKED_LISTING, directory, fields, hide_dot, skip_type)
        if kept is not None:
            whole = kept.lookup(key)
            if whole is not MISSING:
                if whole.count:
                    yield whole
                return
        after = ""
        columns = ", ".join(listing_fields(fields))
        sql = f"SELECT {columns} FROM entries WHERE dir=? AND name>? ORDER BY name LIMIT ?"
        pack = rowpack.pack_rows
        for index in itertools.count():
            size = step_rows(page_rows(page, index))

            def run(c: sqlite3.Connection, a: str = after, n: int = size) -> Any:
                return pack(c, sql, (directory, a, n), hide_dot, skip_type)

            rows, count, read, last = await self._short(run)
            packed = PackedEntries(msgspec.Raw(rows), count)
            if kept is not None and not after and read < min(size, KEPT_LISTING):
                kept.keep(key, packed)  # the whole directory in one small page
            if count:
                yield packed
            if read < size:
                return
            after = last

    async def has_children(self, directory: str) -> bool:
        row = await self._short(
            lambda c: c.execute(
                "SELECT 1 FROM entries WHERE dir=? LIMIT 1", (directory,)
            ).fetchone()
        )
        return row is not None

    async def find(self, query: FindQuery, page: int = PAGE) -> AsyncIterator[list[Entry]]:
        where, args = find_sql.where(query, find_sql.SQLITE)
        sql = (
            f"SELECT dir, {COLUMNS} FROM entries WHERE {' AND '.join(where)} "
            "AND (dir, name) > (?, ?) ORDER BY dir, name LIMIT ?"
        )
        left = query.limit or -1
        last = ("", "")
        index = 0
        while left != 0:
            rows_now = step_rows(page_rows(page, index))
            size = rows_now if left < 0 else min(rows_now, left)
            index += 1

            def run(c: sqlite3.Connection, k: tuple[str, str] = last, n: int = size) -> list[Any]:
                return c.execute(sql, (*args, *k, n)).fetchall()

            rows = await self._read(run)
            if not rows:
                return
            yield list(itertools.starmap(Entry, rows))
            if len(rows) < size:
                return
            if left > 0:
                left -= len(rows)
            last = (rows[-1][0], rows[-1][1])

    async def du(self, directory: str) -> DiskUsage:
        def run(c: sqlite3.Connection) -> DiskUsage:
            files, dirs, size = c.execute(
                "SELECT COALESCE(SUM(type != 'd'), 0), COALESCE(SUM(type = 'd'), 0), "
                "COALESCE(SUM(size), 0) FROM entries WHERE dir >= ? AND dir < ?",
                (directory, prefix_end(directory)),
            ).fetchone()
            return DiskUsage(files=files, directories=dirs, size=size)

        return await self._read(run)

    async def by_guid(self, guid: str) -> list[Entry]:
        rows = await self._short(
            lambda c: c.execute(
                f"SELECT dir, {COLUMNS} FROM entries WHERE guid=?", (guid,)
            ).fetchall()
        )
        return list(itertools.starmap(Entry, rows))

    # -- writes
    async def insert(self, entries: list[Entry]) -> None:
        rows = [
            (
                e.dir,
                e.name,
                e.type,
                e.perm,
                e.owner,
                e.gowner,
                e.size,
                e.ctime,
                e.md5,
                e.guid,
                e.jobid,
            )
            for e in entries
        ]

        def run(c: sqlite3.Connection) -> None:
            try:
                c.executemany(
                    f"INSERT INTO entries (dir, {COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
                )
            except sqlite3.IntegrityError:
                for row in rows:
                    if c.execute(
                        "SELECT 1 FROM entries WHERE dir=? AND name=?", row[:2]
                    ).fetchone():
                        raise Exists(row[0] + row[1]) from None
                raise

        await self._write(run)

    async def update(self, path: str, fields: dict[str, object]) -> None:
        allowed = {"type", "perm", "owner", "gowner", "size", "ctime", "md5", "guid", "jobid"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        d, n = split(path)
        sets = ", ".join(f"{k}=?" for k in fields)

        def run(c: sqlite3.Connection) -> None:
            cur = c.execute(
                f"UPDATE entries SET {sets} WHERE dir=? AND name=?", (*fields.values(), d, n)
            )
            if cur.rowcount == 0:
                raise NotFound(path)

        await self._write(run)

    async def delete(self, paths: list[str]) -> int:
        keys = [split(p) for p in paths]
        return await self._write(
            lambda c: sum(
                c.execute("DELETE FROM entries WHERE dir=? AND name=?", k).rowcount for k in keys
            )
        )

    async def delete_tree(self, directory: str) -> int:
        d, n = split(directory.rstrip("/") or "/")

        def run(c: sqlite3.Connection) -> int:
            below = c.execute(
                "DELETE FROM entries WHERE dir >= ? AND dir < ?", (directory, prefix_end(directory))
            ).rowcount
            return below + c.execute("DELETE FROM entries WHERE dir=? AND name=?", (d, n)).rowcount

        return await self._write(run)

    async def move(self, src: str, dst: str) -> None:
        sd, sn = split(src)
        dd, dn = split(dst)

        def run(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT type FROM entries WHERE dir=? AND name=?", (sd, sn)).fetchone()
            if row is None:
                raise NotFound(src)
            if c.execute("SELECT 1 FROM entries WHERE dir=? AND name=?", (dd, dn)).fetchone():
                raise Exists(dst)
            c.execute("UPDATE entries SET dir=?, name=? WHERE dir=? AND name=?", (dd, dn, sd, sn))
            if row[0] == DIRECTORY:
                old, new = src + "/", dst + "/"
                c.execute(
                    "UPDATE entries SET dir = ? || substr(dir, ?) WHERE dir >= ? AND dir < ?",
                    (new, len(old) + 1, old, prefix_end(old)),
                )

        await self._write(run)

    # -- replicas and storage elements
    async def add_replicas(self, replicas: list[Replica]) -> None:
        rows = [(r.guid, r.se, r.pfn) for r in replicas]

        def run(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR IGNORE INTO replicas VALUES (?,?,?)", rows)

        await self._write(run)

    async def replicas(self, guid: str) -> list[Replica]:
        rows = await self._short(
            lambda c: c.execute(
                "SELECT guid, se, pfn FROM replicas WHERE guid=? ORDER BY se", (guid,)
            ).fetchall()
        )
        return [Replica(guid=g, se=s, pfn=p) for g, s, p in rows]

    async def delete_replicas(self, guid: str, se: str | None = None) -> int:
        if se is None:
            return await self._write(
                lambda c: c.execute("DELETE FROM replicas WHERE guid=?", (guid,)).rowcount
            )
        return await self._write(
            lambda c: c.execute("DELETE FROM replicas WHERE guid=? AND se=?", (guid, se)).rowcount
        )

    async def replicas_on(self, se: str, page: int = PAGE) -> AsyncIterator[list[Replica]]:
        # keyset pages along the primary key (guid, se, pfn): one scan of it in all
        last = ("", "", "")
        while True:

            def run(c: sqlite3.Connection, k: tuple[str, str, str] = last) -> list[Any]:
                return c.execute(
                    "SELECT guid, pfn FROM replicas WHERE (guid, se, pfn) > (?, ?, ?)"
                    " AND se = ? ORDER BY guid, se, pfn LIMIT ?",
                    (*k, se, page),
                ).fetchall()

            rows = await self._read(run)
            if not rows:
                return
            yield [Replica(guid=g, se=se, pfn=p) for g, p in rows]
            if len(rows) < page:
                return
            last = (rows[-1][0], se, rows[-1][1])

    async def list_ses(self) -> list[StorageElement]:
        rows = await self._short(
            lambda c: c.execute("SELECT doc FROM ses ORDER BY name").fetchall()
        )
        return [msgspec.msgpack.decode(doc, type=StorageElement) for (doc,) in rows]

    async def put_se(self, se: StorageElement) -> None:
        doc = msgspec.msgpack.encode(se)

        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR REPLACE INTO ses VALUES (?, ?)", (se.name, doc))

        await self._write(run)


if TYPE_CHECKING:  # mypy checks here that the class implements the Protocol
    _implements: type[CatalogueBackend] = SQLiteBackend
