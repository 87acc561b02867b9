"""The VoBox's site loop: every ``interval`` seconds,

1. keep a JobAgent token (``token -t jobagent``) that outlives the agents it is given to:
   renewed well before it expires (``renew_due``);
2. ask the batch system which of our agents are queued or running;
3. ask central how many waiting jobs match this CE (``getNumberWaitingJobs``); the same
   answer carries central's settings of the CE (``site_api.CESettings``, docs/ldap.md):
   a closed CE gets no new agent, and central's slots and agent TTL replace the VoBox's
   own (its settings stay the fallback while central names none);
4. submit ``SlotCount.to_submit`` agents, each from its own directory (startup script,
   token files, log: ``startup_script``);
5. remove agent directories older than ``keep_dirs`` whose agent is gone;
6. report: one log line per cycle and ``status.json`` beside the agent directories (what
   ``status()`` answers).

Central and the batch system are behind small protocols, so the loop is tested with fakes
and a clock; ``jalien.roles.vobox`` gives it the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from jalien.loops import Loop
from jalien.site.batch import AgentState, BatchError, BatchInterface, BatchJob, count
from jalien.site.slots import SlotCount
from jalien.site.startup_script import LOG_NAME, AgentConfig, write_agent_dir, write_private
from jalien.wire.site_api import CESettings, WaitingJobs

log = logging.getLogger("jalien.vobox")

BATCH_ID_NAME = "batchid"
QUICK_EXITS = 3  # agents ending at once, in a row, before submissions are held back
STATUS_NAME = "status.json"


class AgentToken(msgspec.Struct, frozen=True, kw_only=True):
    cert_pem: bytes
    key_pem: bytes
    not_before: float
    not_after: float


class CentralError(Exception):
    """Central did not answer usefully (down, refused): the cycle logs it and goes on."""


class Central(Protocol):
    async def waiting_jobs(
        self, *, site: str, ce: str, ttl: int, cores: int
    ) -> int | WaitingJobs: ...
    async def jobagent_token(self, hours: float) -> AgentToken: ...


class LoopOptions(msgspec.Struct, frozen=True, kw_only=True):
    agents_dir: Path
    job_name: str = "jalien-agent"
    max_running: int = 10
    max_queued: int = 5
    interval: float = 60.0
    token_hours: float = 24.0
    start_grace: float = 120.0  # a running agent this young has not asked for its job yet
    keep_dirs: float = 2 * 86400.0


def _tail(path: Path, size: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - size))
            return fh.read().decode(errors="replace")
    except OSError as exc:
        return f"({exc.strerror})"


def renew_due(token: AgentToken | None, now: float, agent_ttl: int) -> bool:
    """A token must outlive the agents it goes to: renew with the agents' TTL (plus five
    minutes) or a fifth of its lifetime left, whichever is more, but never in its first
    half (short tokens in tests)."""
    if token is None:
        return True
    lifetime = max(token.not_after - token.not_before, 1.0)
    margin = min(max(agent_ttl + 300.0, 0.2 * lifetime), 0.5 * lifetime)
    return now >= token.not_after - margin


class CycleReport(msgspec.Struct, kw_only=True):
    time: float
    running: int = 0
    queued: int = 0
    starting: int = 0
    waiting: int = -1  # -1: central did not answer
    submitted: int = 0
    removed_dirs: int = 0
    error: str = ""
    ce_status: str = ""  # central's word on this CE ("": it said nothing)


class VoBoxLoop:
    def __init__(
        self,
        central: Central,
        batch: BatchInterface,
        agent: AgentConfig,
        options: LoopOptions,
        *,
        clock: Callable[[], float] = time.time,
        own_cert_expires: float = 0.0,
    ) -> None:
        self.central = central
        self.batch = batch
        self.agent = agent
        self.options = options
        self.clock = clock
        self.own_cert_expires = own_cert_expires
        self.token: AgentToken | None = None
        self.renewals = 0
        self.submitted_total = 0
        self.cycles = 0
        self.last: CycleReport | None = None
        self._last_state: tuple[object, ...] | None = None  # what the last cycle logged
        # what the composing role adds to status() (its ports, its cache): called on the loop
        self.extra_status: Callable[[], dict[str, object]] | None = None
        self._started: dict[str, float] = {}  # batch id -> when we submitted it
        # batch id -> when it started running (about: between two looks at the batch system)
        self._running_since: dict[str, float] = {}
        self._last_look = 0.0
        self._seq = 0
        self._dirs: dict[str, Path] = {}  # batch id -> its agent directory
        # agents that ended within the grace period of their start, in a row: a broken
        # site (bad workdir, missing binary) must not make the VoBox submit in a tight loop
        self.quick_exits = 0
        self.hold_until = 0.0
        self.ce: CESettings | None = None  # central's settings of this CE, the last said
        self._own_ttl = agent.ttl

    # -- the token
    async def ensure_token(self) -> None:
        now = self.clock()
        if not renew_due(self.token, now, self.agent.ttl):
            return
        token = await self.central.jobagent_token(self.options.token_hours)
        # its not-before is backdated for clock skew: the lifetime counts from now
        token = msgspec.structs.replace(token, not_before=max(token.not_before, now))
        if self.token is not None:
            self.renewals += 1
        self.token = token
        left = (token.not_after - now) / 3600
        log.info("JobAgent token renewed: %.2f h left", left)

    def token_usable(self) -> bool:
        """Whether the token we hold can still be handed to an agent for its whole TTL."""
        token = self.token
        return token is not None and token.not_after - self.clock() > self.agent.ttl

    # -- one cycle
    async def cycle(self) -> CycleReport:
        now = self.clock()
        report = CycleReport(time=now)
        errors: list[str] = []
        try:
            await self.ensure_token()
        except CentralError as exc:
            errors.append(f"token: {exc}")
        try:
            jobs = await self.batch.jobs()
        except BatchError as exc:
            errors.append(f"batch: {exc}")
            jobs = None
        if jobs is not None:
            self._forget_finished(jobs)
            report.running = count(jobs, AgentState.RUNNING)
            report.queued = count(jobs, AgentState.QUEUED)
            report.starting = self._starting(jobs, now)
        try:
            answer = await self.central.waiting_jobs(
                site=self.agent.site, ce=self.agent.ce, ttl=self.agent.ttl, cores=self.agent.cores
            )
        except CentralError as exc:
            errors.append(f"central: {exc}")
        else:
            if isinstance(answer, WaitingJobs):
                report.waiting = answer.count
                self._take(answer.ce)
            else:
                report.waiting = answer
        closed = self.ce is not None and self.ce.status == "closed"
        report.ce_status = self.ce.status if self.ce is not None else ""
        if jobs is not None and report.waiting >= 0:
            slots = SlotCount(
                running=report.running,
                queued=report.queued,
                starting=report.starting,
                waiting=report.waiting,
                max_running=self.max_running,
                max_queued=self.max_queued,
            )
            wanted = 0 if closed else slots.to_submit
            if wanted and now < self.hold_until:
                errors.append(
                    f"{self.quick_exits} agents in a row ended at once: holding submissions "
                    f"for {self.hold_until - now:.0f} s more"
                )
                wanted = 0
            if wanted and not self.token_usable():
                errors.append("no JobAgent token valid for an agent's TTL: not submitting")
                wanted = 0
            for _ in range(wanted):
                try:
                    await self.submit_one()
                except (BatchError, OSError) as exc:
                    errors.append(f"submit: {exc}")
                    break
                report.submitted += 1
        live = set(self._started) if jobs is None else {job.id for job in jobs}
        report.removed_dirs = await asyncio.to_thread(self._clean, live, now)
        report.error = "; ".join(errors)
        self.cycles += 1
        self.last = report
        self._report(report)
        text = json.dumps(self.status(), indent=1).encode()
        await asyncio.to_thread(self._write_status, text)
        return report

    def _take(self, ce: CESettings | None) -> None:
        """Central's settings of this CE from now on: said when they change."""
        if ce != self.ce:
            if ce is None:
                log.info(
                    "central no longer configures CE %s: the VoBox's own settings", self.agent.ce
                )
            else:
                log.info(
                    "central's settings of CE %s: %s, %s running, %s queued, agent TTL %s",
                    self.agent.ce,
                    ce.status,
                    ce.max_running or "own",
                    ce.max_queued or "own",
                    ce.ttl or "own",
                )
        self.ce = ce
        ttl = (ce.ttl if ce is not None else 0) or self._own_ttl
        if ttl != self.agent.ttl:  # the agents submitted from now on
            self.agent = msgspec.structs.replace(self.agent, ttl=ttl)

    @property
    def max_running(self) -> int:
        return (self.ce.max_running if self.ce else 0) or self.options.max_running

    @property
    def max_queued(self) -> int:
        return (self.ce.max_queued if self.ce else 0) or self.options.max_queued

    def _forget_finished(self, jobs: list[BatchJob]) -> None:
        """Follow our agents from queued to running to gone: when each started running (a
        queued Slurm job may wait long), and whether a gone one ended at once."""
        live = {job.id for job in jobs}
        now = self.clock()
        previous = self._last_look or now
        self._last_look = now
        for job in jobs:
            submitted = self._started.get(job.id)
            if (
                submitted is not None
                and job.state is AgentState.RUNNING
                and job.id not in self._running_since
            ):
                self._running_since[job.id] = max(submitted, previous)
        for job_id in [j for j in self._started if j not in live]:
            started = self._running_since.pop(job_id, None) or self._started[job_id]
            del self._started[job_id]
            directory = self._dirs.pop(job_id, None)
            if now - started >= self.options.start_grace:
                self.quick_exits = 0
                continue
            self.quick_exits += 1
            if self.quick_exits >= QUICK_EXITS:
                hold = min(self.options.interval * 2 ** (self.quick_exits - QUICK_EXITS), 600.0)
                self.hold_until = now + max(hold, self.options.interval)
                log.warning(
                    "JobAgent %s ended %.0f s after its start (%d in a row); last lines of %s:\n%s",
                    job_id,
                    now - started,
                    self.quick_exits,
                    directory,
                    _tail(directory / LOG_NAME) if directory else "",
                )

    def _starting(self, jobs: list[BatchJob], now: float) -> int:
        grace = self.options.start_grace
        since = self._running_since
        return sum(
            1
            for job in jobs
            if job.state is AgentState.RUNNING and now - since.get(job.id, 0.0) < grace
        )

    async def submit_one(self) -> str:
        assert self.token is not None
        self._seq += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock()))
        directory = self.options.agents_dir / f"{stamp}-{os.getpid()}-{self._seq}"
        token = self.token
        script = await asyncio.to_thread(
            write_agent_dir, directory, self.agent, token.cert_pem, token.key_pem
        )
        job_id = await self.batch.submit(script, directory / LOG_NAME, self.options.job_name)
        await asyncio.to_thread(write_private, directory / BATCH_ID_NAME, job_id.encode())
        self._started[job_id] = self.clock()
        self._dirs[job_id] = directory
        self.submitted_total += 1
        log.info("submitted JobAgent %s (%s) from %s", job_id, self.batch.name, directory)
        return job_id

    # -- directories
    def known_batch_ids(self) -> list[str]:
        """The batch ids recorded in the agent directories (a restarted VoBox adopts them)."""
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.options.agents_dir.glob(f"*/{BATCH_ID_NAME}"):
                with contextlib.suppress(OSError):
                    found.append(path.read_text().strip())
        return found

    def _clean(self, live: set[str], now: float) -> int:
        removed = 0
        try:
            entries = list(self.options.agents_dir.iterdir())
        except FileNotFoundError:
            return 0
        for directory in entries:
            try:
                if now - directory.stat().st_mtime < self.options.keep_dirs:
                    continue
                batch_id = (directory / BATCH_ID_NAME).read_text().strip()
            except OSError:
                batch_id = ""
            if batch_id in live:
                continue
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
        return removed

    # -- monitoring
    def status(self) -> dict[str, object]:
        last = self.last
        token = self.token
        return {
            "ce": self.agent.ce,
            "site": self.agent.site,
            "batch": self.batch.name,
            "cycles": self.cycles,
            "submitted_total": self.submitted_total,
            "token_renewals": self.renewals,
            "token_expires": int(token.not_after) if token else 0,
            "own_cert_expires": int(self.own_cert_expires),
            "last_cycle": msgspec.to_builtins(last) if last else None,
            "max_running": self.max_running,
            "max_queued": self.max_queued,
            "ce_status": self.ce.status if self.ce is not None else "",
            "agent_ttl": self.agent.ttl,
            "quick_exits": self.quick_exits,
            "held_until": int(self.hold_until),
            **(self.extra_status() if self.extra_status is not None else {}),
        }

    def _report(self, report: CycleReport) -> None:
        # a change of state at INFO, an idle cycle (the same counts, nothing done) at DEBUG:
        # an idle VoBox's log stays quiet instead of a line every cycle
        state = (
            report.running,
            report.starting,
            report.queued,
            report.waiting,
            report.submitted,
            report.removed_dirs,
            report.error,
            report.ce_status,
        )
        changed = state != self._last_state or report.submitted or report.removed_dirs
        self._last_state = state
        log.log(
            logging.INFO if changed else logging.DEBUG,
            "cycle %d: %d running (%d starting), %d queued, %s waiting, %d submitted%s",
            self.cycles,
            report.running,
            report.starting,
            report.queued,
            report.waiting if report.waiting >= 0 else "?",
            report.submitted,
            (f"; {report.error}" if report.error else "")
            + (
                "; CE closed by central services: no new agents"
                if report.ce_status == "closed"
                else ""
            ),
        )
        if report.error and changed:  # the same error again: in the DEBUG line above
            log.warning("cycle %d: %s", self.cycles, report.error)
        left = self.own_cert_expires - report.time
        if self.own_cert_expires and left < 7 * 86400:
            log.warning("the VoBox's own certificate expires in %.1f days", left / 86400)

    def _write_status(self, text: bytes) -> None:
        path = self.options.agents_dir.parent / STATUS_NAME
        try:
            tmp = path.with_suffix(".tmp")
            write_private(tmp, text, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc.strerror)

    def runner(self, stop: asyncio.Event | None = None) -> Loop:
        """The cycle every ``interval`` seconds, the first at once, until *stop* is set (a
        cycle in progress finishes first); a failing cycle (a bug must not stop the site) is
        logged and retried with back-off (jalien.loops)."""
        made: list[bool] = []

        async def step() -> None:
            if not made:
                await asyncio.to_thread(self.options.agents_dir.mkdir, parents=True, exist_ok=True)
                made.append(True)
            await self.cycle()

        return Loop("vobox-cycle", step, self.options.interval, first=0, stop=stop, logger=log)

    async def run(self, stop: asyncio.Event) -> None:
        """Cycles until *stop* is set."""
        await self.runner(stop).run()
