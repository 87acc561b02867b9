"""The data movers' queues, durable in a SQL database: the PFNs to delete and the
transfers. SQLite (through jalien.sqlstore, in the task-queue database file by default);
the statements are plain SQL of the same shape for MariaDB at scale.

Every state change is a compare-and-set in the one writer thread (``UPDATE ... WHERE id=?
AND state=?``): two workers never take the same row, and a move that is not legal
(``model.check_move``) is refused before it is written."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jalien.datamovers.model import (
    ACTIVE,
    DELETION_MOVES,
    HELD,
    QUEUED,
    TRANSFER_MOVES,
    TRANSFERRING,
    WAITING,
    Deletion,
    PfnRef,
    Transfer,
    check_move,
)
from jalien.sqlstore.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS pfn_deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    guid TEXT NOT NULL, se TEXT NOT NULL, pfn TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL, error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS pfn_deletions_due ON pfn_deletions (state, next_try);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lfn TEXT NOT NULL, guid TEXT NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL,
    user TEXT NOT NULL, destination TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 5,
    source TEXT NOT NULL DEFAULT '', pfn TEXT NOT NULL DEFAULT '',
    remove_source TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL, next_try REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transfers_due ON transfers (state, next_try);
CREATE UNIQUE INDEX IF NOT EXISTS transfers_active ON transfers (guid, destination)
    WHERE state IN ('WAITING', 'TRANSFERRING');
"""

DELETION_COLUMNS = "id, guid, se, pfn, state, attempts, next_try, created, error"
TRANSFER_COLUMNS = (
    "id, lfn, guid, size, md5, user, destination, state, attempts, max_attempts, source, pfn, "
    "remove_source, reason, created, updated, next_try"
)


class AlreadyQueued(Exception):
    """An active transfer of the same GUID to the same SE exists; *id* is its id."""

    def __init__(self, transfer_id: int) -> None:
        super().__init__(f"already queued as transfer {transfer_id}")
        self.id = transfer_id


def _deletion(row: Sequence[Any]) -> Deletion:
    return Deletion(
        id=row[0], guid=row[1], se=row[2], pfn=row[3], state=row[4], attempts=row[5],
        next_try=row[6], created=row[7], error=row[8],
    )  # fmt: skip


def _transfer(row: Sequence[Any]) -> Transfer:
    return Transfer(
        id=row[0], lfn=row[1], guid=row[2], size=row[3], md5=row[4], user=row[5],
        destination=row[6], state=row[7], attempts=row[8], max_attempts=row[9], source=row[10],
        pfn=row[11], remove_source=row[12], reason=row[13], created=row[14], updated=row[15],
        next_try=row[16],
    )  # fmt: skip


