"""Where each job's agent is connected, and what other central services want pushed to it.

A JobAgent (through its VoBox) holds one connection to one jcentral; a user's ``kill`` or
``spy`` may arrive at another one. Both meet in the task queue's database (the shared
truth of every jcentral), in two tables:

- ``ROUTES`` (job id -> the central holding the agent's connection), written by a central
  when it matches the job and when the job's agent first reports to it after a failover;
- ``PUSHES`` (a queue per central): an event for a job's agent, or an answer for a central
  (a spy report), which the central named follows (``Router.step``, a loop of
  ``jalien.loops``) and delivers on the agent's connection it holds.

A central's name is unique per run (``central_name``): after a kill -9 its routes name a
central that is gone, and the pushes waiting for it move to the next central the job's
agent reports to (``claim``). Rows for a central that never comes back expire
(``PUSH_TTL``). The same tables live in a SQLite file of the home for the processes of one
host (``--workers``) sharing a SQLite task queue.

Costs: one multi-row statement per batch of matches (claims are batched, off the match's
path), one indexed SELECT per central per ``peer_poll_interval`` when idle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from jalien.loops import Loop, Pool
from jalien.sqlstore.sqlite import SQLiteStore

log = logging.getLogger("jalien.jobs.routes")

PUSH_TTL = 3600.0  # seconds a push waits for its central (or for the agent to show up)
ROUTE_TTL = 30 * 86400.0  # a route older than this (no job runs that long) is dropped
TAKE = 1000  # pushes taken per step

_SQLITE = """
CREATE TABLE IF NOT EXISTS routes (
    job_id INTEGER PRIMARY KEY, central TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pushes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, central TEXT NOT NULL, job_id INTEGER NOT NULL,
    topic TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pushes_central ON pushes (central, id);
CREATE INDEX IF NOT EXISTS pushes_job ON pushes (job_id);
"""

_MARIADB = [
    """CREATE TABLE IF NOT EXISTS ROUTES (
        job_id BIGINT NOT NULL PRIMARY KEY, central VARCHAR(128) NOT NULL,
        updated DOUBLE NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS PUSHES (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, central VARCHAR(128) NOT NULL,
        job_id BIGINT NOT NULL, topic VARCHAR(32) NOT NULL, payload TEXT NOT NULL,
        created DOUBLE NOT NULL, KEY central (central, id), KEY job (job_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]


class Pushed(NamedTuple):
    id: int
    job_id: int
    topic: str
    payload: dict[str, Any]


class Store(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def pools(self) -> list[Pool]: ...
    async def read(self, fn: Callable[[Any], Any]) -> Any: ...
    async def write(self, fn: Callable[[Any], Any]) -> Any: ...


def _rows(c: Any, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
    """Run *sql* (``%s`` placeholders) on a SQLite connection or a MySQL cursor."""
    if isinstance(c, sqlite3.Connection):
        return c.execute(sql.replace("%s", "?"), args).fetchall()
    c.execute(sql, args)
    return list(c.fetchall() or ())


def _marks(n: int) -> str:
    return ",".join(["%s"] * n)


class Routes:
    """The two tables on one database (SQLite file or MariaDB)."""

    def __init__(self, db: Store, *, upper: bool) -> None:
        self.db = db
        self.routes = "ROUTES" if upper else "routes"
        self.pushes = "PUSHES" if upper else "pushes"

    @classmethod
    def sqlite(cls, path: str | Path) -> Routes:
        return cls(SQLiteStore(path, _SQLITE, readers=1, name="routes"), upper=False)

    @classmethod
    def mariadb(cls, dsn: str) -> Routes:
        from jalien.sqlstore.mysql import MySQLStore

        return cls(MySQLStore(dsn, _MARIADB, readers=1, name="routes"), upper=True)

    async def start(self) -> None:
        await self.db.start()

    async def close(self) -> None:
        await self.db.close()

    def pools(self) -> list[Pool]:
        return self.db.pools()

    async def claim(self, central: str, job_ids: list[int]) -> None:
        """*central* holds these jobs' agents now; pushes waiting for them follow."""
        if not job_ids:
            return
        now = time.time()

        def run(c: Any) -> None:
            values = ",".join(["(%s,%s,%s)"] * len(job_ids))
            args: list[Any] = []
            for job_id in job_ids:
                args += (job_id, central, now)
            _rows(c, f"REPLACE INTO {self.routes} (job_id, central, updated) VALUES {values}", args)
            _rows(
                c,
                f"UPDATE {self.pushes} SET central=%s WHERE job_id IN ({_marks(len(job_ids))}) "
                "AND central <> %s AND topic IN ('kill', 'spy')",
                [central, *job_ids, central],
            )

        await self.db.write(run)

    async def forget(self, job_ids: list[int]) -> None:
        if job_ids:
            sql = f"DELETE FROM {self.routes} WHERE job_id IN ({_marks(len(job_ids))})"
            await self.db.write(lambda c: _rows(c, sql, job_ids))

    async def owner(self, job_id: int) -> str:
        """The central holding the job's agent, "" when none is known."""
        sql = f"SELECT central FROM {self.routes} WHERE job_id=%s"
        rows = await self.db.read(lambda c: _rows(c, sql, (job_id,)))
        return str(rows[0][0]) if rows else ""

    async def send(self, central: str, job_id: int, topic: str, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        sql = (
            f"INSERT INTO {self.pushes} (central, job_id, topic, payload, created) "
            "VALUES (%s,%s,%s,%s,%s)"
        )
        await self.db.write(lambda c: _rows(c, sql, (central, job_id, topic, text, time.time())))

    async def take(self, central: str, limit: int = TAKE) -> list[Pushed]:
        """The pushes waiting for *central*, oldest first, removed from the queue (each is
        delivered at most once). The idle case is one indexed read."""
        sql = (
            f"SELECT id, job_id, topic, payload FROM {self.pushes} WHERE central=%s "
            "ORDER BY id LIMIT %s"
        )
        rows = await self.db.read(lambda c: _rows(c, sql, (central, limit)))
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        delete = f"DELETE FROM {self.pushes} WHERE id IN ({_marks(len(ids))})"
        await self.db.write(lambda c: _rows(c, delete, ids))
        out = []
        for id_, job_id, topic, payload in rows:
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            if isinstance(body, dict):
                out.append(Pushed(int(id_), int(job_id), str(topic), body))
        return out

    async def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        pushes = f"DELETE FROM {self.pushes} WHERE created < %s"
        routes = f"DELETE FROM {self.routes} WHERE updated < %s"

        def run(c: Any) -> None:
            _rows(c, pushes, (now - PUSH_TTL,))
            _rows(c, routes, (now - ROUTE_TTL,))

        await self.db.write(run)


Handler = Callable[[int, dict[str, Any]], None]


class Router:
    """One central's side: what it holds (batched claims), what it sends to the others,
    and the loop that delivers what the others sent it (``handlers`` by topic)."""

    def __init__(self, routes: Routes, name: str) -> None:
        self.routes = routes
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self._claims: set[int] = set()
        self._forgets: set[int] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self.sent = self.received = 0

    # -- what this central holds
    def hold(self, job_id: int) -> None:
        """The job's agent is connected here now (written in the next batch)."""
        self._forgets.discard(job_id)
        self._claims.add(job_id)
        self._flush_soon()

    def release(self, job_id: int) -> None:
        """The job has ended: its route goes (in the next batch)."""
        self._claims.discard(job_id)
        self._forgets.add(job_id)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        while self._claims or self._forgets:
            claims, self._claims = sorted(self._claims), set()
            forgets, self._forgets = sorted(self._forgets), set()
            try:
                await self.routes.claim(self.name, claims)
                await self.routes.forget(forgets)
            except Exception as exc:  # the database away: kept for the next try
                log.warning("agent routes not written: %s", exc)
                self._claims.update(claims)
                self._forgets.update(f for f in forgets if f not in self._claims)
                return

    # -- to the others
    async def send_to_agent(self, job_id: int, topic: str, payload: dict[str, Any]) -> bool:
        """Queue an event for the job's agent at the central holding it; False when no
        other central is known to (this one, or none)."""
        owner = await self.routes.owner(job_id)
        if not owner or owner == self.name:
            return False
        await self.routes.send(owner, job_id, topic, payload)
        self.sent += 1
        return True

    async def send_to_central(
        self, central: str, job_id: int, topic: str, payload: dict[str, Any]
    ) -> None:
        await self.routes.send(central, job_id, topic, payload)
        self.sent += 1

    # -- from the others
    async def step(self) -> None:
        if self._claims or self._forgets:
            await self.flush()
        for pushed in await self.routes.take(self.name):
            handler = self.handlers.get(pushed.topic)
            self.received += 1
            if handler is None:
                log.info("push %s for job %d: no handler here", pushed.topic, pushed.job_id)
                continue
            try:
                handler(pushed.job_id, pushed.payload)
            except Exception:
                log.exception("push %s for job %d failed", pushed.topic, pushed.job_id)
        now = time.time()
        if now - self._last_prune > 600:
            self._last_prune = now
            await self.routes.prune(now)

    def loop(self, interval: float) -> Loop:
        return Loop("agent-routes", self.step, interval, logger=log)
