"""The JobAgent's loop: while its TTL allows, ask central for a job and run it.

``getMatchJob`` with the agent's offer (``wire.site_api.JobOffer``: site, ce, ttl, cores,
node, and its packages: the digest of the node's list, the list itself when central answers
``PackagesWanted``; ``agent.packages``) on the agent's own connection (its jobagent
token), ``ttl`` being the seconds left rounded up to the minute; central answers a
``MatchedJob``, which comes with a job token, for which the role opens a second
connection (data, the payload's socket). One job at a time; ``JALIEN_JOBAGENT_MAX_JOBS``
caps the count. When no job matches, the agent asks again every interval (at most 10 s
apart) for a bounded time (ten intervals, at most two minutes), then exits 0: the VoBox
submits agents while central has work, so an idle agent only holds a batch slot.

Central pushes ``Event(topic="kill", payload={"queueId": ...})`` on the connection that
matched the job (it has already set KILLED); the agent kills the payload within a second
or so and reports nothing more. ``stop`` (SIGTERM to the agent) ends the current job
ERROR_E with the reason and leaves the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography import x509

from jalien.agent.job import JobSpec
from jalien.agent.packages import Advertised
from jalien.agent.runner import CopyEngine, JobRunner, RunConfig
from jalien.agent.spy import spy_answer
from jalien.auth.certs import dn_of
from jalien.loops import Loop, LoopDone
from jalien.net import logs_answer
from jalien.net.client import Client
from jalien.net.identity import Identity
from jalien.wire import monitor_api, site_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Event, Reply, Request
from jalien.wire.monitor_api import LOGS_TOPIC, MAX_SPY_BYTES, SPY_TOPIC, SpyReport
from jalien.wire.site_api import JobOffer, MatchedJob, PackagesWanted, StatusChange

log = logging.getLogger("jalien.agent")

IDLE_POLLS = 10  # intervals an idle agent keeps asking
MAX_IDLE = 120.0  # seconds, whatever the interval
MAX_POLL = 10.0
MIN_TTL_LEFT = 1  # seconds: below this no job is asked for


@dataclass
class AgentConfig:
    site: str
    ce: str
    ttl: float = 3600.0
    cores: int = 1
    max_jobs: int = 0
    # what the node tells central about its packages; None: nothing (any, as before)
    packages: Advertised | None = None

    def offer(self, ttl_left: int, node: str) -> JobOffer:
        return JobOffer(site=self.site, ce=self.ce, ttl=ttl_left, cores=self.cores, node=node)


def match_ttl(left: float, ttl: float) -> int:
    """The ttl= sent with getMatchJob: the seconds left, rounded up to the minute (never
    above the agent's TTL). The VoBox counted waiting jobs with the agent's full TTL; the
    seconds an agent takes to start must not make a job of exactly that TTL unmatchable."""
    return int(min(math.ceil(left / 60.0) * 60, ttl))


class AgentError(Exception):
    """Central refused the agent itself (credentials, role); exit non-zero."""


class JobAgent:
    def __init__(
        self,
        config: AgentConfig,
        run_config: RunConfig,
        upstream: Client,
        copier: CopyEngine,
        connect_job: Callable[[JobSpec], Awaitable[Client]],
        parse_job: Callable[[MatchedJob], JobSpec],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.run_config = run_config
        self.upstream = upstream
        self.copier = copier
        self.connect_job = connect_job
        self.parse_job = parse_job
        self.clock = clock
        self.started = clock()
        self.current: JobRunner | None = None
        self.finished: list[tuple[int, str]] = []  # (queueId, final state)
        self._stop = asyncio.Event()
        self.loop: Loop | None = None  # the job loop, once ``run`` started it
        self._spies: set[asyncio.Future[None]] = set()  # spy answers being made
        # called when a job starts or ends (the role reports upstream at once)
        self.on_change: Callable[[], None] | None = None
        upstream.on_event = self._event

    @property
    def ttl_left(self) -> float:
        return self.config.ttl - (self.clock() - self.started)

    def stop(self, reason: str = "the JobAgent was stopped") -> None:
        self._stop.set()
        if self.current is not None:
            self.current.abort(reason)

    def _event(self, channel: int, event: Event) -> None:
        if event.topic in (SPY_TOPIC, LOGS_TOPIC):  # central asks (docs/monitoring.md)
            answer = self._spy if event.topic == SPY_TOPIC else self._logs
            task = asyncio.ensure_future(answer(event))
            self._spies.add(task)
            task.add_done_callback(self._spies.discard)
            return
        if event.topic != "kill":
            log.info("ignored pushed event %s", event.topic)
            return
        payload = event.payload if isinstance(event.payload, dict) else {}
        queue_id = str(payload.get("queueId", ""))
        current = self.current
        if current is not None and str(current.job.queue_id) == queue_id:
            log.info("job %s: kill received", queue_id)
            current.kill()
        else:
            log.info("kill for job %s, which this agent is not running", queue_id)

    async def _spy(self, event: Event) -> None:
        """Answer central's spy question with ``spyReport`` on the agent's connection."""
        payload = event.payload if isinstance(event.payload, dict) else {}
        try:
            ref, queue_id = int(payload.get("ref", "")), int(payload.get("queueId", ""))
        except ValueError:
            log.info("spy question without ref or job: %s", payload)
            return
        what = str(payload.get("what", ""))
        current = self.current
        text, error = "", ""
        if current is None or current.job.queue_id != queue_id:
            error = f"this JobAgent does not run job {queue_id} now"
        else:
            text, error = await asyncio.to_thread(
                spy_answer, what, current.sandbox, current.last_sample, current.trace,
                self.config.site, self.config.ce, MAX_SPY_BYTES,
            )  # fmt: skip
        report = SpyReport(ref=ref, queue_id=queue_id, what=what, text=text, error=error)
        request = Request(command="spyReport", data=[monitor_api.encode(report)])
        try:
            reply = await self.upstream.request(request, timeout=30)
        except RequestError as exc:
            log.info("spy report for job %d not delivered: %s", queue_id, exc)
            return
        if reply.exitcode:
            log.info("spy report for job %d refused: %s", queue_id, reply.error)

    async def _logs(self, event: Event) -> None:
        """Answer central's ``logs`` question with this process's recent log lines."""
        await logs_answer.answer(self.upstream, event.payload)

    async def run(self) -> int:
        """The loop; 0 when the TTL, the job cap or the idle wait ends it. It runs on
        jalien.loops (``self.loop``: jobs back to back, a poll interval while idle, the stop
        event); any error but a failed match ends it as before (``fatal``)."""
        config = self.config
        idle_since: float | None = None
        poll = max(0.05, min(self.run_config.interval, MAX_POLL))
        idle_limit = min(IDLE_POLLS * self.run_config.interval, MAX_IDLE)

        async def step() -> float:
            nonlocal idle_since
            if config.max_jobs and len(self.finished) >= config.max_jobs:
                log.info("done: %d job(s), the configured maximum", len(self.finished))
                raise LoopDone
            left = self.ttl_left
            if left < MIN_TTL_LEFT:
                log.info("done: the TTL is spent after %d job(s)", len(self.finished))
                raise LoopDone
            found = await self._match(match_ttl(left, config.ttl))
            if found is None:
                now = self.clock()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= idle_limit:
                    log.info("done: no job matched for %.0f s", now - idle_since)
                    raise LoopDone
                return poll
            idle_since = None
            await self._run_job(found)
            return 0.0

        self.loop = Loop(
            "job-agent", step, poll, first=0, stop=self._stop, fatal=(Exception,), logger=log
        )
        await self.loop.run()
        return 0

    async def _match(self, left: int) -> MatchedJob | None:
        offer = self.config.offer(left, self.run_config.node)
        advertised = self.config.packages
        with_list = False
        for _ in range(2):  # the second time with the package list, if central asked
            if advertised is not None:
                for name, value in (await advertised.offer_fields(with_list)).items():
                    setattr(offer, name, value)
            request = Request(command="getMatchJob", data=[site_api.encode(offer)])
            try:
                reply = await self._unless_stopped(self.upstream.request(request, timeout=60))
            except RequestError as exc:  # central away: the client reconnects meanwhile
                log.warning("getMatchJob failed: %s", exc)
                return None
            if reply is None:  # stopped while asking (central away, the client reconnecting)
                return None
            if reply.exitcode in (13, 2):  # permission denied / no such command: not a site
                raise AgentError(f"central refused getMatchJob: {reply.error}")
            if reply.exitcode:
                log.warning("getMatchJob: %s", reply.error)
                return None
            if not reply.data or reply.data[0] is None:
                return None  # no job for this offer
            try:
                answer = site_api.decode_any(reply.data[0])
            except site_api.SiteApiError as exc:  # a central this agent cannot understand
                raise AgentError(f"getMatchJob: {exc}") from None
            if isinstance(answer, MatchedJob):
                return answer
            if not isinstance(answer, PackagesWanted) or with_list:
                raise AgentError(f"getMatchJob: unexpected {type(answer).__name__}")
            log.info("central asked for the package list (%s)", answer.digest)
            with_list = True
        return None

    async def _unless_stopped(self, call: Awaitable[Reply]) -> Reply | None:
        """*call*'s reply, or None when the agent is stopped first (the call is cancelled):
        a SIGTERM does not wait for a request held up by a reconnecting client."""
        if self._stop.is_set():
            if asyncio.iscoroutine(call):
                call.close()
            return None
        task = asyncio.ensure_future(call)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled ourselves: so is the call
            task.cancel()
            raise
        finally:
            stopped.cancel()
        if not task.done():  # stopped first
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestError):
                await task
            return None
        return task.result()

    async def _run_job(self, matched: MatchedJob) -> None:
        queue_id = str(matched.queue_id)
        try:
            job = self.parse_job(matched)
        except ValueError as exc:
            await self._refuse(queue_id, f"the agent cannot read the job: {exc}")
            return
        try:
            job_conn = await self.connect_job(job)
        except (RequestError, OSError, ValueError) as exc:
            await self._refuse(queue_id, f"cannot connect with the job token: {exc}")
            return
        try:
            cert = x509.load_pem_x509_certificate(job.token_cert.encode())
            identity = Identity(
                dn=dn_of(cert),
                login=job.user,
                roles=("job",),
                token="job",
                job_id=str(job.queue_id),
            )
            runner = JobRunner(
                job,
                agent=self.upstream,
                job_conn=job_conn,
                copier=self.copier,
                config=self.run_config,
                identity=identity,
            )
            self.current = runner
            self._changed()
            log.info("job %d of %s: running", job.queue_id, job.user)
            state = await runner.run()
            self.finished.append((job.queue_id, state))
            log.info("job %d: ended %s", job.queue_id, state)
        finally:
            self.current = None
            self._changed()
            await job_conn.close()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _refuse(self, queue_id: str, error: str) -> None:
        log.error("job %s: %s", queue_id, error)
        change = StatusChange(queue_id=int(queue_id), state="ERROR_A", error=error)
        with contextlib.suppress(RequestError):
            await self.upstream.request(
                Request(command="setJobStatus", data=[site_api.encode(change)]), timeout=60
            )
        self.finished.append((int(queue_id), "ERROR_A"))
