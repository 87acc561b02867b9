"""The task queue on MariaDB (one server), for a grid's worth of jobs; the
jalien.jobs.queue.TaskQueue protocol, as jalien.jobs.store does on SQLite.

Tables, after AliEn's QUEUE / QUEUEJDL / QUEUETRACE:
- ``QUEUE``: one narrow row per job (no JDL), keyed by ``queueId`` (AUTO_INCREMENT);
  indexes on state (the broker's start-up scan, ``top``), (user, state) (``ps`` by user,
  fair share), master (subjobs) and (site, state) (``ps -s``). InnoDB appends the key to
  every secondary index, so "state = WAITING ORDER BY queueId" reads the index in order.
- ``QUEUEJDL``: the JDL text by ``queueId``, read only with a job's whole row.
- ``QUEUETRACE``: the trace, ``traceId`` AUTO_INCREMENT keeps the order written; an index
  on (queueId, traceId) reads one job's trace in order.
Text columns are utf8mb4 with a binary collation: names compare case-sensitively, as in
SQLite.

Writes run on jalien.sqlstore.mysql's writer thread, group-committed. A transition reads
the job's row with ``SELECT ... FOR UPDATE`` (a row lock held until COMMIT), checks the
move against jalien.jobs.states, updates and traces it in the same transaction: two
racing transitions, from this process or another one on the same database, are
serialised by the lock, and the second one sees the first one's state. A batch of jobs is
inserted with multi-row INSERTs; their ids are consecutive when innodb_autoinc_lock_mode
is 0 or 1 (the default), and the store inserts row by row under mode 2 (interleaved).

Matching claims jobs without a transition per job (``claim``): the claims of every agent
that asked meanwhile go into one operation of the writer's transaction - one
``SELECT ... FOR UPDATE`` of the claimed rows still WAITING, one UPDATE of those (per-row
site/ce/node by CASE), one multi-row INSERT of their traces - so a batch of N matches costs
three statements and a share of one COMMIT. The database decides: a job claimed by another
process (another jcentral, on this server or on another Galera node) is not WAITING any
more here and its claim gets None. On Galera a conflicting commit on another node shows as
a deadlock (1213, certification failure) at COMMIT: the writer runs the batch again and
the claims that lost see the winner's state.

Limits: one server (the queue is not sharded; AliEn's QUEUEARCHIVE for ended jobs is not
done); a transition costs three statements in the writer's transaction, so a process's
sequential transitions are bound by round trips and commit latency, concurrent ones share
commits; a connection lost during COMMIT fails that batch's writes (outcome unknown).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from typing import Any, Unpack

import msgspec
from msgspec.structs import replace

from jalien.jobs.queue import (
    ACTIVE_STATES,
    TOKEN_LIVE_STATES,
    Claim,
    JobFilter,
    JobRow,
    NewJob,
    NoSuchJob,
    check_fields,
    check_move,
    job_filter,
    now_ms,
)
from jalien.jobs.states import JobState
from jalien.loops import Pool
from jalien.sqlstore.mysql import MySQLStore, is_deadlock

TEXT = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS QUEUE (
        queueId BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        master BIGINT NOT NULL DEFAULT 0,
        user VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL,
        requirements TEXT NOT NULL,
        packages TEXT NOT NULL,
        ttl INT NOT NULL DEFAULT 3600,
        cores INT NOT NULL DEFAULT 1,
        memory BIGINT NOT NULL DEFAULT 0,
        price DOUBLE NOT NULL DEFAULT 1,
        site VARCHAR(255) NOT NULL DEFAULT '',
        ce VARCHAR(255) NOT NULL DEFAULT '',
        node VARCHAR(255) NOT NULL DEFAULT '',
        submitted BIGINT NOT NULL DEFAULT 0,
        started BIGINT NOT NULL DEFAULT 0,
        finished BIGINT NOT NULL DEFAULT 0,
        heartbeat BIGINT NOT NULL DEFAULT 0,
        exit_code INT NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        resubmits INT NOT NULL DEFAULT 0,
        split_index INT NOT NULL DEFAULT 0,
        output_dir TEXT NOT NULL DEFAULT '',
        KEY state (state),
        KEY user_state (user, state),
        KEY master (master),
        KEY site_state (site, state)) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS QUEUEJDL (
        queueId BIGINT NOT NULL PRIMARY KEY,
        jdl MEDIUMTEXT NOT NULL) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS QUEUETRACE (
        traceId BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        queueId BIGINT NOT NULL,
        time BIGINT NOT NULL,
        state VARCHAR(16) NOT NULL,
        message TEXT NOT NULL,
        KEY job (queueId, traceId)) {TEXT}""",
]

