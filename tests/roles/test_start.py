"""run_role: one start-up for every role - the error -> exit-code mapping and its messages,
the signals that stop a role."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys

import pytest

from jalien.auth.errors import AuthError
from jalien.config import ConfigError
from jalien.roles.start import SETUP_HINT, Failure, run_role, stop_event
from jalien.wire.errors import EXIT_FAILED, EXIT_USAGE

PREFIX = "jalien-bin: cannot start thing: "


def _raising(exc: BaseException):
    async def main() -> None:
        raise exc

    return main


@pytest.mark.parametrize(
    ("exc", "code", "lines"),
    [
        (ConfigError("listen: bad"), EXIT_USAGE, [PREFIX + "listen: bad"]),
        (
            AuthError("no host certificate"),
            EXIT_FAILED,
            [PREFIX + "no host certificate", SETUP_HINT],
        ),
        (
            OSError(errno.EADDRINUSE, "Address already in use"),
            EXIT_FAILED,
            [PREFIX + "Address already in use"],
        ),
    ],
)
def test_the_standard_failures(capsys, exc, code, lines):
    assert run_role(_raising(exc), log_level=None, prefix=PREFIX) == code
    assert capsys.readouterr().err.splitlines() == lines


def test_the_result_is_the_exit_code_and_other_errors_are_not_swallowed():
    async def three() -> int:
        return 3

    async def nothing() -> None:
        return None

    assert run_role(three, log_level=None, prefix=PREFIX) == 3
    assert run_role(nothing, log_level=None, prefix=PREFIX) == 0
    with pytest.raises(KeyError):
        run_role(_raising(KeyError("bug")), log_level=None, prefix=PREFIX)


def test_a_role_s_own_failures_hints_and_report(capsys):
    reported: list[str] = []
    failures = [
        Failure((ValueError,), 5, hint=lambda: ""),
        Failure((OSError,), EXIT_FAILED, hint=lambda: "hint: copy the key"),
    ]
    code = run_role(
        _raising(ValueError("bad key")),
        log_level=None,
        prefix=PREFIX,
        failures=failures,
        report=reported.append,
    )
    assert code == 5 and reported == ["bad key"]
    assert capsys.readouterr().err.splitlines() == [PREFIX + "bad key"]
    code = run_role(
        _raising(FileNotFoundError(2, "x")), log_level=None, prefix=PREFIX, failures=failures
    )
    assert code == EXIT_FAILED
    assert capsys.readouterr().err.splitlines()[-1] == "hint: copy the key"
    with pytest.raises(ConfigError):  # not among this role's failures
        run_role(_raising(ConfigError("x")), log_level=None, prefix=PREFIX, failures=failures)


def test_sigterm_sets_the_stop_event():
    async def main() -> int:
        stop = stop_event()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
        return 0

    assert run_role(main, log_level=None, prefix=PREFIX) == 0


def test_started_collects_then_freezes_what_start_up_made():
    """What a role made to start is frozen out of the collector's view (its full passes
    then scan only what serving makes), after the garbage of start-up was collected: a
    cycle dropped before is gone, not frozen. In a process of its own (a frozen pytest
    would keep every test's objects)."""
    code = """
import gc, weakref
from jalien.roles.start import started

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a
dropped = weakref.ref(a)
del a, b
kept = [Node() for _ in range(1000)]
started()
assert dropped() is None, "start-up garbage was frozen"
assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()
assert len(gc.get_objects(2)) < 100, len(gc.get_objects(2))
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
