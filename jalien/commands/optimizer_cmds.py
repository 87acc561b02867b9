"""The optimizers' commands: ``optimiserLogs`` (JAliEn's) and ``moveDirectory``.

optimiserLogs [-l] [-v] [-n N] [-f SECONDS] [name ...]
    the last entry (-n: the last N) of each optimizer's log, oldest first; -v adds each
    optimizer's interval, last and next run; -l lists the optimizers; -f sets the
    interval of the named optimizers (all when none is named), live (admins only)
moveDirectory LFN_DIR [HOST]
    split a populated directory into an LFN table of its own, online (admins; the
    sharded MariaDB catalogue; HOST: the position of the server in the configured
    hosts, default the server of the table it leaves)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from jalien.auth.policy import Action
from jalien.catalogue.optimiser_log import OptimiserLog
from jalien.catalogue.optimizers import NAMES
from jalien.commands.errno import EINVAL, ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.loops import LoopRegistry
from jalien.wire.messages import Record

MoveDirectory = Callable[[str, int | None], Awaitable[str]]
LOGS_USAGE = "usage: optimiserLogs [-l] [-v] [-n N] [-f SECONDS] [optimizer ...]"
MOVE_USAGE = "usage: moveDirectory LFN_DIR [HOST]"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "never"


class _SteersWith:
    """READ, or BACKGROUND when -f is given (a change of the optimizers' pace)."""

    actions = (Action.READ, Action.BACKGROUND)

    def __call__(self, args: list[str]) -> Action:
        return Action.BACKGROUND if "-f" in args else Action.READ


class OptimizerCommands:
    def __init__(
        self,
        table: CommandTable,
        journal: OptimiserLog,
        registry: LoopRegistry,
        move_directory: MoveDirectory | None = None,
    ) -> None:
        self.table = table
        self.journal = journal
        self.registry = registry
        self.move_directory = move_directory

    def register(self) -> None:
        self.table.add(
            "optimiserLogs",
            self.optimiser_logs,
            "what the catalogue optimizers did and when [-l] [-v] [-n N] [-f SECONDS]",
            action=_SteersWith(),
            args=Args(flags=("l", "v"), valued=("f", "n"), usage=LOGS_USAGE),
        )
        self.table.add(
            "moveDirectory",
            self.move,
            "split a directory into an LFN table of its own, online: LFN_DIR [HOST]",
            action=Action.BACKGROUND,
            args=Args(min=1, max=2, usage=MOVE_USAGE),
        )

    def _known(self) -> list[str]:
        loops = {loop.name for loop in self.registry}
        return [name for name in NAMES if name in loops]

    async def optimiser_logs(self, session: Session, opts: Options) -> list[Record]:
        known = self._known()
        if "l" in opts:
            names = sorted(set(known) | set(await self.journal.names()))
            return [{"name": n, "message": n} for n in names]
        wanted = opts.args or known
        lines: list[str] = []
        if "f" in opts:
            seconds = opts.number("f", -1)
            if seconds <= 0:
                raise jalien_error(EINVAL, "-f needs a number of seconds > 0")
            for name in wanted:
                if name not in known:
                    raise jalien_error(ENOENT, f"no optimizer named {name!r}: {' '.join(known)}")
                self.registry.set_interval(name, float(seconds))
                lines.append(f"{name}: every {seconds} s from now on")
        count = opts.number("n", 1)
        if count < 1:
            raise jalien_error(EINVAL, "-n needs a number > 0")
        entries = await self.journal.last(list(wanted), count)
        records: list[Record] = []
        if "v" in opts:
            for name in wanted:
                if name in known:
                    s = self.registry.get(name).state()
                    lines.append(
                        f"{name}: every {s.interval:g} s, last run {_when(s.last_start)}, "
                        f"next run {_when(s.next_run)}, {s.runs} runs, {s.errors} errors"
                    )
        for e in entries:
            records.append(
                {
                    "time": f"{e.time:.3f}",
                    "optimizer": e.optimizer,
                    "level": e.level,
                    "log": e.message,
                    "message": f"{_when(e.time)} {e.optimizer} [{e.level}] {e.message}",
                }
            )
        if lines:
            head = "\n".join(lines)
            if records:
                records[0]["message"] = head + "\n" + records[0]["message"]
            else:
                records.append({"message": head})
        if not records:
            records.append({"message": "no optimizer has logged anything yet"})
        return records

    async def move(self, session: Session, opts: Options) -> list[Record]:
        if self.move_directory is None:
            raise jalien_error(EINVAL, "moveDirectory: the embedded catalogue has one table")
        path = session.absolute(opts.args[0])
        host: int | None = None
        if len(opts.args) > 1:
            try:
                host = int(opts.args[1])
            except ValueError:
                raise jalien_error(EINVAL, MOVE_USAGE) from None
        done = await self.move_directory(path, host)
        return [{"message": done}]
