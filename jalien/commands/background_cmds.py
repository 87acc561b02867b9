"""``background``: what a role process does in the background, seen and steered by an admin.

    background [list]                 every loop and thread pool: state, queue, active, done,
                                      errors, last run (and a loop's interval, next run)
    background pause NAME             a loop skips its steps / a pool starts no new job
    background resume NAME
    background run NAME               one step of a loop now (paused or not)
    background interval NAME SECONDS  a loop's interval, from the end of its last step
    background resize NAME THREADS    a thread pool's size (idle threads beyond it end)

Changes apply at once to the running process and last as long as it does (a restart comes
back to the settings). The policy lets only admins in (``Action.BACKGROUND``). The loops and
pools come from the role's ``jalien.loops.LoopRegistry``.
"""

from __future__ import annotations

import logging
import math
import time

from jalien.auth.policy import Action
from jalien.commands.errno import EINVAL, ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.loops import LoopRegistry, LoopState, Pool, PoolError, PoolState
from jalien.wire.messages import Record

log = logging.getLogger("jalien.background")

USAGE = (
    "usage: background [list] | pause NAME | resume NAME | run NAME | "
    "interval NAME SECONDS | resize NAME THREADS"
)
HEADER = (
    f"{'name':<22} {'kind':<7} {'state':<8} {'size':>5} {'queued':>7} {'active':>6} "
    f"{'done':>9} {'errors':>7} {'last run':<19} {'every':>8}"
)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


def loop_record(s: LoopState) -> Record:
    state = "stopped" if s.stopped else "running" if s.running else "paused" if s.paused else "idle"
    line = (
        f"{s.name:<22} {'loop':<7} {state:<8} {'-':>5} {'-':>7} {int(s.running):>6} "
        f"{s.runs:>9} {s.errors:>7} {_when(s.last_start):<19} {s.interval:>7g}s"
    )
    return {
        "name": s.name,
        "kind": "loop",
        "state": state,
        "interval": f"{s.interval:g}",
        "active": str(int(s.running)),
        "done": str(s.runs),
        "errors": str(s.errors),
        "errors_in_row": str(s.errors_in_row),
        "last_run": f"{s.last_start:.3f}",
        "last_duration": f"{s.last_duration:.3f}",
        "last_error": s.last_error,
        "next_run": f"{s.next_run:.3f}",
        "message": line,
    }


def pool_record(s: PoolState) -> Record:
    state = "paused" if s.paused else "busy" if s.active else "idle"
    line = (
        f"{s.name:<22} {s.kind:<7} {state:<8} {s.size:>5} {s.queued:>7} {s.active:>6} "
        f"{s.done:>9} {s.errors:>7} {_when(s.last_run):<19} {'-':>8}"
    )
    return {
        "name": s.name,
        "kind": s.kind,
        "state": state,
        "size": str(s.size),
        "threads": str(s.threads),
        "queued": str(s.queued),
        "active": str(s.active),
        "done": str(s.done),
        "errors": str(s.errors),
        "last_run": f"{s.last_run:.3f}",
        "can_pause": str(s.can_pause).lower(),
        "can_resize": str(s.can_resize).lower(),
        "message": line,
    }


class BackgroundCommands:
    def __init__(self, table: CommandTable, registry: LoopRegistry) -> None:
        self.table = table
        self.registry = registry

    def register(self) -> None:
        self.table.add(
            "background",
            self.background,
            "background loops and thread pools: list, pause, resume, run, interval, resize",
            action=Action.BACKGROUND,
            args=Args(max=3, usage=USAGE, words=True),
        )

    def background(self, session: Session, opts: Options) -> list[Record]:
        words = opts.args
        verb = words[0] if words else "list"
        if verb == "list" and len(words) <= 1:
            return self.listing()
        wanted = {"pause": 2, "resume": 2, "run": 2, "interval": 3, "resize": 3}
        if wanted.get(verb) != len(words):
            raise jalien_error(EINVAL, USAGE)
        name = words[1]
        try:
            if verb == "interval":
                self.registry.set_interval(self._loop(name), _number(words[2], float))
            elif verb == "run":
                self.registry.run_now(self._loop(name))
            elif verb == "resize":
                self._pool(name).resize(int(_number(words[2], int)))
            elif name in self._loop_names():
                getattr(self.registry, verb)(name)  # pause, resume
            else:
                getattr(self._pool(name), verb)()
        except PoolError as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        log.info("%s: background %s", session.identity.login, " ".join(words))
        return [self._one(name)]

    def listing(self) -> list[Record]:
        records = [loop_record(s) for s in self.registry.list()]
        records += [pool_record(s) for s in self.registry.pool_states()]
        if not records:
            return [{"message": HEADER}]
        records[0]["message"] = HEADER + "\n" + records[0]["message"]
        return records

    def _loop_names(self) -> set[str]:
        return {loop.name for loop in self.registry}

    def _loop(self, name: str) -> str:
        if name not in self._loop_names():
            raise jalien_error(ENOENT, f"no background loop named {name!r}")
        return name

    def _pool(self, name: str) -> Pool:
        try:
            return self.registry.pool(name)
        except KeyError:
            raise jalien_error(
                ENOENT, f"no background loop or thread pool named {name!r}"
            ) from None

    def _one(self, name: str) -> Record:
        if name in self._loop_names():
            record = loop_record(self.registry.get(name).state())
        else:
            record = pool_record(self._pool(name).state())
        record["message"] = HEADER + "\n" + record["message"]
        return record


def _number(word: str, kind: type) -> float:
    try:
        value = float(kind(word))
    except ValueError:
        raise jalien_error(EINVAL, f"{word!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise jalien_error(EINVAL, f"{word!r}: a number >= 0 is needed")
    return value
