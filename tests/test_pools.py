"""Thread pools an admin can see and steer (jalien/loops.py: WorkPool, PoolGauge, the
registry's pools): every wait is on an event, never a sleep."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jalien.loops import LoopRegistry, PoolError, PoolGauge, WorkPool

WAIT = 10.0


def _blocker(started: threading.Event, release: threading.Event):
    def job() -> str:
        started.set()
        assert release.wait(WAIT)
        return "done"

    return job


def test_a_pool_counts_its_jobs_and_errors():
    pool = WorkPool("t", 2)
    try:
        assert pool.submit(lambda: 1 + 1).result(WAIT) == 2
        failing = pool.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(WAIT)
        state = pool.state()
        assert (state.done, state.errors, state.active, state.queued) == (2, 1, 0, 0)
        assert state.kind == "threads" and state.can_pause and state.can_resize
        assert state.last_run > 0 and 1 <= state.threads <= 2
    finally:
        pool.shutdown()


def test_a_paused_pool_queues_and_resumes():
    pool = WorkPool("t", 2)
    try:
        pool.pause()
        future = pool.submit(lambda: "ran")
        state = pool.state()
        assert state.paused and state.queued == 1 and not future.done()
        pool.resume()
        assert future.result(WAIT) == "ran"
        assert not pool.state().paused
    finally:
        pool.shutdown()


def test_a_pool_grows_and_shrinks_while_it_works():
    ended: list[str] = []
    pool = WorkPool("t", 1, on_thread_exit=lambda: ended.append(threading.current_thread().name))
    try:
        release = threading.Event()
        first, second = threading.Event(), threading.Event()
        a = pool.submit(_blocker(first, release))
        b = pool.submit(_blocker(second, release))
        assert first.wait(WAIT)
        assert pool.state().queued == 1 and not second.is_set()  # one thread: b waits
        pool.resize(2)
        assert second.wait(WAIT)  # a second thread took it at once
        assert pool.state().active == 2
        pool.resize(1)  # jobs in progress are not interrupted
        release.set()
        assert a.result(WAIT) == b.result(WAIT) == "done"
        for _ in range(1000):  # the thread beyond the size ends as it comes back
            if pool.state().threads == 1:
                break
            threading.Event().wait(0.01)
        assert pool.state().threads == 1 and len(ended) == 1
        assert pool.submit(lambda: 3).result(WAIT) == 3
        with pytest.raises(PoolError):
            pool.resize(0)
    finally:
        pool.shutdown()
    assert len(ended) == 2  # shutdown ends the last one, with its hook


def test_shutdown_drains_a_paused_pool():
    pool = WorkPool("t", 1)
    pool.pause()
    future = pool.submit(lambda: "late")
    pool.shutdown(wait=True)
    assert future.result(0) == "late"
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_gauge_pauses_its_thread_and_release_opens_it():
    queued: list[int] = [3]
    gauge = PoolGauge("w-write", queued=lambda: queued[0])
    passed = threading.Event()

    def writer() -> None:
        gauge.gate()
        passed.set()
        gauge.began(2)
        gauge.ended(2, errors=1)

    gauge.pause()
    thread = threading.Thread(target=writer)
    thread.start()
    assert not passed.wait(0.05)
    state = gauge.state()
    assert state.paused and state.queued == 3 and state.kind == "writer"
    gauge.resume()
    thread.join(WAIT)
    state = gauge.state()
    assert (state.done, state.errors, state.active) == (2, 1, 0)
    with pytest.raises(PoolError):
        gauge.resize(4)
    fixed = PoolGauge("cache-writer", can_pause=False)
    with pytest.raises(PoolError):
        fixed.pause()
    gauge.pause()
    gauge.release()  # a stopping writer never waits again
    gauge.pause()
    gauge.gate()
    assert not gauge.state().paused


def test_the_registry_lists_pools_of_providers_as_they_change():
    registry = LoopRegistry()
    fixed = registry.add_pool(PoolGauge("audit", can_pause=False))
    owned: list = []
    registry.add_pools(lambda: owned)
    assert [p.name for p in registry.pools()] == ["audit"]
    pool = WorkPool("catalogue-read", 2)
    try:
        owned.append(pool)
        assert [s.name for s in registry.pool_states()] == ["audit", "catalogue-read"]
        assert registry.pool("catalogue-read") is pool and registry.pool("audit") is fixed
        with pytest.raises(KeyError):
            registry.pool("nothing")
    finally:
        pool.shutdown()


async def test_an_executor_for_the_event_loop():
    pool = WorkPool("t", 2)
    try:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(pool, pow, 2, i) for i in range(8)))
        assert results == [2**i for i in range(8)]
        assert pool.state().done == 8
    finally:
        pool.shutdown()
