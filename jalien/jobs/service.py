"""The jobs service: submission (with splitting), the broker's matching for JobAgents,
state changes with traces, kills pushed to the agent that runs the job, and job tokens.

Job tokens are token certificates (jalien.auth.tokens, kind JOB) naming the job's user and
id, issued with the match to the JobAgent token that asked (``token -t job`` only for a job
matched to that token). A job token works only while its job is live (``TOKEN_LIVE``): the
service keeps the live jobs (id -> user) beside the job states, updated at every transition
it makes and re-read from the task queue every ``live_refresh`` seconds (other processes
sharing the task queue); ``token_alive`` answers from that map in O(1) and asks the task
queue only for a job it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os.path
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from jalien.auth.policy import IdentityKind
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem
from jalien.jobs.admission import Admission, JobUsage
from jalien.jobs.broker import Agent, Broker
from jalien.jobs.jdl import Jdl, JdlError, parse_jdl, render_jdl
from jalien.jobs.packages import PackageOffers
from jalien.jobs.queue import Claim, JobRow, NewJob, TaskQueue
from jalien.jobs.requirements import compile_requirements
from jalien.jobs.routes import Router
from jalien.jobs.states import ACTIVE, FINAL, RESUBMITTABLE, TOKEN_LIVE, JobState, parse_state
from jalien.loops import Loop
from jalien.wire import packages as package_names
from jalien.wire.errors import EXIT_INVALID, EXIT_PERMISSION, EXIT_QUOTA, RequestError
from jalien.wire.messages import Event
from jalien.wire.site_api import MAX_TEXT, CESettings, JobOffer, MatchedJob, StatusChange

log = logging.getLogger("jalien.jobs")
S = JobState
MAX_SUBJOBS = 100_000
# jobs a match offers the task queue after the broker's choice, in case other jcentrals'
# brokers (which hold the same jobs) took it and the ones behind it already
CLAIM_FALLBACKS = 16
Push = Callable[[Event], None]


def is_admin(caller: Any) -> bool:
    return "admin" in caller.roles


# an InputDataCollection's LFNs, read with the submitter's rights (caller, "LF:/a/c.xml")
CollectionReader = Callable[[Any, str], Awaitable[list[str]]]
# the SE names holding each LFN (caller, LFNs), for Split=se
Locator = Callable[[Any, list[str]], Awaitable[dict[str, tuple[str, ...]]]]
DEAD_MEMORY = 10_000  # job tokens refused lately, remembered so that they cost no query


class JobService:
    def __init__(
        self,
        store: TaskQueue,
        broker: Broker,
        *,
        tokens: TokenAuthority | None = None,
        home_template: str = "/alice/cern.ch/user/{initial}/{login}/",
        token_hours: float = 24.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.tokens = tokens
        self.home_template = home_template
        self.token_hours = token_hours
        self._agents: dict[int, Push] = {}
        self._lock = asyncio.Lock()
        self.live: dict[int, str] = {}  # job id -> user, for the jobs whose tokens work
        self.matched_by: dict[int, int] = {}  # job id -> serial of the JobAgent token
        # job id -> serials of the tokens issued for the job's current run (a job requeued
        # and matched again leaves its old tokens behind)
        self.job_tokens: dict[int, set[int]] = {}
        self._dead: OrderedDict[int, float] = OrderedDict()  # job id -> when found dead
        self.collections: CollectionReader | None = None  # set by the role (storage)
        self.locations: Locator | None = None  # Split=se: the SEs of the input files
        # job quotas and CE status (jobs.admission), set by the role; None: no limits
        self.admission: Admission | None = None
        # at a miss, the jobs other processes queued since (jobs.broker_feed.refill_new,
        # set by the role): how many it added; None: the broker alone
        self.refill: Callable[[], Awaitable[int]] | None = None
        # central's settings of a CE (slots, TTL, open or closed) for its VoBox; by the role
        self.ce_settings: Callable[[str], CESettings | None] | None = None
        self.packages = PackageOffers()  # what the nodes offer (jobs.packages)
        self.usage_refresh = 30.0  # seconds a user's 24 h job usage is kept
        self._usage: dict[str, tuple[float, int, int]] = {}  # user -> (when, cost, wall)
        # several jcentrals: where each job's agent is connected, pushes to the others'
        # agents (jobs.routes); None: this process is the only one
        self.router: Router | None = None

    def attach_router(self, router: Router) -> None:
        self.router = router
        router.handlers["kill"] = self._remote_kill

    def _remote_kill(self, job_id: int, payload: dict[str, Any]) -> None:
        """Another central killed a job whose agent is connected here: the agent hears
        it, and the job's tokens stop working here now (not at the next live refresh)."""
        push = self._agents.pop(job_id, None)
        if push is not None:
            push(Event(topic="kill", payload={"queueId": job_id}))
        self.live.pop(job_id, None)
        self.matched_by.pop(job_id, None)
        self.job_tokens.pop(job_id, None)
        self._dead[job_id] = time.monotonic()
        if self.router is not None:
            self.router.release(job_id)

    def _hold(self, job_id: int, push: Push | None) -> None:
        """The job's agent talks to this central on *push*'s connection (a match, or its
        first report here after its central died): kills and spy questions go there."""
        if push is None or self._agents.get(job_id) == push:  # == : bound methods too
            return
        self._agents[job_id] = push
        if self.router is not None:
            self.router.hold(job_id)

    def _drop_agent(self, job_id: int) -> None:
        if self._agents.pop(job_id, None) is not None and self.router is not None:
            self.router.release(job_id)

    async def start(self) -> None:
        self.broker.add_many(await self.store.waiting())
        self.broker.running.update(await self.store.active_by_user())
        self.live = await self.store.live_jobs()

    # -- job tokens
    def token_alive(self, identity: Any) -> str | Awaitable[str]:
        """The credential check of every request (commands.dispatch): "" unless a job
        token's job is not live; O(1) but for a job this process has not seen."""
        if identity.kind is not IdentityKind.JOB:
            return ""
        try:
            job_id = int(identity.job_id)
        except ValueError:
            return f"Permission denied: a job token for {identity.job_id!r} names no job"
        user = self.live.get(job_id)
        if user is not None:
            if user != identity.login:
                return _not_theirs(job_id, identity.login)
            serials = self.job_tokens.get(job_id)
            if serials is not None and identity.serial not in serials:
                return f"Permission denied: this token is of an earlier run of job {job_id}"
            return ""
        if job_id in self._dead:
            return _revoked(job_id)
        return self._alive_in_store(job_id, identity.login)

    async def _alive_in_store(self, job_id: int, login: str) -> str:
        try:
            row = await self.store.get(job_id)
        except RequestError:
            row = None
        if row is None or row.job_state not in TOKEN_LIVE:
            self._dead[job_id] = time.monotonic()
            while len(self._dead) > DEAD_MEMORY:
                self._dead.popitem(last=False)
            return _revoked(job_id)
        self.live[job_id] = row.user
        return "" if row.user == login else _not_theirs(job_id, login)

    async def refresh_live(self) -> None:
        """Re-read the live jobs (another process may have ended or matched some)."""
        self.live = await self.store.live_jobs()
        self._dead.clear()

    def keep_live(self, interval: float) -> Loop:
        """Re-reads the live jobs every *interval* seconds; a failure (the task queue away)
        keeps the map we have and is retried with back-off (jalien.loops)."""
        return Loop("live-jobs", self.refresh_live, interval, jitter=0.1, logger=log)

    async def check_job_token(self, identity: Any, job_id: str, user: str) -> None:
        """``token -t job``: only for a live job of *user* matched to this JobAgent token."""
        try:
            number = int(job_id)
        except ValueError:
            raise RequestError(f"not a job id: {job_id!r}", EXIT_INVALID) from None
        owner = self.live.get(number)
        if owner is None and number not in self._dead:  # live through another process?
            with contextlib.suppress(RequestError):
                row = await self.store.get(number)
                if row.job_state in TOKEN_LIVE:
                    owner = self.live[number] = row.user
        if owner is None:
            raise RequestError(
                f"Permission denied: job {job_id} is not running: no token for it",
                EXIT_PERMISSION,
            )
        if owner != user:
            raise RequestError(
                f"Permission denied: job {job_id} belongs to {owner}, not {user}",
                EXIT_PERMISSION,
            )
        matched = self.matched_by.get(number)
        if matched != identity.serial:
            # unknown here: matched through another process (a worker of this host, another
            # jcentral), which alone knows the JobAgent token: refused, never guessed
            elsewhere = " here (it was matched elsewhere)" if matched is None else ""
            raise RequestError(
                f"Permission denied: job {job_id} was not matched to this JobAgent{elsewhere}",
                EXIT_PERMISSION,
            )

    def job_token_issued(self, job_id: str, serial: int) -> None:
        with contextlib.suppress(ValueError):
            self.job_tokens.setdefault(int(job_id), set()).add(serial)

    def _track(self, row: JobRow) -> None:
        """Keep the live map with a transition's new row."""
        if row.job_state in TOKEN_LIVE:
            self.live[row.id] = row.user
            self._dead.pop(row.id, None)
        else:
            self.live.pop(row.id, None)
            self.matched_by.pop(row.id, None)
            self.job_tokens.pop(row.id, None)

    # -- submission
    def output_dir(self, user: str, job_id: int, configured: str) -> str:
        """Where a job's outputs go: its JDL's OutputDir (kept in its row), else its home's
        alien-job-N/."""
        if configured:
            return configured.replace("#alien_counter#", str(job_id))
        home = self.home_template.format(initial=user[0], login=user)
        return f"{home}alien-job-{job_id}/"

    async def submit(self, caller: Any, text: str, args: list[str]) -> list[int]:
        try:
            jdl = parse_jdl(text, args)  # any fault is a JdlError with its line and column
        except JdlError as exc:
            raise RequestError(f"bad JDL: {exc}", EXIT_INVALID) from None
        try:
            compile_requirements(jdl.requirements)
        except JdlError as exc:
            raise RequestError(f"bad JDL: Requirements: {exc}", EXIT_INVALID) from None
        for spec in jdl.packages:
            try:
                package_names.split(spec)
            except package_names.PackageNameError as exc:
                raise RequestError(f"bad JDL: Packages: {exc}", EXIT_INVALID) from None
        if jdl.input_data_collection:
            jdl = await self._with_collections(caller, jdl)
        user = caller.login
        if not jdl.split:
            await self._admit(user, 1)
            (job_id,) = await self.store.insert([self._new(user, jdl, render_jdl(jdl))])
            await self._enqueue([job_id])
            return [job_id]
        where: dict[str, tuple[str, ...]] = {}
        if jdl.split.lower() == "se" and self.locations is not None:
            where = await self.locations(caller, [i.removeprefix("LF:") for i in jdl.input_data])
        parts = self._split(jdl, where)
        await self._admit(user, len(parts))
        (master,) = await self.store.insert([self._new(user, jdl, render_jdl(jdl), S.SPLITTING)])
        subjobs = [
            self._new(user, part, render_jdl(part), master=master, index=i)
            for i, part in enumerate(parts, 1)
        ]
        ids = await self.store.insert(subjobs)
        await self.store.transition(master, S.SPLIT, message=f"split into {len(ids)} subjobs")
        await self._enqueue(ids)
        return [master]

    async def _admit(self, user: str, new: int) -> None:
        """Refuse the submission (EXIT_QUOTA, nothing inserted) when *user*'s job quota
        does not allow *new* more jobs."""
        if self.admission is None:
            return
        why = self.admission.submit_refusal(user, await self.job_usage(user), new)
        if why:
            raise RequestError(why, EXIT_QUOTA)

    async def job_usage(self, user: str, *, fresh: bool = False) -> JobUsage:
        """*user*'s waiting and running jobs (the broker's counts, exact) and the CPU cost
        (cores x wall x price) and wall time of their jobs in the last 24 h (read from the
        task queue when older than ``usage_refresh`` seconds, or *fresh*)."""
        known = self._usage.get(user)
        now = time.time()
        if fresh or known is None or now - known[0] >= self.usage_refresh:
            since = now - 86400
            cost = wall_total = 0
            for row in await self.store.query(user=user, limit=100_000):
                if row.started:
                    end = row.finished / 1000 if row.finished else now
                    wall = end - max(row.started / 1000, since)
                    if wall > 0:
                        wall_total += int(wall)
                        cost += int(wall * max(row.cores, 1) * (row.price or 1.0))
            known = (now, cost, wall_total)
            self._usage[user] = known
        return JobUsage(
            waiting=self.broker.waiting_of(user),
            running=self.broker.running[user],
            cpu_cost=known[1],
            running_time=known[2],
        )

    def quota_loop(self, interval: float) -> Loop:
        """Re-reads the 24 h usage of the users with waiting jobs (who is over a limit
        and held back from matching)."""

        async def step() -> None:
            if self.admission is not None:
                for user in self.broker.users():
                    self.admission.note(user, await self.job_usage(user, fresh=True))

        return Loop("job-quota", step, interval, logger=log)

    def _new(
        self,
        user: str,
        jdl: Jdl,
        text: str,
        state: JobState = S.WAITING,
        master: int = 0,
        index: int = 0,
    ) -> NewJob:
        return NewJob(
            user=user,
            jdl=text,
            state=state,
            master=master,
            requirements=jdl.requirements,
            packages=",".join(jdl.packages),
            ttl=jdl.ttl,
            cores=jdl.cpu_cores,
            memory=jdl.memory_size,
            price=jdl.price,
            split_index=index,
            output_dir=jdl.output_dir,
        )

    async def _enqueue(self, ids: list[int]) -> None:
        for job in await self.store.query(ids=ids, limit=len(ids)):
            if job.job_state is S.WAITING:
                self.broker.add(job)

    async def _with_collections(self, caller: Any, jdl: Jdl) -> Jdl:
        """The JDL with its InputDataCollection's files added to its InputData (as
        ``LF:`` entries, each once), which the split then distributes."""
        if self.collections is None:
            raise RequestError("InputDataCollection: no storage to read it here", EXIT_INVALID)
        inputs = dict.fromkeys(jdl.input_data)
        for spec in jdl.input_data_collection:
            for lfn in await self.collections(caller, spec):
                inputs.setdefault("LF:" + lfn, None)
        if len(inputs) > MAX_SUBJOBS:
            raise RequestError(f"{len(inputs)} input files, more than {MAX_SUBJOBS}", EXIT_INVALID)
        attributes = dict(jdl.attributes)
        attributes["inputdata"] = list(inputs)
        return _rebuild(jdl, attributes)

    def _split(self, jdl: Jdl, where: dict[str, tuple[str, ...]] | None = None) -> list[Jdl]:
        """Subjob JDLs by AliEn's strategies: production:A-B, file, directory, se."""
        strategy = jdl.split.lower()
        m = re.fullmatch(r"production:(\d+)-(\d+)", strategy)
        if m:
            first, last = int(m.group(1)), int(m.group(2))
            if last < first or last - first + 1 > MAX_SUBJOBS:
                raise RequestError(f"bad production range {jdl.split}", EXIT_INVALID)
            return [_with_counter(jdl, n) for n in range(first, last + 1)]
        inputs = jdl.input_data
        if not inputs:
            raise RequestError(
                f"Split={jdl.split} needs InputData or InputDataCollection", EXIT_INVALID
            )
        size = int(jdl.split_arguments.get("splitmaxinputfilenumber", "0") or 0)
        if strategy == "file":
            groups = [[lfn] for lfn in inputs]
        elif strategy in ("directory", "parentdirectory", "se"):
            # 'se' groups the files by the SEs that hold them (*where*: LFN -> SE names);
            # a file of no known replica goes by its directory, which keeps a dataset's
            # files (and usually their SE) together
            keyed: dict[str, list[str]] = {}
            for lfn in inputs:
                path = lfn.removeprefix("LF:")
                key = os.path.dirname(path)
                if strategy == "se" and where and where.get(path):
                    key = "se:" + ",".join(sorted(where[path]))
                if strategy == "parentdirectory":
                    key = os.path.dirname(key)
                keyed.setdefault(key, []).append(lfn)
            groups = list(keyed.values())
        else:
            raise RequestError(f"unknown Split strategy {jdl.split}", EXIT_INVALID)
        if size > 0:
            groups = [g[i : i + size] for g in groups for i in range(0, len(g), size)]
        if len(groups) > MAX_SUBJOBS:
            raise RequestError(f"{len(groups)} subjobs is more than {MAX_SUBJOBS}", EXIT_INVALID)
        return [_with_inputs(jdl, group, n) for n, group in enumerate(groups, 1)]

    # -- users' actions
    async def _own(self, caller: Any, job_id: int) -> JobRow:
        job = await self.store.get(job_id)
        if job.user != caller.login and not is_admin(caller):
            raise RequestError(
                f"Permission denied: job {job_id} belongs to {job.user}", EXIT_PERMISSION
            )
        return job

    async def kill(self, caller: Any, job_id: int) -> JobRow:
        job = await self._own(caller, job_id)
        subjobs = (
            await self.store.query(master=job_id, limit=MAX_SUBJOBS) if job.master == 0 else []
        )
        for sub in subjobs:
            if not sub.job_state.is_final:
                await self._kill_one(sub.id)
        if job.job_state.is_final:
            if subjobs:
                return job
            raise RequestError(f"job {job_id} has already ended ({job.state})", EXIT_INVALID)
        return await self._kill_one(job_id)

    async def _kill_one(self, job_id: int) -> JobRow:
        old, row = await self.store.transition(
            job_id, S.KILLED, message="killed", fields={"finished": _now()}
        )
        self._left_queue(old, row)
        push = self._agents.pop(job_id, None)
        if self.router is not None:  # the agent may have moved to another central since
            try:
                if await self.router.send_to_agent(job_id, "kill", {"queueId": job_id}):
                    push = None  # its central pushes it there
            except Exception as exc:  # killed in the task queue all the same
                log.warning("kill of job %d not sent to its central: %s", job_id, exc)
            self.router.release(job_id)
        if push is not None:
            push(Event(topic="kill", payload={"queueId": job_id}))
        return row

    def _left_queue(self, old: JobState, row: JobRow) -> None:
        """Keep the broker's books after a transition: a waiting job leaves its bucket, a
        job that leaves the active states (also via SAVED or ZOMBIE) frees its user's
        fair-share count, and a ZOMBIE whose agent reports again takes it back."""
        self._track(row)
        new = row.job_state
        if old is S.WAITING and new is not S.WAITING:
            self.broker.discard(row.id)
        elif old in ACTIVE and new not in ACTIVE:
            self.broker.finished(row.user)
        elif old is S.ZOMBIE and new in ACTIVE:
            self.broker.resumed(row.user)

    async def resubmit(self, caller: Any, job_id: int) -> JobRow:
        job = await self._own(caller, job_id)
        if job.job_state not in RESUBMITTABLE:
            raise RequestError(
                f"job {job_id} is {job.state}: only failed jobs can be resubmitted", EXIT_INVALID
            )
        return await self.requeue(job, "resubmitted")

    async def requeue(self, job: JobRow, message: str) -> JobRow:
        """Back to WAITING from where it is (a user's resubmit, or a lost agent's job)."""
        old, row = await self.store.transition(
            job.id,
            S.WAITING,
            expect=frozenset({job.job_state}),
            force=True,
            message=message,
            fields={
                "resubmits": job.resubmits + 1,
                "site": "",
                "node": "",
                "ce": "",
                "started": 0,
                "finished": 0,
                "exit_code": 0,
                "error": "",
            },
        )
        self._left_queue(old, row)
        self.broker.add(row)
        return row

    # -- the sites' calls
    def agent_for(self, offer: JobOffer) -> Agent:
        """The broker's view of an offer, its packages resolved (jobs.packages: raises
        UnknownDigest when the offer sent a digest this process has no list for)."""
        agent = Agent.of(offer)
        agent.packages = self.packages.resolve(offer)
        return agent

    def waiting_reason(self, job: JobRow) -> str:
        """Why a waiting job may wait long, if the grid says so: the packages it asks for
        that no node offered lately; "" otherwise."""
        wanted = [p for p in job.packages.split(",") if p]
        if job.job_state is not S.WAITING or not wanted:
            return ""
        if not self.packages.known():  # nobody said what they offer (central just started)
            return ""
        offered = self.packages.offered_anywhere()
        missing = package_names.missing(wanted, offered)
        if not missing:
            return ""
        return (
            f"waiting: no site offers {', '.join(missing)} "
            f"({len(offered)} package names offered lately; see packages)"
        )

    def count_waiting(self, agent: Agent) -> int:
        if self.admission is not None and self.admission.ce_refusal(agent.ce):
            return 0  # a closed CE: nothing for it
        return self.broker.count(agent)

    async def match(
        self, caller: Any, offer: JobOffer | Agent, push: Push | None
    ) -> MatchedJob | None:
        """The job for a site's offer, moved to ASSIGNED, with its job token; None: none."""
        agent = self.agent_for(offer) if isinstance(offer, JobOffer) else offer
        if self.admission is not None:
            why = self.admission.ce_refusal(agent.ce)
            if why:
                raise RequestError(why)
        refilled = False
        for _ in range(100):
            found = self.broker.match_job(agent, CLAIM_FALLBACKS)
            if found is None:
                if refilled or self.refill is None or not await self.refill():
                    return None
                refilled = True  # what other processes queued meanwhile: once more
                continue
            job_id, user, fallbacks = found
            # the database decides (another jcentral may have claimed it): atomic there,
            # batched with other agents' claims (TaskQueue.claim); the next jobs of the same
            # queue go along, taken if this one went elsewhere (brokers offer the same jobs)
            (row,) = await self.store.claim(
                [
                    Claim(
                        job_id=job_id,
                        fallbacks=fallbacks,
                        site=agent.site,
                        ce=agent.ce,
                        node=str(agent.extra.get("node", "")),
                        heartbeat=_now(),  # the watchdog's clock starts at assignment
                        message=f"assigned to {agent.ce or agent.site}",
                    )
                ]
            )
            if row is None or row.id != job_id:  # the broker's choice went elsewhere
                self.broker.finished(user)
                self.broker.contended()  # other processes match from the same jobs
                # so did the fallbacks before the one taken (all of them if none was)
                for stale in fallbacks:
                    if row is not None and stale == row.id:
                        self.broker.taken(row.id, row.user)
                        break
                    self.broker.discard(stale)
                if row is None:  # claimed elsewhere, killed or gone meanwhile: again
                    continue
                job_id = row.id
            self._track(row)
            if caller.serial:
                self.matched_by[job_id] = caller.serial
            self._hold(job_id, push)
            cert, key = await self._token(row)
            return MatchedJob(
                queue_id=job_id,
                user=row.user,
                jdl=row.jdl,
                output_dir=self.output_dir(row.user, job_id, row.output_dir),
                token_cert=cert,
                token_key=key,
            )
        return None

    async def _token(self, row: JobRow) -> tuple[str, str]:
        """The job token's certificate and key (PEM), or empty texts without a token CA."""
        if self.tokens is None:
            return "", ""
        subject = TokenSubject(TokenKind.JOB, login=row.user, extension=str(row.id))
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=self.token_hours)
        # Off the event loop although an EC token costs ~0.08 ms alone (~0.2 ms in a busy
        # server): measured on the real path (bench_jobs), to_thread gave ~2,100 matches/s per
        # server core against ~1,700 inline, and a lower p50 - the loop serves other requests
        # meanwhile and the task queue commits larger groups. An RSA token CA (~0.4 ms) or
        # RSA keys (~40 ms) must be off the loop anyway.
        cert, key = await asyncio.to_thread(self.tokens.issue, subject, expiry)
        self.job_tokens[row.id] = {cert.serial_number}  # a new run: earlier tokens are done
        return cert.public_bytes(Encoding.PEM).decode(), token_key_pem(key).decode()

    async def set_status(
        self, caller: Any, change: StatusChange, push: Push | None = None
    ) -> JobRow:
        """A site's report of a job's new state; its resource trace goes to the job's trace."""
        job_id = change.queue_id
        state = parse_state(change.state)  # a RequestError (22) for an unknown state
        fields: dict[str, Any] = {}
        if change.exit_code is not None:
            fields["exit_code"] = change.exit_code
        if change.error:
            fields["error"] = change.error[:MAX_TEXT]
        if change.node:
            fields["node"] = change.node
        message = change.trace_message()
        await self.check_job_caller(caller, job_id)
        stamp = _now()
        if state is S.STARTED:
            fields.setdefault("started", stamp)
        if state in FINAL:
            fields.setdefault("finished", stamp)
        fields["heartbeat"] = stamp
        old, row = await self.store.transition(job_id, state, fields=fields, message=message)
        self._left_queue(old, row)
        if state in FINAL:
            self._drop_agent(job_id)
        elif caller.kind is IdentityKind.JOBAGENT:  # the agent's own connection
            self._hold(job_id, push)
        return row

    async def force_state(
        self,
        job_id: int,
        state: JobState,
        *,
        expect: frozenset[JobState],
        message: str,
        fields: dict[str, Any] | None = None,
    ) -> JobRow:
        """A transition decided by central itself (the watchdog), not by a caller."""
        fields = dict(fields or {})
        if state in FINAL:
            fields["finished"] = _now()
        old, row = await self.store.transition(
            job_id, state, expect=expect, fields=fields, message=message
        )
        self._left_queue(old, row)
        if state in FINAL:
            self._drop_agent(job_id)
        return row

    async def heartbeat(self, caller: Any, job_id: int, push: Push | None = None) -> None:
        job = await self.check_job_caller(caller, job_id)
        await self.store.touch(job_id, {"heartbeat": _now()})
        if job.job_state is S.KILLED and push is not None:
            # a kill its agent may not have heard (its central died holding the push, or the
            # job's route was not written yet): said again at each heartbeat
            push(Event(topic="kill", payload={"queueId": job_id}))
        elif caller.kind is IdentityKind.JOBAGENT and not job.job_state.is_final:
            self._hold(job_id, push)

    async def check_job_caller(self, caller: Any, job_id: int) -> JobRow:
        """A job token acts for its own, living job only; sites and admins (the policy lets
        no one else here) for any."""
        job = await self.store.get(job_id)
        if caller.kind is IdentityKind.JOB:
            if caller.job_id != str(job_id):
                raise RequestError(
                    f"Permission denied: this token belongs to job {caller.job_id}, not {job_id}",
                    EXIT_PERMISSION,
                )
            if job.job_state.is_final:
                raise RequestError(
                    f"Permission denied: job {job_id} has ended; its token is revoked",
                    EXIT_PERMISSION,
                )
            return job
        return job


def _revoked(job_id: int) -> str:
    return f"Permission denied: job {job_id} is not running: its token is revoked"


def _not_theirs(job_id: int, login: str) -> str:
    return f"Permission denied: job {job_id} does not belong to {login}"


def _now() -> int:
    return int(time.time() * 1000)


def _with_counter(jdl: Jdl, n: int) -> Jdl:
    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("#alien_counter#", str(n)).replace(
                "#alien_counter_03i#", f"{n:03d}"
            )
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    attributes = {k: sub(v) for k, v in jdl.attributes.items() if k != "split"}
    return _rebuild(jdl, attributes)


def _with_inputs(jdl: Jdl, inputs: list[str], n: int) -> Jdl:
    attributes = {k: v for k, v in jdl.attributes.items() if not k.startswith("split")}
    attributes["inputdata"] = list(inputs)
    return _with_counter(_rebuild(jdl, attributes), n)


def _rebuild(jdl: Jdl, attributes: dict[str, Any]) -> Jdl:
    text = render_jdl(Jdl(executable=jdl.executable, attributes=attributes))
    return parse_jdl(text)
