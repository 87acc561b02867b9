"""The job state machine: the normal life of a job, and illegal moves refused."""

from __future__ import annotations

import itertools

import pytest

from jalien.jobs.states import (
    FINAL,
    IllegalTransition,
    JobState,
    check_transition,
    parse_state,
)
from jalien.wire.errors import RequestError

S = JobState


def test_normal_life():
    path = [S.INSERTING, S.WAITING, S.ASSIGNED, S.STARTED, S.RUNNING, S.SAVING, S.SAVED, S.DONE]
    for old, new in itertools.pairwise(path):
        check_transition(1, old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.WAITING, S.RUNNING),
        (S.DONE, S.RUNNING),
        (S.KILLED, S.WAITING),
        (S.DONE, S.KILLED),
        (S.INSERTING, S.DONE),
        (S.SAVED, S.RUNNING),
    ],
)
def test_illegal(old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
        check_transition(7, old, new)


def test_kill_any_unfinished_job():
    for state in S:
        if state not in FINAL:
            check_transition(1, state, S.KILLED)


def test_parse_state():
    assert parse_state("waiting") is S.WAITING
    with pytest.raises(RequestError, match="unknown job state"):
        parse_state("SLEEPING")
