"""AliEn's job states and the transitions a job may make.

A job is born INSERTING, waits (WAITING), is handed to a JobAgent (ASSIGNED), starts,
runs, saves its outputs and ends DONE, or ends in an ERROR_* state, EXPIRED, KILLED or
ZOMBIE. Master jobs split into subjobs (SPLITTING -> SPLIT). Anything else is refused.
"""

from __future__ import annotations

import enum

from jalien.wire.errors import EXIT_INVALID, RequestError


class JobState(enum.Enum):
    INSERTING = "INSERTING"
    SPLITTING = "SPLITTING"
    SPLIT = "SPLIT"
    WAITING = "WAITING"
    TO_STAGE = "TO_STAGE"
    ASSIGNED = "ASSIGNED"
    STARTED = "STARTED"
    RUNNING = "RUNNING"
    SAVING = "SAVING"
    SAVED = "SAVED"
    DONE = "DONE"
    DONE_WARN = "DONE_WARN"
    ERROR_A = "ERROR_A"  # assignment
    ERROR_I = "ERROR_I"  # insertion (bad JDL, missing input)
    ERROR_IB = "ERROR_IB"  # input box download
    ERROR_E = "ERROR_E"  # execution (non-zero exit, resource limit)
    ERROR_S = "ERROR_S"  # saving outputs
    ERROR_SV = "ERROR_SV"  # saved outputs failed verification
    ERROR_V = "ERROR_V"  # validation failed
    ERROR_VN = "ERROR_VN"  # validation: no validation script output
    ERROR_SPLT = "ERROR_SPLT"  # splitting
    ERROR_EW = "ERROR_EW"  # expired while waiting
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    ZOMBIE = "ZOMBIE"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_error(self) -> bool:
        return self.value.startswith("ERROR_") or self in (
            JobState.EXPIRED,
            JobState.FAILED,
            JobState.ZOMBIE,
        )


S = JobState
FINAL = frozenset(
    {
        S.DONE,
        S.DONE_WARN,
        S.ERROR_A,
        S.ERROR_I,
        S.ERROR_IB,
        S.ERROR_E,
        S.ERROR_S,
        S.ERROR_SV,
        S.ERROR_V,
        S.ERROR_VN,
        S.ERROR_SPLT,
        S.ERROR_EW,
        S.EXPIRED,
        S.FAILED,
        S.KILLED,
        S.SPLIT,
    }
)
ACTIVE = frozenset({S.ASSIGNED, S.STARTED, S.RUNNING, S.SAVING})
# while a job token works: its job runs, has saved its outputs (DONE is still to be said) or
# is a ZOMBIE whose JobAgent may report again
TOKEN_LIVE = ACTIVE | {S.SAVED, S.ZOMBIE}
_ANYTIME = {S.KILLED}  # a user or admin may kill a job that has not ended

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.INSERTING: frozenset({S.WAITING, S.SPLITTING, S.TO_STAGE, S.ERROR_I}),
    S.SPLITTING: frozenset({S.SPLIT, S.ERROR_SPLT}),
    S.TO_STAGE: frozenset({S.WAITING, S.ERROR_I}),
    S.WAITING: frozenset({S.ASSIGNED, S.EXPIRED, S.ERROR_EW}),
    S.ASSIGNED: frozenset({S.STARTED, S.WAITING, S.ERROR_A, S.ZOMBIE}),
    S.STARTED: frozenset({S.RUNNING, S.ERROR_IB, S.ERROR_E, S.ZOMBIE}),
    S.RUNNING: frozenset({S.SAVING, S.DONE, S.ERROR_E, S.ERROR_V, S.ERROR_VN, S.ZOMBIE}),
    S.SAVING: frozenset({S.SAVED, S.DONE, S.DONE_WARN, S.ERROR_S, S.ERROR_SV, S.ERROR_V, S.ZOMBIE}),
    S.SAVED: frozenset({S.DONE, S.DONE_WARN, S.ERROR_V, S.ERROR_SV}),
    # a ZOMBIE whose agent reports again goes on; otherwise it expires
    S.ZOMBIE: frozenset({S.RUNNING, S.SAVING, S.EXPIRED, S.ERROR_E}),
}
RESUBMITTABLE = frozenset(s for s in FINAL if s not in (S.DONE, S.DONE_WARN, S.SPLIT)) | {S.ZOMBIE}


class IllegalTransition(RequestError):
    def __init__(self, job: int, old: JobState, new: JobState) -> None:
        super().__init__(f"job {job}: {old.value} -> {new.value} is not allowed", EXIT_INVALID)


def parse_state(name: str) -> JobState:
    try:
        return JobState(name.upper())
    except ValueError:
        raise RequestError(f"unknown job state {name!r}", EXIT_INVALID) from None


def check_transition(job: int, old: JobState, new: JobState) -> None:
    if new in _ANYTIME and not old.is_final:
        return
    if new not in TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition(job, old, new)
