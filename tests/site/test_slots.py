"""How many JobAgents a VoBox submits: free slots capped by the demand."""

from __future__ import annotations

import pytest

from jalien.site.slots import SlotCount


def slots(**kw) -> SlotCount:
    base = dict(running=0, queued=0, starting=0, waiting=0, max_running=10, max_queued=5)
    base.update(kw)
    return SlotCount(**base)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, 0),  # nothing waits
        ({"waiting": 3}, 3),
        ({"waiting": 30}, 5),  # max_queued bounds one cycle's batch
        ({"waiting": 30, "running": 8}, 2),  # max_running bounds all our agents
        ({"waiting": 30, "running": 4, "queued": 4}, 1),
        ({"waiting": 30, "queued": 5}, 0),  # the queue is full
        ({"waiting": 3, "running": 3, "starting": 3}, 0),  # those three will take them
        ({"waiting": 3, "queued": 2}, 1),
        ({"waiting": 3, "running": 12}, 0),  # more than allowed (limits lowered): none
    ],
)
def test_to_submit(kw, expected):
    assert slots(**kw).to_submit == expected