class DataMoverStore:
    """Both queues in one SQLite database (a file of its own or the task queue's)."""

    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteStore(path, SCHEMA, name="datamovers")

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    # -- deletions
    async def add_deletions(self, refs: Sequence[PfnRef], state: str = QUEUED) -> list[int]:
        now = time.time()
        rows = [(r.guid, r.se, r.pfn, state, now, now) for r in refs]

        def run(c: sqlite3.Connection) -> list[int]:
            ids = []
            for row in rows:
                cur = c.execute(
                    "INSERT INTO pfn_deletions (guid, se, pfn, state, next_try, created) "
                    "VALUES (?,?,?,?,?,?)",
                    row,
                )
                ids.append(int(cur.lastrowid or 0))
                cur.close()
            return ids

        return await self._db.write(run) if rows else []

    async def move_deletions(self, ids: Sequence[int], old: str, new: str) -> int:
        """Move the rows of *ids* that are in *old* to *new* (due at once); how many moved."""
        check_move(DELETION_MOVES, old, new)
        now = time.time()
        args = [(new, now, i, old) for i in ids]

        def run(c: sqlite3.Connection) -> int:
            moved = 0
            for arg in args:
                moved += c.execute(
                    "UPDATE pfn_deletions SET state=?, next_try=? WHERE id=? AND state=?", arg
                ).rowcount
            return moved

        return await self._db.write(run) if args else 0

    async def drop_deletions(self, ids: Sequence[int]) -> int:
        """Forget rows: deleted on their SE, or held for a removal that did not happen."""
        args = [(i,) for i in ids]

        def run(c: sqlite3.Connection) -> int:
            return sum(c.execute("DELETE FROM pfn_deletions WHERE id=?", a).rowcount for a in args)

        return await self._db.write(run) if args else 0

    async def deletion_failed(
        self, row: Deletion, error: str, next_try: float, give_up: bool
    ) -> None:
        new = "FAILED" if give_up else QUEUED
        check_move(DELETION_MOVES, row.state, new)

        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE pfn_deletions SET state=?, attempts=attempts+1, next_try=?, error=? "
                "WHERE id=? AND state=?",
                (new, next_try, error[:500], row.id, row.state),
            ).close()

        await self._db.write(run)

    async def due_deletions(self, now: float, limit: int) -> list[Deletion]:
        def run(c: sqlite3.Connection) -> list[Deletion]:
            rows = c.execute(
                f"SELECT {DELETION_COLUMNS} FROM pfn_deletions WHERE state=? AND next_try<=? "
                "ORDER BY next_try, id LIMIT ?",
                (QUEUED, now, limit),
            ).fetchall()
            return [_deletion(r) for r in rows]

        return await self._db.read(run)

    async def held_before(self, before: float, limit: int) -> list[Deletion]:
        """Rows held since before *before*: their removal's process may have died."""

        def run(c: sqlite3.Connection) -> list[Deletion]:
            rows = c.execute(
                f"SELECT {DELETION_COLUMNS} FROM pfn_deletions WHERE state=? AND created<? "
                "ORDER BY id LIMIT ?",
                (HELD, before, limit),
            ).fetchall()
            return [_deletion(r) for r in rows]

        return await self._db.read(run)

    async def list_deletions(self, state: str = "", se: str = "", limit: int = 0) -> list[Deletion]:
        where: list[str] = []
        args: list[object] = []
        if state:
            where.append("state=?")
            args.append(state)
        if se:
            where.append("se=?")
            args.append(se)
        sql = f"SELECT {DELETION_COLUMNS} FROM pfn_deletions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit > 0 else "")

        def run(c: sqlite3.Connection) -> list[Deletion]:
            return [_deletion(r) for r in c.execute(sql, args).fetchall()]

        return await self._db.read(run)

    async def deletion_counts(self) -> dict[str, int]:
        def run(c: sqlite3.Connection) -> dict[str, int]:
            return dict(
                c.execute("SELECT state, count(*) FROM pfn_deletions GROUP BY state").fetchall()
            )

        return await self._db.read(run)

    # -- transfers
    async def add_transfer(self, t: Transfer) -> int:
        """Queue *t* (WAITING); AlreadyQueued if the same GUID is on its way to the same SE."""
        now = time.time()
        row = (
            t.lfn, t.guid, t.size, t.md5, t.user, t.destination, WAITING, t.max_attempts,
            t.remove_source, now, now, now,
        )  # fmt: skip

        def run(c: sqlite3.Connection) -> int:
            found = c.execute(
                "SELECT id FROM transfers WHERE guid=? AND destination=? "
                "AND state IN ('WAITING', 'TRANSFERRING')",
                (t.guid, t.destination),
            ).fetchone()
            if found:
                raise AlreadyQueued(found[0])
            cur = c.execute(
                "INSERT INTO transfers (lfn, guid, size, md5, user, destination, state, "
                "max_attempts, remove_source, created, updated, next_try) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            new = int(cur.lastrowid or 0)
            cur.close()
            return new

        return await self._db.write(run)

    async def move_transfer(self, t: Transfer, new: str, **fields: Any) -> bool:
        """Compare-and-set *t* from its state to *new*, with *fields*; False when the row was
        no longer in t.state (killed meanwhile). *t* is updated when it moved."""
        check_move(TRANSFER_MOVES, t.state, new)
        fields = {**fields, "state": new, "updated": time.time()}
        sets = ", ".join(f"{k}=?" for k in fields)
        args = [*fields.values(), t.id, t.state]

        def run(c: sqlite3.Connection) -> bool:
            return bool(
                c.execute(f"UPDATE transfers SET {sets} WHERE id=? AND state=?", args).rowcount
            )

        moved = await self._db.write(run)
        if moved:
            for key, value in fields.items():
                setattr(t, key, value)
        return moved

    async def recover_transfers(self) -> int:
        """After a restart: what was TRANSFERRING was cut short and waits again."""
        now = time.time()

        def run(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE transfers SET state=?, updated=?, next_try=?, "
                "reason='interrupted (jcentral restarted)' WHERE state=?",
                (WAITING, now, now, TRANSFERRING),
            ).rowcount

        return await self._db.write(run)

    async def get_transfer(self, transfer_id: int) -> Transfer | None:
        def run(c: sqlite3.Connection) -> Transfer | None:
            row = c.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id=?", (transfer_id,)
            ).fetchone()
            return _transfer(row) if row else None

        return await self._db.read(run)

    async def due_transfers(self, now: float, limit: int) -> list[Transfer]:
        def run(c: sqlite3.Connection) -> list[Transfer]:
            rows = c.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE state=? AND next_try<=? "
                "ORDER BY id LIMIT ?",
                (WAITING, now, limit),
            ).fetchall()
            return [_transfer(r) for r in rows]

        return await self._db.read(run)

    async def list_transfers(
        self,
        *,
        state: str = "",
        user: str = "",
        transfer_id: int = 0,
        destination: str = "",
        limit: int = 0,
        descending: bool = False,
    ) -> list[Transfer]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (("state", state), ("user", user), ("destination", destination)):
            if value:
                where.append(f"{column}=?")
                args.append(value)
        if transfer_id:
            where.append("id=?")
            args.append(transfer_id)
        sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id" + (" DESC" if descending else "")
        sql += f" LIMIT {int(limit)}" if limit > 0 else ""

        def run(c: sqlite3.Connection) -> list[Transfer]:
            return [_transfer(r) for r in c.execute(sql, args).fetchall()]

        return await self._db.read(run)

    async def transfer_counts(self) -> dict[str, int]:
        def run(c: sqlite3.Connection) -> dict[str, int]:
            rows = c.execute("SELECT state, count(*) FROM transfers GROUP BY state").fetchall()
            return dict(rows)

        return await self._db.read(run)


def is_active(state: str) -> bool:
    return state in ACTIVE