# JobRow's fields in order (rows convert positionally)
COLUMNS = (
    "q.queueId, q.master, q.user, q.state, j.jdl, q.requirements, q.packages, q.ttl, "
    "q.cores, q.memory, q.price, q.site, q.ce, q.node, q.submitted, q.started, q.finished, "
    "q.heartbeat, q.exit_code, q.error, q.resubmits, q.split_index, q.output_dir"
)
FROM = "QUEUE q JOIN QUEUEJDL j ON j.queueId = q.queueId"
INSERT = (
    "INSERT INTO QUEUE (master, user, state, requirements, packages, ttl, cores, memory, "
    "price, submitted, split_index, output_dir) VALUES "
)
ROW = "(" + ",".join(["%s"] * 12) + ")"
INSERT_ROWS = 500  # rows per multi-row INSERT


MARIADB_COLUMNS = {
    "user": "q.user",
    "state": "q.state",
    "site": "q.site",
    "master": "q.master",
    "id": "q.queueId",
    "heartbeat": "q.heartbeat",
}


class MariaDBTaskQueueConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """jcentral's [taskqueue_mariadb] table."""

    dsn: str  # mysql://user:password@host:port/database[?unix_socket=path]
    readers: int = 2  # reader threads, each with its connection


def _rows(cur: Any) -> list[JobRow]:
    return list(itertools.starmap(JobRow, cur.fetchall()))


# a waiting job's row for the broker (no JDL: it is read with the claim)
BROKER_COLUMNS = COLUMNS.replace("j.jdl", "''")
CLAIM_CHUNK = 500  # ids per statement of a claim batch
CLAIM_RETRIES = 20  # a batch deadlocked even after the writer's retries: claimed again


class _ClaimBatch:
    """Claims gathered while the previous batch is in the writer: one operation."""

    __slots__ = ("claims", "task")

    def __init__(self) -> None:
        self.claims: list[Claim] = []
        self.task: asyncio.Future[list[JobRow | None]] | None = None


def _lock_waiting(cur: Any, ids: list[int], found: dict[int, JobRow]) -> None:
    """The rows of *ids* still WAITING, locked until the transaction ends, into *found*."""
    for i in range(0, len(ids), CLAIM_CHUNK):
        chunk = ids[i : i + CLAIM_CHUNK]
        cur.execute(
            f"SELECT {COLUMNS} FROM {FROM} WHERE q.queueId IN ({','.join(['%s'] * len(chunk))}) "
            "AND q.state='WAITING' FOR UPDATE",
            chunk,
        )
        for row in _rows(cur):
            found[row.id] = row


def _claim_rows(cur: Any, claims: list[Claim]) -> list[JobRow | None]:
    """The claims of one batch, in the writer's transaction (run again whole after a
    deadlock or a Galera certification failure: it reads the state each time). Each claim
    gets its first choice if still WAITING, else (a second pass, which reads the fallbacks'
    rows only then) the first of its fallbacks still WAITING that no claim of the batch
    took."""
    found: dict[int, JobRow] = {}
    _lock_waiting(cur, list(dict.fromkeys(c.job_id for c in claims)), found)
    got: list[int | None] = [None] * len(claims)
    won: dict[int, Claim] = {}  # job id -> the claim that got it
    for k, claim in enumerate(claims):  # first choices first (a broker offers each once)
        if claim.job_id in found and claim.job_id not in won:
            won[claim.job_id], got[k] = claim, claim.job_id
    left = [k for k, job_id in enumerate(got) if job_id is None and claims[k].fallbacks]
    if left:  # only then the fallbacks' rows: one central alone never reads them
        wanted = dict.fromkeys(j for k in left for j in claims[k].fallbacks if j not in found)
        _lock_waiting(cur, list(wanted), found)
        for k in left:
            for job_id in claims[k].fallbacks:
                if job_id in found and job_id not in won:
                    won[job_id], got[k] = claims[k], job_id
                    break
    if won:
        stamp = now_ms()
        winners = list(won.items())
        for i in range(0, len(winners), CLAIM_CHUNK):
            part = winners[i : i + CLAIM_CHUNK]
            marks = ",".join(["%s"] * len(part))
            cases, args = [], []
            for column in ("site", "ce", "node", "heartbeat"):
                cases.append(f"{column}=CASE queueId {'WHEN %s THEN %s ' * len(part)}END")
                for job_id, c in part:
                    args += [job_id, getattr(c, column)]
            cur.execute(
                f"UPDATE QUEUE SET state='ASSIGNED', {', '.join(cases)} "
                f"WHERE queueId IN ({marks}) AND state='WAITING'",
                [*args, *(job_id for job_id, _ in part)],
            )
            if cur.rowcount != len(part):  # the rows were locked: cannot happen
                raise RuntimeError(f"claimed {cur.rowcount} of {len(part)} locked jobs")
            cur.execute(
                "INSERT INTO QUEUETRACE (queueId, time, state, message) VALUES "
                + ",".join(["(%s,%s,'ASSIGNED',%s)"] * len(part)),
                [v for job_id, c in part for v in (job_id, stamp, c.message)],
            )
    out: list[JobRow | None] = []
    for claim, taken in zip(claims, got, strict=True):
        if taken is None:
            out.append(None)
            continue
        out.append(
            replace(
                found[taken],
                state="ASSIGNED",
                site=claim.site,
                ce=claim.ce,
                node=claim.node,
                heartbeat=claim.heartbeat,
            )
        )
    return out


