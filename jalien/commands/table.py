"""The command table: names, functions, one-line help and the action each command is
(jalien.auth.policy), built in plain code by a role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jalien.auth.policy import ActionOf
from jalien.commands.session import Session
from jalien.wire.messages import Record, Reply

Result = Reply | list[Record] | Awaitable[Reply | list[Record]]
CommandFn = Callable[[Session, list[str]], Result]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    fn: CommandFn
    summary: str
    action: ActionOf  # what the policy checks before the command runs
    # raw: fn(session, request) -> Reply | Awaitable[Reply], called without the global
    # options (-h, -pwd=, -nomsg) and answered without session metadata on the binary
    # channel: the hot path of machine-to-machine commands (cache.get, ...)
    raw: bool = False


class CommandTable:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        fn: CommandFn | Callable[..., Any],
        summary: str,
        *,
        action: ActionOf,
        raw: bool = False,
    ) -> None:
        if name in self._commands:
            raise ValueError(f"command {name} registered twice")
        self._commands[name] = Command(name, fn, summary, action, raw)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: Any) -> bool:
        return name in self._commands
