"""jcentral on every core of a host: a supervisor (the parent process) and N worker processes.

Each worker is a whole jcentral (``roles/jcentral.serve``) on its own event loop. They share:

- the listening ports (SO_REUSEPORT: the kernel spreads the connections over the workers):
  the binary channel, the WebSocket, the embedded SE's HTTPS and XRootD, the TextCache HTTP
  port and the monitoring page. A port 0 is chosen once by the supervisor (a socket bound
  with SO_REUSEPORT and kept, never listening) so that every worker binds the same one.
  ``metrics_port`` is per worker (each process counts its own): ``metrics_port + index``,
  0 staying "any free port" (logged by each);
- the catalogue and the task queue (SQLite files in WAL mode: one writer at a time, the
  others wait ``busy_timeout``; or the MariaDB servers) and the host's LMDB cache (several
  processes by design: ``cache/store.py``);
- the job states: a match is a compare-and-set in the task queue (WAITING -> ASSIGNED), so a
  job is matched once whichever worker the agent asks.

Loops that act on shared state once per host (the job watchdog, the data movers, the
catalogue's optimizers, expiry, placement rules, decommissioning, dark data, the
configuration's resync) run in worker 0 only; the supervisor restarts worker 0 as worker 0.
The loops that keep a process's own memory current run in every worker.

The supervisor forks the workers (before any thread or event loop of its own, so it works
the same from the Nuitka binary), worker 0 first and the others once it serves (the token
CA, the envelope key and the schemas are made by one process), and prints ``jcentral
ready`` once all serve. A worker that dies is restarted (its index kept; after a quick
death the wait doubles, up to ``MAX_RESTART_WAIT``); a worker that cannot start the first
time ends everything with its exit code (bad settings: 2, as with one process). SIGTERM or
SIGINT stops all: SIGTERM to each, SIGKILL to those alive after ``stop_timeout``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from jalien import logs
from jalien.config import ConfigError, Settings
from jalien.roles.start import STOP_SIGNALS, LogOptions, setup_logging
from jalien.wire.errors import EXIT_FAILED, EXIT_USAGE

log = logging.getLogger("jalien.workers")
MAX_RESTART_WAIT = 30.0
PR_SET_PDEATHSIG = 1
QUICK_DEATH = 10.0  # a worker dying sooner than this after its start waits before the next


def host_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(configured: int) -> int:
    return configured if configured > 0 else host_cores()


@dataclass(frozen=True)
class WorkerSlot:
    """What a worker knows of its place: its index among *count*, and *ready*, to call once
    it serves (the supervisor waits for it)."""

    index: int
    count: int
    ready: Callable[[], None] = lambda: None

    @property
    def singletons(self) -> bool:
        """Whether this worker runs the once-per-host loops."""
        return self.index == 0


SINGLE = WorkerSlot(0, 1)


def reserve_port(hosts: list[str]) -> tuple[int, list[socket.socket]]:
    """A port free on every host, bound with SO_REUSEPORT (not listening) so that it stays
    ours while the workers bind it too."""
    for _ in range(50):
        socks: list[socket.socket] = []
        port = 0
        try:
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
                port = sock.getsockname()[1]
        except OSError:
            for sock in socks:
                sock.close()
            continue
        return port, socks
    raise OSError(f"no port free on {', '.join(hosts)}")


def worker_settings(settings: Settings) -> tuple[Settings, list[socket.socket]]:
    """The workers' settings: shared ports (any free one chosen here for a 0), and the
    sockets that hold the chosen ports for as long as the supervisor lives."""
    held: list[socket.socket] = []
    changes: dict[str, object] = {"shared_ports": True}
    shared = [("ws_port", settings.listen), ("binary_port", settings.listen)]
    if settings.embedded_se:
        shared += [("se_port", settings.listen), ("se_xrootd_port", settings.listen)]
    shared += [
        ("cache_http_port", settings.cache_http_listen),
        ("monitor_web_port", settings.listen),
    ]
    for name, hosts in shared:
        if getattr(settings, name) == 0 and hosts:
            port, socks = reserve_port(hosts)
            held += socks
            changes[name] = port
    return msgspec.structs.replace(settings, **changes), held


def for_worker(settings: Settings, index: int) -> Settings:
    """A worker's own settings: its metrics port (each process counts its own) and, but for
    worker 0, its audit log beside the configured one (audit-w1.jsonl, ...)."""
    if index == 0:
        return settings
    changes: dict[str, object] = {}
    if settings.metrics_port > 0:
        changes["metrics_port"] = settings.metrics_port + index
    audit = settings.audit_path
    changes["audit_file"] = str(audit.with_name(f"{audit.stem}-w{index}{audit.suffix}"))
    return msgspec.structs.replace(settings, **changes)


@dataclass
class _Child:
    index: int
    pid: int
    ready_fd: int  # the read end of the pipe the worker writes one byte to once it serves
    started: float
    ready: bool = False


@dataclass
class Supervisor:
    """Runs *count* workers: ``worker(slot)`` in a forked child, its result the child's exit
    code. ``run()`` returns when all have stopped: 0 after SIGTERM/SIGINT, else the exit
    code of a worker that could not start."""

    count: int
    worker: Callable[[WorkerSlot], int]
    ready_line: str = "ready"
    stop_timeout: float = 20.0
    say: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    _children: dict[int, _Child] = field(default_factory=dict)  # pid -> child
    _waits: dict[int, float] = field(default_factory=dict)  # index -> seconds before restart
    _restart_at: dict[int, float] = field(default_factory=dict)  # index -> when
    _stopping: bool = False
    _all_ready: bool = False
    _wake: tuple[int, int] = (-1, -1)

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake = (wake_r, wake_w)
        previous = {sig: signal.getsignal(sig) for sig in (*STOP_SIGNALS, signal.SIGCHLD)}
        old_fd = signal.set_wakeup_fd(wake_w)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)  # wakes the select
        try:
            return self._supervise()
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _on_stop(self, _sig: int, _frame: object) -> None:
        self._stopping = True

    # -- the children
    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                os.close(ready_r)
                self._forget_parent(parent)
                slot = WorkerSlot(index, self.count, lambda: _say_ready(ready_w))
                code = self.worker(slot)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(ready_w)
        self._children[pid] = _Child(index, pid, ready_r, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def _forget_parent(self, parent: int) -> None:
        """In a new worker: the supervisor's signal handling and descriptors are not its,
        and its death (even by SIGKILL) is a SIGTERM to the worker: no orphan keeps the
        ports."""
        signal.set_wakeup_fd(-1)
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _term_with_parent(parent)
        for fd in (*self._wake, *(child.ready_fd for child in self._children.values())):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _reap(self) -> list[tuple[_Child, int]]:
        """The children that ended, with their exit codes (-N: killed by signal N)."""
        ended = []
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self._children.pop(pid, None)
            if child is None:
                continue
            os.close(child.ready_fd)
            ended.append((child, os.waitstatus_to_exitcode(status)))
        return ended

    def _read_ready(self, fds: list[int]) -> None:
        for child in list(self._children.values()):
            if child.ready_fd in fds and not child.ready:
                with contextlib.suppress(BlockingIOError):
                    if os.read(child.ready_fd, 1):
                        child.ready = True
                        self._waits.pop(child.index, None)
                        self.say(
                            f"jcentral worker {child.index} of {self.count} ready (pid {child.pid})"
                        )

    # -- the loop
    def _supervise(self) -> int:
        for index in range(self.count):
            self._spawn(index)
            failed = self._await_ready(index)
            if failed is not None:
                return failed
        self._all_ready = True
        self.say(f"jcentral {self.ready_line} ({self.count} workers)")
        while not self._stopping:
            self._wait(self._next_restart())
            for child, code in self._reap():
                self._ended(child, code)
            now = time.monotonic()
            for index, when in list(self._restart_at.items()):
                if when <= now and not self._stopping:
                    del self._restart_at[index]
                    self._spawn(index)
        return self._stop_all(0)

    def _await_ready(self, index: int) -> int | None:
        """Wait for worker *index*'s first start: None once it serves, else the exit code
        that ends the supervisor (the worker's own, or 0 when told to stop)."""
        while True:
            if self._stopping:
                return self._stop_all(0)
            child = next((c for c in self._children.values() if c.index == index), None)
            if child is not None and child.ready:
                return None
            self._wait(None)
            for ended, code in self._reap():
                if ended.index != index:  # one that started before: restarted later
                    self._ended(ended, code)
                    continue
                log.error(
                    "worker %d (pid %d) could not start: exit %d", ended.index, ended.pid, code
                )
                return self._stop_all(code if code > 0 else 1)

    def _wait(self, timeout: float | None) -> None:
        fds = [self._wake[0], *(c.ready_fd for c in self._children.values() if not c.ready)]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self._wake[0] in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake[0], 512):
                    pass
        self._read_ready(readable)

    def _next_restart(self) -> float | None:
        if not self._restart_at:
            return None
        return max(0.0, min(self._restart_at.values()) - time.monotonic())

    def _ended(self, child: _Child, code: int) -> None:
        if self._stopping:
            return
        lived = time.monotonic() - child.started
        wait = 0.0
        if lived < QUICK_DEATH or not child.ready:
            wait = min(MAX_RESTART_WAIT, max(0.5, 2 * self._waits.get(child.index, 0.25)))
            self._waits[child.index] = wait
        log.error(
            "worker %d (pid %d) ended (%s) after %.1f s; restarting it in %.1f s",
            child.index,
            child.pid,
            f"signal {-code}" if code < 0 else f"exit {code}",
            lived,
            wait,
        )
        self._restart_at[child.index] = time.monotonic() + wait

    def _stop_all(self, code: int) -> int:
        self._stopping = True
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self._children:
            left = deadline - time.monotonic()
            if left <= 0:
                for pid in self._children:
                    log.warning("worker pid %d did not stop: killed", pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
            self._reap()
            if self._children:
                self._wait(min(max(left, 0.05), 0.5))
        return code


def _term_with_parent(parent: int) -> None:
    """SIGTERM to this process when *parent* dies (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _say_ready(fd: int) -> None:
    """The worker's word to the supervisor that it serves (once)."""
    with contextlib.suppress(OSError):
        os.write(fd, b"r")
        os.close(fd)


def run_workers(
    settings: Settings,
    worker: Callable[[Settings, WorkerSlot], int],
    ready_line: Callable[[Settings], str],
) -> int:
    """The supervisor of ``worker_count(settings.workers)`` workers, each running
    ``worker(its settings, its slot)``; *ready_line* says where they serve."""
    try:
        setup_logging(settings.log_level, LogOptions.from_settings(settings, "jcentral"))
    except ConfigError as exc:
        print(f"jalien-bin: cannot start jcentral: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        shared, held = worker_settings(settings)
    except OSError as exc:
        print(f"jalien-bin: cannot start jcentral: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    count = worker_count(settings.workers)

    def one(slot: WorkerSlot) -> int:
        for sock in held:  # the supervisor's hold on the ports, not the worker's
            sock.close()
        logs.tag(f"w{slot.index}")  # each line names its worker (text or JSON)
        return worker(for_worker(shared, slot.index), slot)

    try:
        return Supervisor(count, one, ready_line=ready_line(shared)).run()
    finally:
        for sock in held:
            sock.close()
