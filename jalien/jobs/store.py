"""The task queue on SQLite (embedded): jobs, their states and their trace; the
jalien.jobs.queue.TaskQueue protocol, as jalien.jobs.mariadb_store on MariaDB.

Every state change is checked against jalien.jobs.states inside the writer's transaction
(BEGIN IMMEDIATE: one writer for the whole file), so two racing updates cannot both win.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any, Unpack

from jalien.jobs.queue import (
    ACTIVE_STATES,
    TOKEN_LIVE_STATES,
    UPDATABLE,
    Claim,
    JobFilter,
    JobRow,
    NewJob,
    NoSuchJob,
    TaskQueue,
    check_fields,
    check_move,
    job_filter,
    now_ms,
)
from jalien.jobs.states import JobState
from jalien.loops import Pool
from jalien.sqlstore.sqlite import SQLiteStore

__all__ = ["UPDATABLE", "JobRow", "NewJob", "NoSuchJob", "TaskQueue", "TaskQueueStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    master INTEGER NOT NULL DEFAULT 0,
    user TEXT NOT NULL,
    state TEXT NOT NULL,
    jdl TEXT NOT NULL,
    requirements TEXT NOT NULL DEFAULT '',
    packages TEXT NOT NULL DEFAULT '',
    ttl INTEGER NOT NULL DEFAULT 3600,
    cores INTEGER NOT NULL DEFAULT 1,
    memory INTEGER NOT NULL DEFAULT 0,
    price REAL NOT NULL DEFAULT 1,
    site TEXT NOT NULL DEFAULT '',
    ce TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL DEFAULT '',
    submitted INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    heartbeat INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    resubmits INTEGER NOT NULL DEFAULT 0,
    split_index INTEGER NOT NULL DEFAULT 0,
    output_dir TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user, state);
CREATE INDEX IF NOT EXISTS jobs_master ON jobs (master);
CREATE TABLE IF NOT EXISTS trace (
    job INTEGER NOT NULL, time INTEGER NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_job ON trace (job);
"""

COLUMNS = (
    "id, master, user, state, jdl, requirements, packages, ttl, cores, memory, price, "
    "site, ce, node, submitted, started, finished, heartbeat, exit_code, error, "
    "resubmits, split_index, output_dir"
)

BROKER_COLUMNS = COLUMNS.replace("jdl,", "'' AS jdl,")  # the broker needs no JDL

SQLITE_COLUMNS = {
    "user": "user",
    "state": "state",
    "site": "site",
    "master": "master",
    "id": "id",
    "heartbeat": "heartbeat",
}


