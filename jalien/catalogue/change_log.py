"""Cache coherence between the hosts of a shared catalogue: a change log the others follow.

Each host keeps the catalogue's ``find`` and ``whereis`` answers in its own LMDB cache
(shared by the jcentral processes of that host, which drop what their writes cover). A
write on one host must reach the caches of the others too: every catalogue write appends
the paths it touched to ``CHANGELOG`` in the catalogue's index database - on MariaDB in the
write's own transaction when it commits on the index host (``PENDING``, read by the
backend), else right after its commit; either way before the write is acknowledged - and
every host follows the log (``Follower.step``, a
loop of ``jalien.loops`` every ``peer_poll_interval`` seconds), dropping what the others'
changes cover from its cache. A write acknowledged to its client is therefore out of every
other host's cache within one poll interval and a read (measured by
tests/integration/test_multicentral.py, its cost by bench/bench_multicentral.py).

Ordering: sequence numbers are AUTO_INCREMENT, which on MariaDB is neither gap-free nor in
commit order (concurrent transactions, Galera's auto_increment_increment). A follower
therefore reads every row above its floor and remembers the ones it applied; the floor
moves past a row once that row is older than ``MARGIN`` seconds, by when every row with a
lower number has been committed too. A follower that starts (or falls behind the log's
pruning: no step for half of ``KEEP``) cannot know what it missed: it drops the catalogue's
whole cache once.

An answer a host computed from the database just before another host's write committed
and put just after its follower applied that write is not kept: the follower's
invalidation goes through the cache's generations (``cache.typed.TypedCache``), which refuse
a put whose lookup started before an invalidation that covers it.
"""

from __future__ import annotations

import contextvars
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jalien.loops import Loop, Pool
from jalien.sqlstore.sqlite import SQLiteStore

log = logging.getLogger("jalien.catalogue.changes")

MARGIN = 5.0  # seconds after which no row with a lower number can still appear
KEEP = 3600.0  # seconds a change stays in the log
READ = 10_000  # rows read per step

_SQLITE = """
CREATE TABLE IF NOT EXISTS changelog (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, paths TEXT NOT NULL,
    created REAL NOT NULL
);
"""

