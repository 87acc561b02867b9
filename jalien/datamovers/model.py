"""What the data movers store: PFNs to delete and transfers, with their states and the
legal moves between them (pure: no I/O, unit-tested in tests/datamovers/test_states.py)."""

from __future__ import annotations

import msgspec

# -- deletions: HELD (queued with its catalogue removal still to commit) -> QUEUED -> gone
# (a deleted PFN leaves the table); QUEUED -> FAILED after its last attempt (the report).
HELD, QUEUED, FAILED = "HELD", "QUEUED", "FAILED"
DELETION_STATES = (HELD, QUEUED, FAILED)
DELETION_MOVES: dict[str, frozenset[str]] = {
    HELD: frozenset({QUEUED}),  # released (the catalogue removal committed), or recovered
    QUEUED: frozenset({QUEUED, FAILED}),  # a failed attempt waits its backoff, or gives up
    FAILED: frozenset({QUEUED}),  # an admin retries (listDeletions -retry)
}

# -- transfers, JAliEn's names (TRANSFERS_DIRECT.status)
WAITING, TRANSFERRING, DONE = "WAITING", "TRANSFERRING", "DONE"
FAILED_T, KILLED = "FAILED", "KILLED"
TRANSFER_STATES = (WAITING, TRANSFERRING, DONE, FAILED_T, KILLED)
ACTIVE = frozenset({WAITING, TRANSFERRING})
FINAL = frozenset({DONE, FAILED_T, KILLED})
TRANSFER_MOVES: dict[str, frozenset[str]] = {
    WAITING: frozenset({TRANSFERRING, KILLED, DONE}),  # DONE: the SE already had it
    # WAITING again: an attempt failed and another is left, or jcentral restarted;
    # TRANSFERRING: its source and target recorded as an attempt goes
    TRANSFERRING: frozenset({TRANSFERRING, WAITING, DONE, FAILED_T, KILLED}),
    DONE: frozenset(),
    FAILED_T: frozenset({WAITING}),  # resubmitted
    KILLED: frozenset(),
}


class IllegalMove(ValueError):
    pass


def check_move(moves: dict[str, frozenset[str]], old: str, new: str) -> None:
    if new not in moves.get(old, frozenset()):
        raise IllegalMove(f"{old} -> {new} is not a legal move")


def backoff(attempts: int, base: float, limit: float) -> float:
    """Seconds before the next attempt after *attempts* failed ones: base * 2**(n-1), capped."""
    return min(base * 2 ** max(attempts - 1, 0), limit)


class PfnRef(msgspec.Struct, frozen=True, kw_only=True):
    """One physical copy: the GUID it holds, its SE and its PFN (the full URL)."""

    guid: str
    se: str
    pfn: str


class Deletion(msgspec.Struct, kw_only=True):
    id: int
    guid: str
    se: str
    pfn: str
    state: str
    attempts: int = 0
    next_try: float = 0.0  # seconds since the epoch
    created: float = 0.0
    error: str = ""


class Transfer(msgspec.Struct, kw_only=True):
    id: int
    lfn: str
    guid: str
    size: int
    md5: str
    user: str
    destination: str  # SE name
    state: str
    attempts: int = 0  # attempts made
    max_attempts: int = 5
    source: str = ""  # the SE of the replica copied (set when an attempt starts)
    pfn: str = ""  # the destination PFN
    remove_source: str = ""  # mirror -r: the SE whose replica goes once this one is in
    reason: str = ""  # why the last attempt failed
    created: float = 0.0
    updated: float = 0.0
    next_try: float = 0.0
    owner: str = ""  # the jcentral running it while TRANSFERRING (its lease: ``updated``)


class DeletionCounts(msgspec.Struct, kw_only=True):
    """The deletion service's figures for monitoring."""

    held: int = 0
    queued: int = 0
    failed: int = 0
    deleted: int = 0  # by this process since it started
    attempts_failed: int = 0  # by this process since it started


class TransferCounts(msgspec.Struct, kw_only=True):
    """The transfer service's figures for monitoring."""

    by_state: dict[str, int] = {}
    running: int = 0  # copies in progress in this process
    done: int = 0  # by this process since it started
    failed_attempts: int = 0
    bytes_moved: int = 0
