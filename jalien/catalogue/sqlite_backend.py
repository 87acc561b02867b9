"""The embedded catalogue: one SQLite file in WAL mode.

Reads run on a small pool of reader threads, each with its own connection; writes go to
one writer thread that commits everything queued in one transaction (group commit), each
operation in a savepoint of its own so that one failure does not undo the others. Entries
are keyed (dir, name), so a listing is a range scan of the primary key and a subtree
(find, du, rm -r, mv) a range over dir.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec

from jalien.catalogue.backend import PAGE, DiskUsage, Exists, FindQuery, NotFound
from jalien.catalogue.model import DIRECTORY, Entry, Replica, StorageElement
from jalien.catalogue.paths import prefix_end, split
from jalien.wire.messages import DirEntry

COLUMNS = "name, type, perm, owner, gowner, size, ctime, md5, guid, jobid"

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


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # safe against a killed process
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA case_sensitive_like=ON")  # LFNs are case-sensitive
    return conn


class _Writer(threading.Thread):
    """The single writer: group commit of everything queued, a savepoint per operation."""

    def __init__(self, path: str) -> None:
        super().__init__(name="catalogue-write", daemon=True)
        self.conn = _connect(path)
        self.conn.executescript(SCHEMA)
        self.jobs: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], Any] | None] = (
            queue.Queue()
        )

    def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((fn, future))
        return future

    def run(self) -> None:
        conn = self.conn
        while True:
            first = self.jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < 1000:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)
                    break
                batch.append(job)
            results: list[tuple[Any, Any, BaseException | None]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, future in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(conn)
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO op")
                        results.append((future, None, exc))
                    else:
                        results.append((future, value, None))
                    conn.execute("RELEASE op")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                results = [(future, None, exc) for _, future in batch]
            for future, value, exc in results:  # acknowledged only once committed
                if exc is None:
                    future.set_result(value)
                else:
                    future.set_exception(exc)
        conn.close()


class SQLiteBackend:
    def __init__(self, path: str | Path, readers: int = 2) -> None:
        self.path = str(path)
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=readers, thread_name_prefix="catalogue-read"
        )
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer: _Writer | None = None

    # -- plumbing
    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await asyncio.to_thread(_Writer, self.path)
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join, 30)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.create_function("regexp", 2, _regexp, deterministic=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._conn()))

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._writer is not None, "backend not started"
        return await asyncio.wrap_future(self._writer.submit(fn))

    # -- reads
    async def get(self, path: str) -> Entry | None:
        d, n = split(path)
        row = await self._read(
            lambda c: c.execute(
                f"SELECT dir, {COLUMNS} FROM entries WHERE dir=? AND name=?", (d, n)
            ).fetchone()
        )
        return Entry(*row) if row else None

    async def get_many(self, paths: list[str]) -> dict[str, Entry]:
        keys = [split(p) for p in paths]

        def run(c: sqlite3.Connection) -> list[tuple]:
            out: list[tuple] = []
            sql = f"SELECT dir, {COLUMNS} FROM entries WHERE dir=? AND name=?"
            for key in keys:
                row = c.execute(sql, key).fetchone()
                if row:
                    out.append(row)
            return out

        return {e.path: e for e in itertools.starmap(Entry, await self._read(run))}

    async def list_dir(self, directory: str, page: int = PAGE) -> AsyncIterator[list[DirEntry]]:
        after = ""
        sql = f"SELECT {COLUMNS} FROM entries WHERE dir=? AND name>? ORDER BY name LIMIT ?"
        while True:
            rows = await self._read(
                lambda c, a=after: c.execute(sql, (directory, a, page)).fetchall()
            )
            if not rows:
                return
            yield list(itertools.starmap(DirEntry, rows))
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def has_children(self, directory: str) -> bool:
        row = await self._read(
            lambda c: c.execute(
                "SELECT 1 FROM entries WHERE dir=? LIMIT 1", (directory,)
            ).fetchone()
        )
        return row is not None

    async def find(self, query: FindQuery, page: int = PAGE) -> AsyncIterator[list[Entry]]:
        where = ["dir >= ?", "dir < ?"]
        args: list[Any] = [query.base, prefix_end(query.base)]
        if query.name_glob not in ("", "*"):
            where.append("name GLOB ?")
            args.append(query.name_glob)
        if query.types != frozenset("fdcl"):
            where.append(f"type IN ({','.join('?' * len(query.types))})")
            args.extend(sorted(query.types))
        if query.lfn_regex:
            where.append("regexp(?, dir || name)")
            args.append(query.lfn_regex)
        if query.lfn_like:
            where.append("dir || name LIKE ?")
            args.append(query.lfn_like)
        if query.min_size >= 0:
            where.append("size >= ?")
            args.append(query.min_size)
        if query.jobid:
            where.append("jobid = ?")
            args.append(query.jobid)
        sql = (
            f"SELECT dir, {COLUMNS} FROM entries WHERE {' AND '.join(where)} "
            "AND (dir, name) > (?, ?) ORDER BY dir, name LIMIT ?"
        )
        left = query.limit or -1
        last = ("", "")
        while left != 0:
            size = page if left < 0 else min(page, left)
            rows = await self._read(
                lambda c, k=last, n=size: c.execute(sql, (*args, *k, n)).fetchall()
            )
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
        rows = await self._read(
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
        await self._write(
            lambda c: c.executemany("INSERT OR IGNORE INTO replicas VALUES (?,?,?)", rows)
        )

    async def replicas(self, guid: str) -> list[Replica]:
        rows = await self._read(
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

    async def list_ses(self) -> list[StorageElement]:
        rows = await self._read(lambda c: c.execute("SELECT doc FROM ses ORDER BY name").fetchall())
        return [msgspec.msgpack.decode(doc, type=StorageElement) for (doc,) in rows]

    async def put_se(self, se: StorageElement) -> None:
        doc = msgspec.msgpack.encode(se)
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO ses VALUES (?, ?)", (se.name, doc))
        )


_patterns: dict[str, re.Pattern[str]] = {}


def _regexp(pattern: str, value: str) -> bool:
    compiled = _patterns.get(pattern)
    if compiled is None:
        if len(_patterns) > 256:
            _patterns.clear()
        compiled = _patterns[pattern] = re.compile(pattern)
    return compiled.search(value) is not None
