"""What the jobs service asks of a task queue, whatever SQL is under it: the `TaskQueue`
protocol, its rows, and the one check every store makes inside its write transaction.

Stores: jalien.jobs.store.TaskQueueStore (SQLite, embedded) and
jalien.jobs.mariadb_store.MariaDBTaskQueue (MariaDB, at scale).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypedDict, Unpack

import msgspec

from jalien.jobs.states import JobState, check_transition
from jalien.loops import Pool
from jalien.wire.errors import EXIT_INVALID, EXIT_NOT_FOUND, RequestError

# the columns `touch` and `transition(fields=...)` may set
UPDATABLE = frozenset(
    {
        "site",
        "ce",
        "node",
        "started",
        "finished",
        "heartbeat",
        "exit_code",
        "error",
        "resubmits",
        "output_dir",
    }
)
# the states that count against a user's fair share
ACTIVE_STATES = ("ASSIGNED", "STARTED", "RUNNING", "SAVING")
TOKEN_LIVE_STATES = (*ACTIVE_STATES, "SAVED", "ZOMBIE")  # states.TOKEN_LIVE


class JobRow(msgspec.Struct, gc=False):
    id: int
    master: int
    user: str
    state: str
    jdl: str
    requirements: str
    packages: str  # comma separated
    ttl: int
    cores: int
    memory: int
    price: float
    site: str
    ce: str
    node: str
    submitted: int
    started: int
    finished: int
    heartbeat: int
    exit_code: int
    error: str
    resubmits: int
    split_index: int
    output_dir: str

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)


class NewJob(msgspec.Struct, kw_only=True):
    user: str
    jdl: str
    state: JobState = JobState.WAITING
    master: int = 0
    requirements: str = ""
    packages: str = ""
    ttl: int = 3600
    cores: int = 1
    memory: int = 0
    price: float = 1.0
    split_index: int = 0
    output_dir: str = ""


class Claim(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """An agent's claim on a WAITING job (``TaskQueue.claim``): ASSIGNED to it if still
    WAITING, with these fields and a trace line."""

    job_id: int
    # the next choices, in order, when job_id is not WAITING any more (another process
    # claimed it): the claim takes the first of them still WAITING and not taken by an
    # earlier claim of the same batch
    fallbacks: tuple[int, ...] = ()
    site: str = ""
    ce: str = ""
    node: str = ""
    heartbeat: int = 0  # the watchdog's clock starts at assignment
    message: str = ""


class NoSuchJob(RequestError):
    def __init__(self, job: int) -> None:
        super().__init__(f"No such job: {job}", EXIT_NOT_FOUND)


def now_ms() -> int:
    return int(time.time() * 1000)


def check_fields(fields: dict[str, Any]) -> None:
    if set(fields) - UPDATABLE:
        raise ValueError(f"cannot update {sorted(set(fields) - UPDATABLE)}")


def check_move(
    job_id: int,
    old: JobState,
    new: JobState,
    expect: frozenset[JobState] | None,
    force: bool,
) -> None:
    """Raise unless *job_id* may go from *old* to *new* (run where the row is locked)."""
    if expect is not None and old not in expect:
        raise RequestError(
            f"job {job_id} is {old.value}, not {'/'.join(sorted(s.value for s in expect))}",
            EXIT_INVALID,
        )
    if not force:
        check_transition(job_id, old, new)


class JobFilter(TypedDict, total=False):
    """A job query's filters (every one given must match): the keyword arguments of
    ``TaskQueue.query``, spelled once for the protocol and both stores."""

    user: str
    states: frozenset[JobState] | None
    site: str
    master: int | None
    ids: list[int] | None
    silent_since: int | None  # last heartbeat older than this (ms since the epoch)
    limit: int  # at most this many rows, newest first (default 2000)


def job_filter(column: dict[str, str], mark: str, query: JobFilter) -> tuple[str, list[Any]]:
    """The WHERE clause (with its arguments, the LIMIT's last) of a job query, for either
    store: *column* names the columns (user, state, site, master, id, heartbeat), *mark*
    the driver's placeholder."""
    where: list[str] = []
    args: list[Any] = []
    if user := query.get("user"):
        where.append(f"{column['user']}={mark}")
        args.append(user)
    if states := query.get("states"):
        where.append(f"{column['state']} IN ({','.join([mark] * len(states))})")
        args.extend(sorted(s.value for s in states))
    if site := query.get("site"):
        where.append(f"{column['site']}={mark}")
        args.append(site)
    if (master := query.get("master")) is not None:
        where.append(f"{column['master']}={mark}")
        args.append(master)
    if ids := query.get("ids"):
        where.append(f"{column['id']} IN ({','.join([mark] * len(ids))})")
        args.extend(ids)
    if (silent_since := query.get("silent_since")) is not None:  # the watchdog's question
        where.append(f"{column['heartbeat']}<{mark}")
        args.append(silent_since)
    args.append(query.get("limit", 2000))
    return (" WHERE " + " AND ".join(where) if where else ""), args


class TaskQueue(Protocol):
    """Jobs, their states and their trace. Every write is committed before it returns;
    a transition is checked against jalien.jobs.states where the job's row is locked, so
    of two racing transitions from the same state only one wins."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def pools(self) -> list[Pool]:
        """Its thread pools, for the role's registry (jalien.loops)."""
        ...

    async def insert(self, jobs: list[NewJob]) -> list[int]:
        """New jobs (one trace line each, "submitted"); their ids in order."""
        ...

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
        """Move a job to *new* (a legal move unless *force*; from one of *expect* if
        given), set *fields* (UPDATABLE) and trace it; the previous state and the new row.
        Raises NoSuchJob, IllegalTransition or RequestError (not in *expect*)."""
        ...

    async def claim(self, claims: list[Claim]) -> list[JobRow | None]:
        """WAITING -> ASSIGNED for each claim whose job (or else one of its fallbacks) is
        still WAITING, atomically in the database (whoever else claims the same job, from
        this process or another one, one claim wins); per claim the new row of the job it
        got (its ``id`` says which), or None (none left: claimed elsewhere, killed, gone).
        Concurrent calls may share one transaction (claims of several agents batched)."""
        ...

    async def waiting_ids_after(self, after: int, limit: int) -> list[int]:
        """The ids of WAITING jobs above *after*, in order, at most *limit* (the broker's
        refill: what other processes submitted; it reads the rows it lacks with
        ``waiting_rows``)."""
        ...

    async def waiting_ids(self) -> list[int]:
        """The ids of every WAITING job (the broker's resync)."""
        ...

    async def waiting_rows(self, ids: list[int]) -> list[JobRow]:
        """Those of *ids* that are WAITING, without their JDL."""
        ...

    async def touch(self, job_id: int, fields: dict[str, Any]) -> None:
        """Set UPDATABLE fields without a state change (heartbeats)."""
        ...

    async def get(self, job_id: int) -> JobRow: ...

    async def query(self, **query: Unpack[JobFilter]) -> list[JobRow]:
        """Jobs matching every filter given, newest first."""
        ...

    async def waiting(self) -> list[JobRow]:
        """Every WAITING job, oldest first (the broker's indexes at start-up)."""
        ...

    async def active_by_user(self) -> dict[str, int]:
        """user -> number of ASSIGNED/STARTED/RUNNING/SAVING jobs."""
        ...

    async def live_jobs(self) -> dict[int, str]:
        """job id -> user of every job whose token works (TOKEN_LIVE_STATES)."""
        ...

    async def trace(self, job_id: int) -> list[tuple[int, str, str]]:
        """(time ms, state, message) in the order written."""
        ...

    async def summary(self) -> dict[str, int]:
        """state -> number of jobs."""
        ...