class TaskQueueStore:
    def __init__(self, path: str | Path) -> None:
        self._db = SQLiteStore(path, SCHEMA, name="taskqueue")

    async def start(self) -> None:
        await self._db.start()

    def pools(self) -> list[Pool]:
        return self._db.pools()

    async def close(self) -> None:
        await self._db.close()

    async def insert(self, jobs: list[NewJob]) -> list[int]:
        stamp = now_ms()

        def run(c: sqlite3.Connection) -> list[int]:
            ids = []
            for job in jobs:
                cur = c.execute(
                    "INSERT INTO jobs (master, user, state, jdl, requirements, packages, ttl, "
                    "cores, memory, price, submitted, split_index, output_dir) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.master,
                        job.user,
                        job.state.value,
                        job.jdl,
                        job.requirements,
                        job.packages,
                        job.ttl,
                        job.cores,
                        job.memory,
                        job.price,
                        stamp,
                        job.split_index,
                        job.output_dir,
                    ),
                )
                job_id = int(cur.lastrowid or 0)
                ids.append(job_id)
                c.execute(
                    "INSERT INTO trace VALUES (?,?,?,?)",
                    (job_id, stamp, job.state.value, "submitted"),
                )
            return ids

        return await self._db.write(run)

    async def transition(
        self,
        job_id: int,
        new: JobState,
        *,
        expect: frozenset[JobState] | None = None,
        fields: dict[str, Any] | None = None,
        message: str = "",
        force: bool = False,
    ) -> tuple[JobState, JobRow]:
        """See TaskQueue.transition."""
        fields = dict(fields or {})
        check_fields(fields)
        stamp = now_ms()

        def run(c: sqlite3.Connection) -> tuple[JobState, JobRow]:
            row = c.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise NoSuchJob(job_id)
            old = JobState(row[0])
            check_move(job_id, old, new, expect, force)
            sets = ["state=?"] + [f"{k}=?" for k in fields]
            c.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id=?",
                (new.value, *fields.values(), job_id),
            )
            c.execute("INSERT INTO trace VALUES (?,?,?,?)", (job_id, stamp, new.value, message))
            updated = c.execute(f"SELECT {COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
            return old, JobRow(*updated)

        return await self._db.write(run)

    async def claim(self, claims: list[Claim]) -> list[JobRow | None]:
        """See TaskQueue.claim: a compare-and-set UPDATE per claim (and per fallback tried)
        in the writer's transaction (the writer's group commit batches concurrent ones)."""
        if not claims:
            return []
        stamp = now_ms()

        def run(c: sqlite3.Connection) -> list[JobRow | None]:
            def take(job_id: int, claim: Claim) -> bool:
                cur = c.execute(
                    "UPDATE jobs SET state='ASSIGNED', site=?, ce=?, node=?, heartbeat=? "
                    "WHERE id=? AND state='WAITING'",
                    (claim.site, claim.ce, claim.node, claim.heartbeat, job_id),
                )
                if cur.rowcount != 1:
                    return False
                c.execute(
                    "INSERT INTO trace VALUES (?,?,?,?)", (job_id, stamp, "ASSIGNED", claim.message)
                )
                return True

            # first choices first, then the fallbacks in order (as on MariaDB)
            got: list[int | None] = [cl.job_id if take(cl.job_id, cl) else None for cl in claims]
            for k, claim in enumerate(claims):
                if got[k] is None:
                    got[k] = next((j for j in claim.fallbacks if take(j, claim)), None)
            out: list[JobRow | None] = []
            for job_id in got:
                row = None
                if job_id is not None:
                    row = c.execute(f"SELECT {COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
                out.append(None if row is None else JobRow(*row))
            return out

        return await self._db.write(run)

    async def waiting_ids_after(self, after: int, limit: int) -> list[int]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT id FROM jobs WHERE state='WAITING' AND id>? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [job for (job,) in rows]

    async def waiting_ids(self) -> list[int]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT id FROM jobs WHERE state='WAITING'").fetchall()
        )
        return [job for (job,) in rows]

    async def waiting_rows(self, ids: list[int]) -> list[JobRow]:
        def run(c: sqlite3.Connection) -> list[tuple]:
            out: list[tuple] = []
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                out += c.execute(
                    f"SELECT {BROKER_COLUMNS} FROM jobs WHERE state='WAITING' AND id IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                ).fetchall()
            return out

        return list(itertools.starmap(JobRow, await self._db.read(run))) if ids else []

    async def touch(self, job_id: int, fields: dict[str, Any]) -> None:
        check_fields(fields)
        sets = ", ".join(f"{k}=?" for k in fields)
        await self._db.write(
            lambda c: (
                c.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id)).rowcount
            )
        )

    async def get(self, job_id: int) -> JobRow:
        row = await self._db.read(
            lambda c: c.execute(f"SELECT {COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        )
        if row is None:
            raise NoSuchJob(job_id)
        return JobRow(*row)

    async def query(self, **query: Unpack[JobFilter]) -> list[JobRow]:
        where, args = job_filter(SQLITE_COLUMNS, "?", query)
        sql = f"SELECT {COLUMNS} FROM jobs{where}"
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return list(itertools.starmap(JobRow, rows))

    async def waiting(self) -> list[JobRow]:
        """Every WAITING job, to build the broker's indexes at start-up."""
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE state='WAITING' ORDER BY id"
            ).fetchall()
        )
        return list(itertools.starmap(JobRow, rows))

    async def active_by_user(self) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT user, COUNT(*) FROM jobs WHERE state IN ({','.join('?' * 4)}) "
                "GROUP BY user",
                ACTIVE_STATES,
            ).fetchall()
        )
        return dict(rows)

    async def live_jobs(self) -> dict[int, str]:
        marks = ",".join("?" * len(TOKEN_LIVE_STATES))
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT id, user FROM jobs WHERE state IN ({marks})", TOKEN_LIVE_STATES
            ).fetchall()
        )
        return dict(rows)

    async def trace(self, job_id: int) -> list[tuple[int, str, str]]:
        return await self._db.read(
            lambda c: c.execute(
                "SELECT time, state, message FROM trace WHERE job=? ORDER BY rowid", (job_id,)
            ).fetchall()
        )

    async def summary(self) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        )
        return dict(rows)
