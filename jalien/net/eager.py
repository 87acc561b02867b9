"""Coroutines started at once, on the caller's turn of the loop (Python 3.12's eager tasks,
for 3.11).

Most requests never wait: a catalogue lookup on the loop's thread, a kept listing, a reply
rendered from memory. Wrapped in a Task they still pay for it: the Task, a turn of the
loop before the first step, done callbacks scheduled for later. ``start(coro)`` runs the
coroutine's first step right away; when it finishes there, no Task is made at all
(``Ended``, with its value); when it waits, a Task continues it from where it waits, as if
it had been a Task from the start:

- each step runs in one context copied at the start (a ContextVar set by the coroutine,
  e.g. ``net.fairness.serving``, never leaks into the caller's);
- the Task is handed the future the coroutine waits on (``_Continued``), so a ``cancel()``
  reaches the coroutine at its await, even before the Task's first step;
- during the first step ``asyncio.current_task()`` is a stand-in that hands ``cancel()``
  and the like on to that Task (``asyncio.timeout``, ``TaskGroup`` keep it);
- an exception that ends the coroutine in its first step is raised to the caller, as a
  plain call would (the server's coroutines catch their own).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
from asyncio.tasks import _enter_task, _leave_task  # what 3.12's eager tasks do in C
from collections.abc import Coroutine, Generator
from typing import Any

_STARTED: Any = object()


class Ended:
    """What ``start`` answers for a coroutine that ended in its first step."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def start(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | Ended:
    """Run *coro* until it first waits: ``Ended(value)`` when it returned, else the Task
    that carries it on. An exception in the first step is raised here, as by a call."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    stand_in = _StandIn()
    outer = asyncio.current_task(loop)  # a task's callback may start one: set aside
    if outer is not None:
        _leave_task(loop, outer)
    _enter_task(loop, stand_in)  # type: ignore[arg-type]  # any object: a C dict entry
    try:
        waiting = context.run(coro.send, None)
    except StopIteration as stop:
        return Ended(stop.value)
    finally:
        _leave_task(loop, stand_in)  # type: ignore[arg-type]
        if outer is not None:
            _enter_task(loop, outer)
    task = loop.create_task(_Continued(coro, waiting), context=context)
    stand_in.task = task
    return task


class _StandIn:
    """``asyncio.current_task()`` during a first step: what ``asyncio.timeout`` and
    ``TaskGroup`` keep to cancel later. Nothing can cancel during the step itself (no
    callback runs); afterwards every call goes to the Task that carries the coroutine on."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None

    def cancel(self, msg: Any = None) -> bool:
        return self.task.cancel(msg) if self.task is not None else False

    def cancelling(self) -> int:
        return self.task.cancelling() if self.task is not None else 0

    def uncancel(self) -> int:
        return self.task.uncancel() if self.task is not None else 0

    def done(self) -> bool:
        return self.task.done() if self.task is not None else False

    def __getattr__(self, name: str) -> Any:
        if self.task is None:
            raise AttributeError(f"{name}: a first step has no Task yet (net.eager)")
        return getattr(self.task, name)


class _Continued(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A started coroutine as a Task sees a new one: its first ``send`` hands the Task what
    the coroutine waits on (a future, or None for a bare yield); then every send and throw
    goes to the coroutine itself."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._first = waiting

    def send(self, value: Any) -> Any:
        first = self._first
        if first is not _STARTED:
            self._first = _STARTED
            return first
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._first = _STARTED
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # the old three-argument form

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("a continued coroutine is run by its Task only")

    def __repr__(self) -> str:
        return f"<continued {self._coro!r}>"
