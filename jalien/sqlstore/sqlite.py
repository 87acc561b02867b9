"""One SQLite file served to an asyncio program without blocking its loop.

Reads run on a small pool of reader threads, each with its own connection (WAL lets them
read while the writer writes). A read its caller knows to be short (a point lookup, a page
of a listing: ``read(fn, short=True)``) runs on the calling (event loop) thread instead, with
a connection of its own, when the store has ``inline_reads``: the hop to a pool thread and
back costs ~100 us of CPU, twenty times such a SELECT (bench/bench_requests.py measures both);
a read that finds the database locked there goes to the pool. Writes go to one writer
thread that commits everything queued in one transaction (group commit:
``sqlstore.group_commit``), each operation in a savepoint of its own so that one failure
does not undo the others; a write is acknowledged only once committed.

The reader pool is a ``jalien.loops.WorkPool`` and the writer reports to a ``PoolGauge``:
``pools()`` hands both to the role's registry, where an admin sees and steers them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jalien.loops import Pool, WorkPool
from jalien.sqlstore.group_commit import JobWriter, Outcome, WriteJob

Job = Callable[[sqlite3.Connection], Any]


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # safe against a killed process
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA case_sensitive_like=ON")  # LFNs and names are case-sensitive
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    return conn


def _settled(value: Any) -> Any:
    """What an operation returns, minus any cursor: a cursor finalised later on another
    thread (when the event loop drops it) touches its connection while the owning thread
    uses it, which SQLite reports as "bad parameter or other API misuse" (a write lost
    about once in a thousand commits under load). Operations return data, never cursors."""
    if isinstance(value, sqlite3.Cursor):
        value.close()
        return None
    return value


class _Writer(threading.Thread):
    """The store's writer thread: each batch of its ``JobWriter`` in one transaction, a
    savepoint per operation."""

    def __init__(self, path: str, schema: str, name: str, writes: JobWriter) -> None:
        super().__init__(name=f"{name}-write", daemon=True)
        self.writes = writes
        self.conn = connect(path)
        self.conn.executescript(schema)

    def run(self) -> None:
        self.writes.serve(self._apply)
        self.conn.close()

    def _apply(self, batch: list[WriteJob]) -> list[Outcome]:
        conn = self.conn
        results: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = _settled(job.fn(conn))
                except BaseException as exc:
                    conn.execute("ROLLBACK TO op")
                    results.append((None, exc))
                else:
                    results.append((value, None))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(None, exc)] * len(batch)
        return results


class SQLiteStore:
    def __init__(
        self,
        path: str | Path,
        schema: str,
        *,
        readers: int = 2,
        name: str = "sqlite",
        inline_reads: bool = False,
    ) -> None:
        self.path = str(path)
        self.inline_reads = inline_reads
        self._inline: sqlite3.Connection | None = None
        self.schema = schema
        self.name = name
        self._readers = WorkPool(f"{name}-read", readers, on_thread_exit=self._drop_conn)
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer: _Writer | None = None
        self._writes = JobWriter(f"{name}-write")
        self._gauge = self._writes.gauge

    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await asyncio.to_thread(
            _Writer, self.path, self.schema, self.name, self._writes
        )
        self._writer.start()
        if self.inline_reads:
            inline = connect(self.path)
            inline.execute("PRAGMA busy_timeout=0")  # never wait on the loop's thread
            self._inline = inline

    async def close(self) -> None:
        if self._writer is not None:
            self._writes.stop()  # a paused writer drains what is queued and ends
            await asyncio.to_thread(self._writer.join, 30)
            self._writer = None
        self._readers.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    def data_version(self) -> int:
        """SQLite's data_version on the inline connection (which never writes): it moves
        whenever anything else commits (``sqlstore.kept_reads``); -1 before start."""
        inline = self._inline
        if inline is None:
            return -1
        return inline.execute("PRAGMA data_version").fetchone()[0]  # type: ignore[no-any-return]

    def pools(self) -> list[Pool]:
        """The reader pool and the writer, for the role's registry."""
        return [self._readers, self._gauge] if self._writer is not None else []

    def _drop_conn(self) -> None:
        """A reader thread ends (the pool shrank): its connection goes with it."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._reader_conns:
                    self._reader_conns.remove(conn)
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def read(self, fn: Job, *, short: bool = False) -> Any:
        inline = self._inline
        if short and inline is not None:
            try:
                return _settled(fn(inline))
            except sqlite3.OperationalError as exc:  # locked, busy: the pool may wait
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: _settled(fn(self._conn())))

    async def write(self, fn: Job) -> Any:
        if self._writer is None:
            raise RuntimeError(f"{self.name} store not started")
        return await asyncio.wrap_future(self._writes.submit(fn))


_patterns: dict[str, re.Pattern[str]] = {}


def _regexp(pattern: str, value: str) -> bool:
    compiled = _patterns.get(pattern)
    if compiled is None:
        if len(_patterns) > 256:
            _patterns.clear()
        compiled = _patterns[pattern] = re.compile(pattern)
    return compiled.search(value) is not None
