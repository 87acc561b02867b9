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
- an exception that ends the coroutine in its first step is raised to the caller, as a
  plain call would (the server's coroutines catch their own).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
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
    context = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration as stop:
        return Ended(stop.value)
    return asyncio.get_running_loop().create_task(_Continued(coro, waiting), context=context)


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
