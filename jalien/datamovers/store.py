"""The data movers' queues, durable in a SQL database: the PFNs to delete and the
transfers. SQLite (jalien.sqlstore.sqlite, in the task-queue database file by default) or
MariaDB at scale (jalien.sqlstore.mysql, the task queue's database): the same tables and the
same statements (``?`` marks become ``%s`` on MariaDB), each operation a function of one
``_Sql`` handle run by the store's reader pool or its group-commit writer.

Every state change is a compare-and-set in the one writer thread (``UPDATE ... WHERE id=?
AND state=?``): two workers never take the same row, and a move that is not legal
(``model.check_move``) is refused before it is written."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    created REAL NOT NULL, updated REAL NOT NULL, next_try REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS transfers_due ON transfers (state, next_try);
CREATE UNIQUE INDEX IF NOT EXISTS transfers_active ON transfers (guid, destination)
    WHERE state IN ('WAITING', 'TRANSFERRING');
"""
_MARIADB = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
MARIADB_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS pfn_deletions (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        guid VARCHAR(64) NOT NULL, se VARCHAR(128) NOT NULL, pfn VARCHAR(2048) NOT NULL,
        state VARCHAR(16) NOT NULL, attempts INT NOT NULL DEFAULT 0,
        next_try DOUBLE NOT NULL DEFAULT 0, created DOUBLE NOT NULL,
        error VARCHAR(512) NOT NULL DEFAULT '',
        KEY pfn_deletions_due (state, next_try)
    ) {_MARIADB}""",
    f"""CREATE TABLE IF NOT EXISTS transfers (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        lfn VARCHAR(2048) NOT NULL, guid VARCHAR(64) NOT NULL, size BIGINT NOT NULL,
        md5 VARCHAR(64) NOT NULL, user VARCHAR(64) NOT NULL, destination VARCHAR(128) NOT NULL,
        state VARCHAR(16) NOT NULL, attempts INT NOT NULL DEFAULT 0,
        max_attempts INT NOT NULL DEFAULT 5, source VARCHAR(128) NOT NULL DEFAULT '',
        pfn VARCHAR(2048) NOT NULL DEFAULT '', remove_source VARCHAR(128) NOT NULL DEFAULT '',
        reason VARCHAR(512) NOT NULL DEFAULT '', created DOUBLE NOT NULL,
        updated DOUBLE NOT NULL, next_try DOUBLE NOT NULL DEFAULT 0,
        owner VARCHAR(256) NOT NULL DEFAULT '',
        KEY transfers_due (state, next_try),
        KEY transfers_active (guid, destination, state)
    ) {_MARIADB}""",
]


class _Sql:
    """One operation's access to the database: a SQLite connection or a MariaDB cursor."""

    def __init__(self, handle: Any, mariadb: bool) -> None:
        self.handle = handle
        self.mariadb = mariadb

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.mariadb else sql

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """A statement; the rows it changed."""
        if self.mariadb:
            self.handle.execute(self._sql(sql), tuple(args))
            return int(self.handle.rowcount)
        cur = self.handle.execute(sql, tuple(args))
        count = int(cur.rowcount)
        cur.close()
        return count

    def insert(self, sql: str, args: Sequence[Any]) -> int:
        """An INSERT; the id it made."""
        if self.mariadb:
            self.handle.execute(self._sql(sql), tuple(args))
            return int(self.handle.lastrowid or 0)
        cur = self.handle.execute(sql, tuple(args))
        made = int(cur.lastrowid or 0)
        cur.close()
        return made

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.mariadb:
            self.handle.execute(self._sql(sql), tuple(args))
            return list(self.handle.fetchall())
        cur = self.handle.execute(sql, tuple(args))
        found = cur.fetchall()
        cur.close()
        return found


DELETION_COLUMNS = "id, guid, se, pfn, state, attempts, next_try, created, error"
TRANSFER_COLUMNS = (
    "id, lfn, guid, size, md5, user, destination, state, attempts, max_attempts, source, pfn, "
    "remove_source, reason, created, updated, next_try, owner"
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
        next_try=row[16], owner=row[17],
    )  # fmt: skip


