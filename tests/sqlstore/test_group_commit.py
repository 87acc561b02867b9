"""The one group-commit writer (jalien.sqlstore.group_commit), without a database."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from jalien.sqlstore.group_commit import GroupCommit, JobWriter, settle


def test_take_batches_up_to_max_and_sees_the_stop_after_what_was_queued():
    writes: GroupCommit[int] = GroupCommit("t-write", max_batch=3)
    assert writes.take(0) == ([], False)  # nothing queued: no wait
    for op in range(5):
        writes.put(op)
    writes.stop()
    assert writes.take() == ([0, 1, 2], False)
    assert writes.take() == ([3, 4], True)  # the ops before the stop, then stopped
    assert writes.empty()


def test_settle_skips_a_caller_that_gave_up():
    gone: concurrent.futures.Future[int] = concurrent.futures.Future()
    gone.cancel()
    settle(gone, 1)  # no InvalidStateError: the writer thread must not die of it
    waiting: concurrent.futures.Future[int] = concurrent.futures.Future()
    settle(waiting, None, ValueError("no"))
    with pytest.raises(ValueError):
        waiting.result(0)


def test_job_writer_acknowledges_each_job_with_its_outcome():
    writes = JobWriter("t-write")
    batches: list[int] = []

    def apply(batch):
        batches.append(len(batch))
        if len(batches) == 2:
            raise RuntimeError("the transaction failed")
        return [(job.fn(None), None) for job in batch]

    ok = [writes.submit(lambda _, i=i: i * 2) for i in range(4)]
    thread = threading.Thread(target=writes.serve, args=(apply,))
    thread.start()
    assert [f.result(10) for f in ok] == [0, 2, 4, 6]
    failed = writes.submit(lambda _: 1)
    with pytest.raises(RuntimeError, match="transaction failed"):
        failed.result(10)
    writes.stop()
    thread.join(10)
    assert not thread.is_alive() and batches == [4, 1]
    assert writes.gauge.name == "t-write"