_MARIADB = [
    """CREATE TABLE IF NOT EXISTS CHANGELOG (
        seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, origin VARCHAR(255) NOT NULL,
        paths MEDIUMTEXT NOT NULL, created DOUBLE NOT NULL, KEY created (created)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
]


@dataclass
class Pending:
    """The change of one catalogue write (``Catalogue._writing``), while it runs: a backend
    that commits the write on the log's own server adds the row in the write's transaction
    (``logged``); otherwise it is logged after the commit."""

    origin: str
    paths: str  # one a line
    table: str
    logged: bool = False

    def row(self) -> tuple[str, tuple[str, str, float]]:
        """The INSERT (``%s`` placeholders) and its arguments, stamped now."""
        sql = f"INSERT INTO {self.table} (origin, paths, created) VALUES (%s,%s,%s)"
        return sql, (self.origin, self.paths, time.time())


# the change of the catalogue write this task is running, for the backend (None: none)
PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "jalien_catalogue_change", default=None
)


class Store(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def pools(self) -> list[Pool]: ...
    async def read(self, fn: Callable[[Any], Any]) -> Any: ...
    async def write(self, fn: Callable[[Any], Any]) -> Any: ...


class Invalidating(Protocol):
    def invalidate(self, path: str) -> None: ...


def _rows(c: Any, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
    if isinstance(c, sqlite3.Connection):
        return c.execute(sql.replace("%s", "?"), args).fetchall()
    c.execute(sql, args)
    return list(c.fetchall() or ())


class ChangeLog:
    """The log on the catalogue's index database (MariaDB) or a SQLite file (tests)."""

    def __init__(self, db: Store, origin: str, *, upper: bool) -> None:
        self.db = db
        self.origin = origin
        self.table = "CHANGELOG" if upper else "changelog"
        self.appended = 0  # rows written by this process

    @classmethod
    def sqlite(cls, path: str | Path, origin: str) -> ChangeLog:
        return cls(SQLiteStore(path, _SQLITE, readers=1, name="changelog"), origin, upper=False)

    @classmethod
    def mariadb(cls, dsn: str, origin: str) -> ChangeLog:
        from jalien.sqlstore.mysql import MySQLStore

        return cls(MySQLStore(dsn, _MARIADB, readers=1, name="changelog"), origin, upper=True)

    async def start(self) -> None:
        await self.db.start()

    async def close(self) -> None:
        await self.db.close()

    def pools(self) -> list[Pool]:
        return self.db.pools()

    def pending(self, paths: Iterable[str]) -> Pending | None:
        """The change of a write at *paths* about to run (None: nothing to log)."""
        text = "\n".join(p for p in paths if p and "\n" not in p)
        return Pending(self.origin, text, self.table) if text else None

    async def note(self, paths: Iterable[str] | Pending) -> None:
        """A committed write at *paths* whose change is not in the log yet (the catalogue
        calls this from ``_writing``); the store's writer commits concurrent notes together."""
        pending = paths if isinstance(paths, Pending) else self.pending(paths)
        if pending is None:
            return
        sql, args = pending.row()
        await self.db.write(lambda c: _rows(c, sql, args))
        self.appended += 1

    async def after(self, floor: int, limit: int = READ) -> list[tuple[int, str, str, float]]:
        sql = (
            f"SELECT seq, origin, paths, created FROM {self.table} WHERE seq > %s "
            "ORDER BY seq LIMIT %s"
        )
        rows = await self.db.read(lambda c: _rows(c, sql, (floor, limit)))
        return [(int(s), str(o), str(p), float(t)) for s, o, p, t in rows]

    async def bounds(self) -> tuple[int, int]:
        """The lowest and highest sequence numbers in the log (0, 0 when empty)."""
        sql = f"SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM {self.table}"
        rows = await self.db.read(lambda c: _rows(c, sql))
        return int(rows[0][0]), int(rows[0][1])

    async def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        sql = f"DELETE FROM {self.table} WHERE created < %s"
        await self.db.write(lambda c: _rows(c, sql, (now - KEEP,)))


class Follower:
    """One host's reader of the log: the others' changes dropped from *cache*."""

    def __init__(self, log_: ChangeLog, cache: Invalidating, *, margin: float = MARGIN) -> None:
        self.log = log_
        self.cache = cache
        self.margin = margin
        self.floor: int | None = None  # every change numbered <= floor is applied
        self._seen: dict[int, float] = {}  # applied changes above the floor -> created
        self._last_prune = 0.0
        self._last_ok = 0.0  # when a step last read the log
        self.applied = 0  # the others' changes applied
        self.paths = 0  # paths invalidated
        self.rows_read = 0

    async def step(self) -> None:
        now = time.time()
        if self.floor is not None and now - self._last_ok > KEEP / 2:
            self.floor = None  # not followed for so long that pruned rows may be missed
        first = self.floor is None
        if self.floor is None:
            _, high = await self.log.bounds()
            # what happened before we followed is unknown: the catalogue's cache goes once,
            # and the rows there are now count as applied
            self.cache.invalidate("/")
            self.floor = max(0, high - READ)
            self._seen = {}
        rows = await self.log.after(self.floor)
        self.rows_read += len(rows)
        for seq, origin, paths, created in rows:
            if seq in self._seen:
                continue
            self._seen[seq] = created
            if first or origin == self.log.origin:
                continue
            for path in paths.split("\n"):
                if path:
                    self.cache.invalidate(path)
                    self.paths += 1
            self.applied += 1
        settled = time.time() - self.margin
        old = [seq for seq, created in self._seen.items() if created < settled]
        if old:
            top = max(old)
            self.floor = max(self.floor, top)
            self._seen = {s: t for s, t in self._seen.items() if s > self.floor}
        self._last_ok = now
        if now - self._last_prune > 600:
            self._last_prune = now
            await self.log.prune(now)

    def loop(self, interval: float) -> Loop:
        return Loop("cache-coherence", self.step, interval, logger=log)
