"""The command table: names, functions, one-line help, the action each command is
(jalien.auth.policy) and the arguments it takes (``Args``: parsed and counted by the
dispatcher, so that a command only calls its service and renders), built in plain code by a
role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jalien.auth.policy import ActionOf
from jalien.commands.errno import EINVAL, jalien_error
from jalien.commands.options import Options, parse
from jalien.commands.session import Session
from jalien.wire.messages import Record, Reply

Result = Reply | list[Record] | Awaitable[Reply | list[Record]]
CommandFn = Callable[[Session, list[str]], Result]


@dataclass(frozen=True, slots=True)
class Args:
    """What a command takes: jopt-like options (``flags``, ``valued``; see
    commands.options) and how many arguments. A command declared with Args gets an
    ``Options``; too few or too many arguments is EINVAL with *usage*."""

    flags: Iterable[str] = ()
    valued: tuple[str, ...] = ()
    min: int = 0
    max: int | None = None
    usage: str = "Command requires an argument"
    words: bool = False  # no options: every word is an argument (touch, md5sum, ...)

    def parse(self, words: list[str]) -> Options:
        opts = Options(args=list(words)) if self.words else parse(words, self.flags, self.valued)
        count = len(opts.args)
        if count < self.min or (self.max is not None and count > self.max):
            raise jalien_error(EINVAL, self.usage)
        return opts


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
    args: Args | None = None  # parsed by the dispatcher: fn(session, Options)
    # the session's home is made before its first command of this kind (catalogue data)
    prepares: bool = False


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
        args: Args | None = None,
        prepares: bool = False,
    ) -> None:
        if name in self._commands:
            raise ValueError(f"command {name} registered twice")
        self._commands[name] = Command(name, fn, summary, action, raw, args, prepares)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: Any) -> bool:
        return name in self._commands
