"""When LFNs expire (JAliEn's ``lfnexpiretime``): the time is stored, extended, removed
and shown here; ``catalogue/expiry_reaper.py`` removes the files whose time has passed.

Kept in a SQLite file of its own beside the catalogue (``lfnexpiry.db`` in jcentral's
home), started at its first use: one jcentral's view. An LFN that is moved or removed keeps
its row until whatever acts on expiry reads it (it then finds no such file)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from jalien.sqlstore.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS lfn_expiry (lfn TEXT PRIMARY KEY, expires INTEGER NOT NULL);
"""


class LfnExpiry:
    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteStore(path, SCHEMA, name="lfnexpiry")
        self._started: asyncio.Task[None] | None = None

    async def _ready(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._db.start())
        await asyncio.shield(self._started)

    async def close(self) -> None:
        if self._started is not None:
            await self._started
            await self._db.close()

    async def get(self, lfns: list[str]) -> dict[str, int]:
        """The expiry (ms since the epoch) of those of *lfns* that have one."""
        await self._ready()
        marks = ",".join("?" * len(lfns))

        def run(c: sqlite3.Connection) -> dict[str, int]:
            rows = c.execute(f"SELECT lfn, expires FROM lfn_expiry WHERE lfn IN ({marks})", lfns)
            return dict(rows.fetchall())

        return await self._db.read(run) if lfns else {}

    async def set(self, expires: dict[str, int | None]) -> None:
        """Set each LFN's expiry; None removes it."""
        await self._ready()

        def run(c: sqlite3.Connection) -> None:
            for lfn, when in expires.items():
                if when is None:
                    c.execute("DELETE FROM lfn_expiry WHERE lfn=?", (lfn,))
                else:
                    c.execute(
                        "INSERT INTO lfn_expiry VALUES (?,?) "
                        "ON CONFLICT(lfn) DO UPDATE SET expires=excluded.expires",
                        (lfn, when),
                    )

        await self._db.write(run)

    async def due(self, now_ms: int, limit: int = 500) -> list[str]:
        """LFNs whose expiry (ms since the epoch) is at or before *now_ms*, soonest first."""
        await self._ready()

        def run(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "SELECT lfn FROM lfn_expiry WHERE expires<=? ORDER BY expires LIMIT ?",
                (now_ms, limit),
            )
            return [lfn for (lfn,) in rows.fetchall()]

        return await self._db.read(run)