class MariaDBTaskQueue:
    """The task queue in the database of *dsn* (mysql://user:password@host:port/db)."""

    def __init__(self, dsn: str, *, readers: int = 2) -> None:
        self._db = MySQLStore(dsn, SCHEMA, readers=readers, name="taskqueue")
        self._consecutive_ids = True
        self._id_step = 1
        self._claims_lock = threading.Lock()
        self._open: _ClaimBatch | None = None  # the batch not yet taken by the writer

    async def start(self) -> None:
        await self._db.start()

        def settings(cur: Any) -> tuple[int, int]:
            cur.execute("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment")
            return cur.fetchone()

        mode, step = await self._db.read(settings)
        self._consecutive_ids = int(mode) in (0, 1)
        self._id_step = int(step)

    def pools(self) -> list[Pool]:
        return self._db.pools()

    async def close(self) -> None:
        await self._db.close()

    async def insert(self, jobs: list[NewJob]) -> list[int]:
        stamp = now_ms()
        values = [
            (
                job.master,
                job.user,
                job.state.value,
                job.requirements,
                job.packages,
                job.ttl,
                job.cores,
                job.memory,
                job.price,
                stamp,
                job.split_index,
                job.output_dir,
            )
            for job in jobs
        ]
        per_statement = INSERT_ROWS if self._consecutive_ids else 1
        step = self._id_step

        def run(cur: Any) -> list[int]:
            ids: list[int] = []
            for i in range(0, len(values), per_statement):
                chunk = values[i : i + per_statement]
                cur.execute(
                    INSERT + ",".join([ROW] * len(chunk)), [v for row in chunk for v in row]
                )
                first = int(cur.lastrowid)  # LAST_INSERT_ID(): the chunk's first id
                ids.extend(first + k * step for k in range(len(chunk)))
            cur.executemany(
                "INSERT INTO QUEUEJDL (queueId, jdl) VALUES (%s, %s)",
                [(job_id, job.jdl) for job_id, job in zip(ids, jobs, strict=True)],
            )
            cur.executemany(
                "INSERT INTO QUEUETRACE (queueId, time, state, message) "
                "VALUES (%s, %s, %s, 'submitted')",
                [(job_id, stamp, job.state.value) for job_id, job in zip(ids, jobs, strict=True)],
            )
            return ids

        if not jobs:
            return []
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
        """See TaskQueue.transition: checked under the row's lock (SELECT ... FOR UPDATE)."""
        fields = dict(fields or {})
        check_fields(fields)
        stamp = now_ms()
        sets = ", ".join(["state=%s", *(f"{k}=%s" for k in fields)])

        def run(cur: Any) -> tuple[JobState, JobRow]:
            cur.execute(f"SELECT {COLUMNS} FROM {FROM} WHERE q.queueId=%s FOR UPDATE", (job_id,))
            found = cur.fetchone()
            if found is None:
                raise NoSuchJob(job_id)
            row = JobRow(*found)
            old = JobState(row.state)
            check_move(job_id, old, new, expect, force)
            cur.execute(
                f"UPDATE QUEUE SET {sets} WHERE queueId=%s", (new.value, *fields.values(), job_id)
            )
            cur.execute(
                "INSERT INTO QUEUETRACE (queueId, time, state, message) VALUES (%s, %s, %s, %s)",
                (job_id, stamp, new.value, message),
            )
            return old, replace(row, state=new.value, **fields)

        return await self._db.write(run)

    async def claim(self, claims: list[Claim]) -> list[JobRow | None]:
        """See TaskQueue.claim: claims made while a batch waits for the writer join it. A
        batch that still deadlocks after the writer's own retries (Galera: another node
        committed the same rows first, again and again) is claimed again after a short
        random pause, up to CLAIM_RETRIES times: it then sees the winners' rows."""
        for attempt in range(CLAIM_RETRIES):
            try:
                return await self._claim_once(claims)
            except Exception as exc:
                if not is_deadlock(exc) or attempt == CLAIM_RETRIES - 1:
                    raise
            await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")

    async def _claim_once(self, claims: list[Claim]) -> list[JobRow | None]:
        if not claims:
            return []
        with self._claims_lock:
            batch = self._open
            if batch is None:
                batch = self._open = _ClaimBatch()
            first = len(batch.claims)
            batch.claims.extend(claims)
        if batch.task is None:

            def run(cur: Any) -> list[JobRow | None]:
                with self._claims_lock:  # later claims make a new batch
                    if self._open is batch:
                        self._open = None
                    taken = list(batch.claims)
                return _claim_rows(cur, taken)

            batch.task = asyncio.ensure_future(self._db.write(run))
        rows = await asyncio.shield(batch.task)
        return rows[first : first + len(claims)]

    async def waiting_ids_after(self, after: int, limit: int) -> list[int]:
        def run(cur: Any) -> list[int]:
            cur.execute(
                "SELECT queueId FROM QUEUE WHERE state='WAITING' AND queueId > %s "
                "ORDER BY queueId LIMIT %s",
                (after, limit),
            )
            return [int(job) for (job,) in cur.fetchall()]

        return await self._db.read(run)

    async def waiting_ids(self) -> list[int]:
        def run(cur: Any) -> list[int]:
            cur.execute("SELECT queueId FROM QUEUE WHERE state='WAITING'")
            return [int(job) for (job,) in cur.fetchall()]

        return await self._db.read(run)

    async def waiting_rows(self, ids: list[int]) -> list[JobRow]:
        def run(cur: Any) -> list[JobRow]:
            out: list[JobRow] = []
            for i in range(0, len(ids), CLAIM_CHUNK):
                chunk = ids[i : i + CLAIM_CHUNK]
                cur.execute(
                    f"SELECT {BROKER_COLUMNS} FROM QUEUE q WHERE q.state='WAITING' AND "
                    f"q.queueId IN ({','.join(['%s'] * len(chunk))}) ORDER BY q.queueId",
                    chunk,
                )
                out += _rows(cur)
            return out

        return await self._db.read(run) if ids else []

    async def touch(self, job_id: int, fields: dict[str, Any]) -> None:
        check_fields(fields)
        if not fields:
            return
        sets = ", ".join(f"{k}=%s" for k in fields)
        await self._db.write(
            lambda cur: cur.execute(
                f"UPDATE QUEUE SET {sets} WHERE queueId=%s", (*fields.values(), job_id)
            )
        )

    async def get(self, job_id: int) -> JobRow:
        def run(cur: Any) -> tuple | None:
            cur.execute(f"SELECT {COLUMNS} FROM {FROM} WHERE q.queueId=%s", (job_id,))
            return cur.fetchone()

        row = await self._db.read(run)
        if row is None:
            raise NoSuchJob(job_id)
        return JobRow(*row)

    async def query(self, **query: Unpack[JobFilter]) -> list[JobRow]:
        where, args = job_filter(MARIADB_COLUMNS, "%s", query)
        sql = f"SELECT {COLUMNS} FROM {FROM}{where}"
        sql += " ORDER BY q.queueId DESC LIMIT %s"

        def run(cur: Any) -> list[JobRow]:
            cur.execute(sql, args)
            return _rows(cur)

        return await self._db.read(run)

    async def waiting(self) -> list[JobRow]:
        def run(cur: Any) -> list[JobRow]:
            cur.execute(f"SELECT {COLUMNS} FROM {FROM} WHERE q.state='WAITING' ORDER BY q.queueId")
            return _rows(cur)

        return await self._db.read(run)

    async def active_by_user(self) -> dict[str, int]:
        def run(cur: Any) -> dict[str, int]:
            cur.execute(
                "SELECT user, COUNT(*) FROM QUEUE WHERE state IN (%s,%s,%s,%s) GROUP BY user",
                ACTIVE_STATES,
            )
            return {user: int(n) for user, n in cur.fetchall()}

        return await self._db.read(run)

    async def live_jobs(self) -> dict[int, str]:
        def run(cur: Any) -> dict[int, str]:
            marks = ",".join(["%s"] * len(TOKEN_LIVE_STATES))
            cur.execute(
                f"SELECT queueId, user FROM QUEUE WHERE state IN ({marks})", TOKEN_LIVE_STATES
            )
            return {int(job): user for job, user in cur.fetchall()}

        return await self._db.read(run)

    async def trace(self, job_id: int) -> list[tuple[int, str, str]]:
        def run(cur: Any) -> list[tuple[int, str, str]]:
            cur.execute(
                "SELECT time, state, message FROM QUEUETRACE WHERE queueId=%s ORDER BY traceId",
                (job_id,),
            )
            return [tuple(r) for r in cur.fetchall()]

        return await self._db.read(run)

    async def summary(self) -> dict[str, int]:
        def run(cur: Any) -> dict[str, int]:
            cur.execute("SELECT state, COUNT(*) FROM QUEUE GROUP BY state")
            return {state: int(n) for state, n in cur.fetchall()}

        return await self._db.read(run)
