"""The background-loop runner and its registry (jalien/loops.py), without a clock in any
test: every wait is an event a step sets, or a stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jalien.loops import Loop, LoopDone, LoopRegistry

HOUR = 3600.0


class Counter:
    """A step that counts its runs and lets a test await the n-th."""

    def __init__(self, fail: int = 0, returns: float | None = None) -> None:
        self.runs = 0
        self.fail = fail  # the first *fail* runs raise
        self.returns = returns
        self._changed = asyncio.Event()

    async def __call__(self) -> float | None:
        self.runs += 1
        self._changed.set()
        if self.runs <= self.fail:
            raise RuntimeError(f"broken {self.runs}")
        return self.returns

    async def reach(self, runs: int) -> None:
        while self.runs < runs:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 10)


async def _yield(turns: int = 20) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_steps_repeat_until_stopped_and_a_stop_ends_a_long_wait():
    step = Counter()
    loop = Loop("t", step, 0.0)
    task = loop.start()
    await step.reach(3)
    loop.interval = HOUR  # the next wait is long: the stop must end it at once
    await _yield()
    loop.stop()
    await asyncio.wait_for(task, 5)
    state = loop.state()
    assert state.stopped and state.runs == step.runs >= 3 and state.errors == 0
    assert state.last_start > 0 and state.last_duration >= 0


async def test_the_first_step_waits_an_interval_unless_told():
    step = Counter()
    loop = Loop("t", step, HOUR)
    task = loop.start()
    await _yield()
    assert step.runs == 0 and loop.state().next_run > loop.clock() + HOUR - 60
    loop.stop()
    await asyncio.wait_for(task, 5)
    step = Counter()
    loop = Loop("t", step, HOUR, first=0)
    task = loop.start()
    await step.reach(1)
    loop.stop()
    await asyncio.wait_for(task, 5)


async def test_an_external_stop_event_ends_the_loop():
    stop = asyncio.Event()
    step = Counter()
    loop = Loop("t", step, HOUR, first=0, stop=stop)
    task = loop.start()
    await step.reach(1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert loop.stopped


async def test_a_step_sets_its_own_delay():
    step = Counter(returns=0.0)  # "again at once", though the interval is an hour
    loop = Loop("t", step, HOUR, first=0)
    task = loop.start()
    await step.reach(5)
    step.returns = HOUR
    await _yield()
    loop.stop()
    await asyncio.wait_for(task, 5)


async def test_errors_are_counted_logged_once_per_burst_and_backed_off(caplog):
    step = Counter(fail=3)
    loop = Loop("flaky", step, 0.0, backoff_max=0.0)
    caplog.set_level(logging.INFO, logger="jalien.loops")
    task = loop.start()
    await step.reach(5)
    loop.stop()
    await asyncio.wait_for(task, 5)
    state = loop.state()
    assert state.errors == 3 and state.errors_in_row == 0
    assert state.last_error == "RuntimeError: broken 3"
    records = [r for r in caplog.records if r.name == "jalien.loops"]
    with_traceback = [r for r in records if r.exc_info]
    assert len(with_traceback) == 1 and "flaky failed" in with_traceback[0].getMessage()
    assert sum("failed again" in r.getMessage() for r in records) == 2
    assert any("working again after 3" in r.getMessage() for r in records)


def test_the_back_off_doubles_up_to_its_bound():
    loop = Loop("t", Counter(), 10.0, backoff_max=60.0)
    delays = []
    for errors in range(6):
        loop.errors_in_row = errors
        delays.append(loop._delay())
    assert delays == [10.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    long = Loop("t", Counter(), 600.0, backoff_max=60.0)  # never shorter than the interval
    long.errors_in_row = 3
    assert long._delay() == 600.0


def test_jitter_only_shortens_the_interval():
    loop = Loop("t", Counter(), 100.0, jitter=0.1)
    for draw in (0.0, 0.5, 0.999):
        loop._draw = draw
        assert 90.0 < loop._delay() <= 100.0
    with pytest.raises(ValueError):
        Loop("t", Counter(), 1.0, jitter=1.5)


async def test_fatal_errors_end_the_loop_and_loop_done_ends_it_quietly():
    class Fatal(Exception):
        pass

    async def fatal():
        raise Fatal

    loop = Loop("t", fatal, HOUR, first=0, fatal=(Fatal,))
    with pytest.raises(Fatal):
        await asyncio.wait_for(loop.start(), 5)

    async def done():
        raise LoopDone

    loop = Loop("t", done, HOUR, first=0)
    await asyncio.wait_for(loop.start(), 5)
    assert loop.runs == 1 and loop.errors == 0


async def test_the_registry_lists_pauses_resumes_runs_now_and_changes_intervals():
    registry = LoopRegistry()
    step, other = Counter(), Counter()
    registry.start(Loop("watchdog", step, HOUR))
    registry.start(Loop("refresh", other, HOUR))
    with pytest.raises(ValueError):
        registry.add(Loop("watchdog", Counter(), 1.0))
    with pytest.raises(KeyError):
        registry.pause("nothing")
    assert [s.name for s in registry.list()] == ["watchdog", "refresh"] and len(registry) == 2

    registry.run_now("watchdog")  # an hour early
    await step.reach(1)
    assert other.runs == 0

    registry.pause("watchdog")
    registry.set_interval("watchdog", 0.0)  # would run without end, but paused
    await _yield()
    state = registry.get("watchdog").state()
    assert state.paused and state.next_run == 0 and state.interval == 0 and step.runs == 1

    registry.run_now("watchdog")  # paused, yet asked for
    await step.reach(2)
    await _yield()
    assert step.runs == 2

    registry.resume("watchdog")  # interval 0 now: runs again and again
    await step.reach(5)
    registry.set_interval("watchdog", HOUR)
    await _yield()
    runs = step.runs
    await _yield()
    assert step.runs == runs and registry.get("watchdog").state().next_run > 0

    with pytest.raises(ValueError):
        registry.set_interval("refresh", -1)
    await asyncio.wait_for(registry.stop_all(timeout=5), 10)
    assert all(s.stopped and not s.running for s in registry.list())


async def test_stop_all_cancels_a_step_that_does_not_end():
    started = asyncio.Event()

    async def stuck():
        started.set()
        await asyncio.Event().wait()

    registry = LoopRegistry()
    registry.start(Loop("stuck", stuck, HOUR, first=0))
    await asyncio.wait_for(started.wait(), 5)
    assert registry.list()[0].running
    await asyncio.wait_for(registry.stop_all(timeout=0.01), 5)
    assert registry.get("stuck").task.done()


async def test_an_answer_is_one_line_without_a_traceback(caplog):
    """A step that fails with an answer (an exception with an exit code: wire.errors'
    RequestError, e.g. the connection to central lost as it stops) is one line: not a bug,
    no traceback (the README's session once showed one when jcentral stopped first)."""
    from jalien.wire.errors import RequestError

    async def step() -> None:
        raise RequestError("connection lost: connection closed by the server", 107)

    loop = Loop("reports", step, HOUR, first=0)
    caplog.set_level(logging.INFO, logger="jalien.loops")
    task = loop.start()
    while not loop.errors:
        await _yield()
    loop.stop()
    await asyncio.wait_for(task, 5)
    records = [r for r in caplog.records if r.name == "jalien.loops"]
    assert [r.getMessage() for r in records if "failed" in r.getMessage()] == [
        "reports failed: connection lost: connection closed by the server"
    ]
    assert not any(r.exc_info for r in records)
