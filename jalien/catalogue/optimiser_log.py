"""What the optimizers did and when (JAliEn's ``optimiserLogs``), kept across restarts.

The embedded grid keeps it in a SQLite file of the home (``optimiser.db``); the sharded
catalogue in OPTIMIZERLOG of its index database, so that every jcentral process sharing
the catalogue shows the same history. An optimizer's entries older than the log's last
``KEEP`` are dropped as it adds new ones.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

import msgspec

from jalien.loops import Pool
from jalien.sqlstore.mysql import MySQLStore
from jalien.sqlstore.sqlite import SQLiteStore

KEEP = 10_000  # an optimizer's entries older than the log's last KEEP go


class LogEntry(msgspec.Struct, frozen=True):
    time: float  # seconds since the epoch
    optimizer: str  # the loop's name: guid-tables, lfn-tables, lfn-split
    level: str  # "info", "alarm", "error"
    message: str


class OptimiserLog(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def pools(self) -> list[Pool]: ...
    async def add(self, optimizer: str, message: str, level: str = "info") -> None: ...
    async def last(self, optimizers: list[str], count: int) -> list[LogEntry]:
        """The *count* newest entries of each of *optimizers* (all when empty), oldest first."""
        ...

    async def names(self) -> list[str]: ...


_SQLITE = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, optimizer TEXT NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_optimizer ON log (optimizer, id);
"""


class SQLiteOptimiserLog:
    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteStore(path, _SQLITE, readers=1, name="optimiserlog")

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    def pools(self) -> list[Pool]:
        return self._db.pools()

    async def add(self, optimizer: str, message: str, level: str = "info") -> None:
        def run(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "INSERT INTO log (ts, optimizer, level, message) VALUES (?, ?, ?, ?)",
                (time.time(), optimizer, level, message),
            )
            last = cur.lastrowid or 0
            c.execute("DELETE FROM log WHERE optimizer=? AND id <= ?", (optimizer, last - KEEP))

        await self._db.write(run)

    async def last(self, optimizers: list[str], count: int) -> list[LogEntry]:
        def run(c: sqlite3.Connection) -> list[Any]:
            names = optimizers or [n for (n,) in c.execute("SELECT DISTINCT optimizer FROM log")]
            rows: list[Any] = []
            for name in names:
                rows += c.execute(
                    "SELECT id, ts, optimizer, level, message FROM log WHERE optimizer=? "
                    "ORDER BY id DESC LIMIT ?",
                    (name, count),
                ).fetchall()
            return sorted(rows)

        return [LogEntry(*row[1:]) for row in await self._db.read(run)]

    async def names(self) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT DISTINCT optimizer FROM log ORDER BY 1").fetchall()
        )
        return [n for (n,) in rows]


_MARIADB = [
    """CREATE TABLE IF NOT EXISTS OPTIMIZERLOG (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, ts DOUBLE NOT NULL,
        optimizer VARCHAR(64) NOT NULL, level VARCHAR(8) NOT NULL, message TEXT NOT NULL,
        KEY optimizer (optimizer, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
]


class MariaDBOptimiserLog:
    """OPTIMIZERLOG in the sharded catalogue's index database (*dsn*)."""

    def __init__(self, dsn: str) -> None:
        self._db = MySQLStore(dsn, _MARIADB, readers=1, name="optimiserlog")

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    def pools(self) -> list[Pool]:
        return self._db.pools()

    async def add(self, optimizer: str, message: str, level: str = "info") -> None:
        def run(cur: Any) -> None:
            cur.execute(
                "INSERT INTO OPTIMIZERLOG (ts, optimizer, level, message) VALUES (%s, %s, %s, %s)",
                (time.time(), optimizer, level, message),
            )
            cur.execute(
                "DELETE FROM OPTIMIZERLOG WHERE optimizer=%s AND id <= %s",
                (optimizer, cur.lastrowid - KEEP),
            )

        await self._db.write(run)

    async def last(self, optimizers: list[str], count: int) -> list[LogEntry]:
        def run(cur: Any) -> list[Any]:
            names = optimizers
            if not names:
                cur.execute("SELECT DISTINCT optimizer FROM OPTIMIZERLOG")
                names = [n for (n,) in cur.fetchall()]
            rows: list[Any] = []
            for name in names:
                cur.execute(
                    "SELECT id, ts, optimizer, level, message FROM OPTIMIZERLOG "
                    "WHERE optimizer=%s ORDER BY id DESC LIMIT %s",
                    (name, count),
                )
                rows += cur.fetchall()
            return sorted(rows)

        return [LogEntry(*row[1:]) for row in await self._db.read(run)]

    async def names(self) -> list[str]:
        def run(cur: Any) -> list[str]:
            cur.execute("SELECT DISTINCT optimizer FROM OPTIMIZERLOG ORDER BY 1")
            return [n for (n,) in cur.fetchall()]

        return await self._db.read(run)
