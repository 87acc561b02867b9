"""net.eager: a coroutine that never waits needs no Task; one that waits is carried on by a
Task exactly as if it had been one from the start (result, cancellation, context)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from jalien.net import eager

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test", default="caller")


async def test_a_coroutine_that_never_waits_ends_in_the_call():
    done = []

    async def quick() -> int:
        VAR.set("inside")
        done.append(VAR.get())
        return 1

    ended = eager.start(quick())
    assert isinstance(ended, eager.Ended) and ended.value == 1
    assert done == ["inside"]
    assert VAR.get() == "caller"  # its context was its own


async def test_a_coroutine_that_waits_goes_on_in_a_task_with_its_context():
    gate = asyncio.get_running_loop().create_future()
    seen = []

    async def slow() -> str:
        VAR.set("inside")
        seen.append("before")
        got = await gate
        await asyncio.sleep(0)  # a bare yield too
        seen.append(VAR.get())
        return got

    task = eager.start(slow())
    assert isinstance(task, asyncio.Task)
    assert seen == ["before"]  # the first step ran in the call
    assert VAR.get() == "caller"
    gate.set_result("value")
    assert await task == "value"
    assert seen == ["before", "inside"]


@pytest.mark.parametrize("before_first_step", [True, False])
async def test_a_cancel_reaches_the_coroutine_at_its_await(before_first_step):
    gate = asyncio.get_running_loop().create_future()
    outcome = []

    async def waits() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            outcome.append("cleaned")

    task = eager.start(waits())
    assert isinstance(task, asyncio.Task)
    if not before_first_step:
        await asyncio.sleep(0)  # the Task now waits on gate itself
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled", "cleaned"]


async def test_an_exception_after_a_wait_is_the_tasks():
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    task = eager.start(fails())
    assert isinstance(task, asyncio.Task)
    with pytest.raises(ValueError, match="late"):
        await task


async def test_an_exception_in_the_first_step_is_raised_as_by_a_call():
    async def fails() -> None:
        raise ValueError("early")

    with pytest.raises(ValueError, match="early"):
        eager.start(fails())


async def test_a_timeout_in_the_first_step_works_and_cancels_the_task_later():
    """asyncio.timeout keeps current_task() to cancel it: a stand-in during the first
    step, which hands the cancel on to the Task that carries the coroutine on."""
    gate = asyncio.get_running_loop().create_future()

    async def quick() -> str:
        async with asyncio.timeout(5):
            return "in time"

    ended = eager.start(quick())
    assert isinstance(ended, eager.Ended) and ended.value == "in time"

    async def too_slow() -> str:
        try:
            async with asyncio.timeout(0.01):
                await gate  # never set
        except TimeoutError:
            return "timed out"
        return "not reached"

    task = eager.start(too_slow())
    assert isinstance(task, asyncio.Task)
    assert await task == "timed out"


async def test_started_from_inside_a_task_the_outer_task_stays_current():
    outer = asyncio.current_task()
    seen = []

    async def look() -> None:
        seen.append(asyncio.current_task() is not outer)

    eager.start(look())
    assert seen == [True]
    assert asyncio.current_task() is outer
