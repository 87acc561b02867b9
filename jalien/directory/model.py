"""What the central configuration holds, as one immutable snapshot (msgspec Structs, so
that it travels through the shared cache and the last-good file as MessagePack)."""

from __future__ import annotations

from typing import TypeVar

import msgspec

OPEN, CLOSED = "open", "closed"
CE_STATES = (OPEN, CLOSED)


class DirectoryError(Exception):
    """The configuration could not be read or changed; the text says where and why."""


class FileQuota(msgspec.Struct, frozen=True, kw_only=True):
    """JAliEn's FQUOTAS limits of one user (0: the grid's default)."""

    max_total_size: int = 0  # bytes
    max_nb_files: int = 0


class JobQuota(msgspec.Struct, frozen=True, kw_only=True):
    """JAliEn's job quota of one user (0: the grid's default)."""

    max_unfinished_jobs: int = 0  # waiting + running
    max_waiting_jobs: int = 0
    max_parallel_jobs: int = 0  # running at once
    max_total_cpu_cost: int = 0  # CPU seconds in the last 24 h
    max_total_running_time: int = 0  # wall seconds in the last 24 h


# the limits of a user whose entry names none (a directory without quotas works)
DEFAULT_FILE_QUOTA = FileQuota(max_total_size=1 << 40, max_nb_files=1_000_000)
DEFAULT_JOB_QUOTA = JobQuota(
    max_unfinished_jobs=1_000_000,
    max_waiting_jobs=1_000_000,
    max_parallel_jobs=10_000,
    max_total_cpu_cost=1_000_000_000,
    max_total_running_time=1_000_000_000,
)
FILE_QUOTA_FIELDS = {"maxTotalSize": "max_total_size", "maxNbFiles": "max_nb_files"}
JOB_QUOTA_FIELDS = {
    "maxUnfinishedJobs": "max_unfinished_jobs",
    "maxWaitingJobs": "max_waiting_jobs",
    "maxParallelJobs": "max_parallel_jobs",
    "maxTotalCpuCost": "max_total_cpu_cost",
    "maxTotalRunningTime": "max_total_running_time",
}


Q = TypeVar("Q", FileQuota, JobQuota)


def effective(quota: Q, default: Q) -> Q:
    """*quota* with every 0 replaced by the default's value."""
    values = {f: getattr(quota, f) or getattr(default, f) for f in msgspec.structs.asdict(quota)}
    return type(quota)(**values)


class Person(msgspec.Struct, frozen=True, kw_only=True):
    """An account: its login, every certificate DN it may present, its roles."""

    login: str
    dns: list[str] = []
    roles: list[str] = []  # the roles of ou=Roles naming this login
    full_name: str = ""
    email: list[str] = []
    home: str = ""
    file_quota: FileQuota = FileQuota()
    job_quota: JobQuota = JobQuota()
    entry: str = ""  # where it was read (an LDAP DN, a file)


class CE(msgspec.Struct, frozen=True, kw_only=True):
    """A computing element: what its VoBox may run and whether it gets new jobs."""

    name: str  # VO::SITE::NAME, as agents name it
    site: str = ""
    host: str = ""
    status: str = OPEN
    max_running: int = 0  # agents running at most (0: the VoBox's own setting)
    max_queued: int = 0
    ttl: int = 0  # seconds a JobAgent lives (0: the VoBox's own setting)
    requirements: str = ""
    batch: str = ""
    entry: str = ""


class Partition(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ces: list[str] = []


class SE(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # VO::SITE::NAME
    url: str
    site: str = ""
    qos: list[str] = []
    capacity: int = 0
    number: int = 0


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration as read at one time from one source."""

    people: list[Person] = []
    roles: dict[str, list[str]] = {}  # role -> member logins
    ces: list[CE] = []
    partitions: list[Partition] = []
    ses: list[SE] = []
    source: str = ""
    loaded: float = 0.0  # epoch seconds
    problems: list[str] = []  # entries skipped, each with where and why
