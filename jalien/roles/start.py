"""How every role process starts and ends (``run_role``): logging, the event loop
(uvloop), the signals that stop it, and the errors that end it as one line and an exit
code from jalien.wire.errors instead of a traceback."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import uvloop

from jalien import logs
from jalien.auth.errors import AuthError
from jalien.config import ConfigError, Settings
from jalien.wire.errors import EXIT_FAILED, EXIT_USAGE

LOG_FORMAT = logs.TEXT_FORMAT
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SETUP_HINT = "hint: run `jalien-bin setup` to create a development CA and credentials"


def os_text(exc: BaseException) -> str:
    """An OSError as its bare reason ("Address already in use"), anything else as str."""
    return getattr(exc, "strerror", None) or str(exc)


@dataclass(frozen=True)
class Failure:
    """Errors of *kinds* end the role with *code*, printed as the prefix and *text* of the
    error, then *hint* (a line, or a function saying the line or nothing) if any."""

    kinds: tuple[type[BaseException], ...]
    code: int = EXIT_FAILED
    text: Callable[[BaseException], str] = str
    hint: str | Callable[[], str] = ""


# the usual ones: bad settings 2, credentials 1 with the setup hint, the system 1
CONFIG = Failure((ConfigError,), EXIT_USAGE)
CREDENTIALS = Failure((AuthError,), EXIT_FAILED, hint=SETUP_HINT)
SYSTEM = Failure((OSError,), EXIT_FAILED, os_text)
STANDARD = (CONFIG, CREDENTIALS, SYSTEM)


@dataclass(frozen=True)
class LogOptions:
    """How a role logs (jalien.logs): readable or JSON lines, how many recent lines it
    keeps for ``logs`` from central, and the role's name in its JSON lines."""

    log_format: str = "text"
    recent: int = logs.DEFAULT_RECENT
    role: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, role: str) -> LogOptions:
        return cls(settings.log_format, settings.log_recent_lines, role)


def setup_logging(level: str, options: LogOptions = LogOptions()) -> None:
    """The process's logging (jalien.logs.configure); ConfigError for a bad level or format."""
    try:
        logs.configure(level, options.log_format, role=options.role, recent=options.recent)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def on_signals(
    handler: Callable[[signal.Signals], object], signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> None:
    """Call *handler* with the signal when one of *signals* arrives (in the event loop)."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, handler, sig)


def stop_event(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (or *signals*): what a role waits on to stop."""
    stop = asyncio.Event()
    on_signals(lambda _sig: stop.set(), signals)
    return stop


def started() -> None:
    """Call once a role serves: what it made to start (modules, classes, settings, the
    servers) lives as long as the process, so it is collected once and frozen out of the
    garbage collector's view (``gc.freeze``). A full collection then scans only what
    serving made: ~5 ms instead of ~50 ms for a jcentral under load (bench_requests'
    fairness section saw those 50 ms pauses every 2 s as the tail of another user's
    latency)."""
    gc.collect()
    gc.freeze()


def run_role(
    main: Callable[[], Coroutine[Any, Any, int | None]],
    *,
    log_level: str | None,
    prefix: str,
    failures: Sequence[Failure] = STANDARD,
    report: Callable[[str], None] | None = None,
    log: LogOptions = LogOptions(),
) -> int:
    """Run *main* on uvloop; its result (None: 0) is the exit code. An error of one of
    *failures* prints ``<prefix><text>`` (and the failure's hint) on stderr, goes to
    *report* too (a detached jBox's parent waits for it), and is that failure's code.
    *log_level* None leaves logging as it is; else *log* says how (jalien.logs)."""
    if log_level is not None:
        try:
            setup_logging(log_level, log)
        except ConfigError as exc:  # whatever the role's failures: a setting is wrong
            print(f"{prefix}{exc}", file=sys.stderr, flush=True)
            return EXIT_USAGE
    try:
        code = uvloop.run(main())
    except tuple(kind for failure in failures for kind in failure.kinds) as exc:
        failure = next(f for f in failures if isinstance(exc, f.kinds))
        text = failure.text(exc)
        print(f"{prefix}{text}", file=sys.stderr, flush=True)
        hint = failure.hint() if callable(failure.hint) else failure.hint
        if hint:
            print(hint, file=sys.stderr, flush=True)
        if report is not None:
            report(text)
        return failure.code
    return 0 if code is None else code