class DataMoverStore:
    """Both queues in one database: SQLite (``DataMoverStore(path)``, a file of its own or
    the task queue's) or MariaDB (``DataMoverStore.mariadb(dsn)``)."""

    def __init__(self, path: str | Path = "", *, db: Any = None, mariadb: bool = False) -> None:
        self._db = db if db is not None else SQLiteStore(path, SCHEMA, name="datamovers")
        self._mariadb = mariadb

    @classmethod
    def mariadb(cls, dsn: str, readers: int = 2) -> DataMoverStore:
        from jalien.sqlstore.mysql import MySQLStore

        db = MySQLStore(dsn, MARIADB_SCHEMA, readers=readers, name="datamovers")
        return cls(db=db, mariadb=True)

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    def pools(self) -> list[Any]:
        """Its thread pools, for the role's registry (jalien.loops)."""
        pools = getattr(self._db, "pools", None)
        return list(pools()) if pools is not None else []

    async def _read(self, fn: Callable[[_Sql], Any]) -> Any:
        mariadb = self._mariadb
        return await self._db.read(lambda handle: fn(_Sql(handle, mariadb)))

    async def _write(self, fn: Callable[[_Sql], Any]) -> Any:
        mariadb = self._mariadb
        return await self._db.write(lambda handle: fn(_Sql(handle, mariadb)))

    # -- deletions
    async def add_deletions(self, refs: Sequence[PfnRef], state: str = QUEUED) -> list[int]:
        now = time.time()
        rows = [(r.guid, r.se, r.pfn, state, now, now) for r in refs]

        def run(q: _Sql) -> list[int]:
            sql = (
                "INSERT INTO pfn_deletions (guid, se, pfn, state, next_try, created) "
                "VALUES (?,?,?,?,?,?)"
            )
            return [q.insert(sql, row) for row in rows]

        return await self._write(run) if rows else []

    async def move_deletions(self, ids: Sequence[int], old: str, new: str) -> int:
        """Move the rows of *ids* that are in *old* to *new* (due at once); how many moved."""
        check_move(DELETION_MOVES, old, new)
        now = time.time()
        args = [(new, now, i, old) for i in ids]

        def run(q: _Sql) -> int:
            sql = "UPDATE pfn_deletions SET state=?, next_try=? WHERE id=? AND state=?"
            return sum(q.run(sql, a) for a in args)

        return await self._write(run) if args else 0

    async def drop_deletions(self, ids: Sequence[int]) -> int:
        """Forget rows: deleted on their SE, or held for a removal that did not happen."""
        args = [(i,) for i in ids]

        def run(q: _Sql) -> int:
            return sum(q.run("DELETE FROM pfn_deletions WHERE id=?", a) for a in args)

        return await self._write(run) if args else 0

    async def deletion_failed(
        self, row: Deletion, error: str, next_try: float, give_up: bool
    ) -> None:
        new = "FAILED" if give_up else QUEUED
        check_move(DELETION_MOVES, row.state, new)

        def run(q: _Sql) -> None:
            q.run(
                "UPDATE pfn_deletions SET state=?, attempts=attempts+1, next_try=?, error=? "
                "WHERE id=? AND state=?",
                (new, next_try, error[:500], row.id, row.state),
            )

        await self._write(run)

    async def due_deletions(self, now: float, limit: int) -> list[Deletion]:
        def run(q: _Sql) -> list[Deletion]:
            rows = q.rows(
                f"SELECT {DELETION_COLUMNS} FROM pfn_deletions WHERE state=? AND next_try<=? "
                "ORDER BY next_try, id LIMIT ?",
                (QUEUED, now, limit),
            )
            return [_deletion(r) for r in rows]

        return await self._read(run)

    async def held_before(self, before: float, limit: int) -> list[Deletion]:
        """Rows held since before *before*: their removal's process may have died."""

        def run(q: _Sql) -> list[Deletion]:
            rows = q.rows(
                f"SELECT {DELETION_COLUMNS} FROM pfn_deletions WHERE state=? AND created<? "
                "ORDER BY id LIMIT ?",
                (HELD, before, limit),
            )
            return [_deletion(r) for r in rows]

        return await self._read(run)

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
        return await self._read(lambda q: [_deletion(r) for r in q.rows(sql, args)])

    async def deletion_counts(self) -> dict[str, int]:
        sql = "SELECT state, count(*) FROM pfn_deletions GROUP BY state"
        return await self._read(lambda q: {k: int(v) for k, v in q.rows(sql)})

    # -- transfers
    async def add_transfer(self, t: Transfer) -> int:
        """Queue *t* (WAITING); AlreadyQueued if the same GUID is on its way to the same SE."""
        now = time.time()
        row = (
            t.lfn, t.guid, t.size, t.md5, t.user, t.destination, WAITING, t.max_attempts,
            t.remove_source, now, now, now,
        )  # fmt: skip
        lock = " FOR UPDATE" if self._mariadb else ""  # MariaDB: other processes wait

        def run(q: _Sql) -> int:
            found = q.rows(
                "SELECT id FROM transfers WHERE guid=? AND destination=? "
                "AND state IN ('WAITING', 'TRANSFERRING')" + lock,
                (t.guid, t.destination),
            )
            if found:
                raise AlreadyQueued(int(found[0][0]))
            return q.insert(
                "INSERT INTO transfers (lfn, guid, size, md5, user, destination, state, "
                "max_attempts, remove_source, created, updated, next_try) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )

        return await self._write(run)

    async def move_transfer(self, t: Transfer, new: str, **fields: Any) -> bool:
        """Compare-and-set *t* from its state to *new*, with *fields*; False when the row was
        no longer in t.state (killed meanwhile). *t* is updated when it moved."""
        check_move(TRANSFER_MOVES, t.state, new)
        fields = {"updated": time.time(), **fields, "state": new}
        sets = ", ".join(f"{k}=?" for k in fields)
        args = [*fields.values(), t.id, t.state]
        sql = f"UPDATE transfers SET {sets} WHERE id=? AND state=?"
        moved = await self._write(lambda q: bool(q.run(sql, args)))
        if moved:
            for key, value in fields.items():
                setattr(t, key, value)
        return moved

    async def recover_transfers(self, *, owner: str = "", stale_before: float = 0.0) -> int:
        """TRANSFERRING rows cut short wait again: those of *owner* (this jcentral's previous
        life, at its start) and those whose worker has not renewed its lease since
        *stale_before* (a jcentral that died, seen by another one sharing the queue)."""
        now = time.time()
        sets = "state=?, updated=?, next_try=?, reason='interrupted (its jcentral stopped)'"
        if owner:
            sql = f"UPDATE transfers SET {sets} WHERE state=? AND owner=?"
            args: tuple[Any, ...] = (WAITING, now, now, TRANSFERRING, owner)
        else:
            sql = f"UPDATE transfers SET {sets} WHERE state=? AND updated<?"
            args = (WAITING, now, now, TRANSFERRING, stale_before)
        return await self._write(lambda q: q.run(sql, args))

    async def renew_lease(self, ids: Sequence[int], owner: str) -> None:
        """The copies of *owner* in progress are alive (their ``updated`` is now)."""
        now = time.time()
        args = [(now, i, TRANSFERRING, owner) for i in ids]
        sql = "UPDATE transfers SET updated=? WHERE id=? AND state=? AND owner=?"
        if args:
            await self._write(lambda q: [q.run(sql, a) for a in args])

    async def get_transfer(self, transfer_id: int) -> Transfer | None:
        sql = f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id=?"
        rows = await self._read(lambda q: q.rows(sql, (transfer_id,)))
        return _transfer(rows[0]) if rows else None

    async def due_transfers(self, now: float, limit: int) -> list[Transfer]:
        sql = (
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE state=? AND next_try<=? "
            "ORDER BY id LIMIT ?"
        )
        rows = await self._read(lambda q: q.rows(sql, (WAITING, now, limit)))
        return [_transfer(r) for r in rows]

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
        return [_transfer(r) for r in await self._read(lambda q: q.rows(sql, args))]

    async def transfer_counts(self) -> dict[str, int]:
        sql = "SELECT state, count(*) FROM transfers GROUP BY state"
        return await self._read(lambda q: {k: int(v) for k, v in q.rows(sql)})


def is_active(state: str) -> bool:
    return state in ACTIVE
