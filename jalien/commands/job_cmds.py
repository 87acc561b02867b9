"""Job commands for users (submit, ps, jobinfo, masterjob, kill, resubmit, top) and the
calls sites make (getNumberWaitingJobs, getMatchJob, setJobStatus, jobHeartbeat)."""

from __future__ import annotations

import os.path
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jalien.auth.policy import Action as A
from jalien.commands.errno import EINVAL, ENOENT, jalien_error
from jalien.commands.options import parse
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.jobs.broker import Agent
from jalien.jobs.jdl import parse_jdl
from jalien.jobs.service import JobService
from jalien.jobs.states import JobState, parse_state
from jalien.jobs.store import JobRow
from jalien.wire import site_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Record, Reply, Request
from jalien.wire.site_api import JobOffer, StatusChange, WaitingJobs

STATE_GROUPS = {
    "-W": frozenset({JobState.WAITING, JobState.INSERTING}),
    "-E": frozenset(s for s in JobState if s.value.startswith("ERROR_")),
}


def _ids(words: list[str]) -> list[int]:
    out = []
    for word in words:
        for part in word.split(","):
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise jalien_error(EINVAL, f"not a job id: {part}") from None
    if not out:
        raise jalien_error(EINVAL, "Command requires a job id")
    return out


def _name(job: JobRow) -> str:
    try:
        return os.path.basename(parse_jdl(job.jdl).executable)
    except ValueError:
        return "?"


def _ps_record(job: JobRow) -> Record:
    name = _name(job)
    return {
        "id": str(job.id),
        "owner": job.user,
        "status": job.state,
        "name": name,
        "site": job.site,
        "node": job.node,
        "master": str(job.master),
        "priority": str(job.price),
        "ce": job.ce,
        "message": f"{job.user:>12} {job.id:>12} {job.state:<12} {job.site or '-':<24} {name}",
    }


SITE_CALLS = frozenset({"getNumberWaitingJobs", "getMatchJob", "setJobStatus"})
"""Raw commands (they see the Request): typed in Request.data on the binary channel
(jalien.wire.site_api), JAliEn's key=value words from JSON clients and previous versions."""


def _words(request: Request) -> list[str]:
    """The words of a site call without the global options (-nomsg, -pwd=...): a raw
    command gets them as sent. No site call word starts with '-'."""
    return [w for w in request.options if not w.startswith("-")]


T = TypeVar("T", bound=site_api.SiteMessage)


def _typed(request: Request, kind: type[T]) -> T | None:
    """The request's typed site message, None for a words-only request (EINVAL if bad)."""
    if not request.data:
        return None
    data = request.data[0]
    try:
        return site_api.decode(data, kind)
    except site_api.SiteApiError as exc:
        raise jalien_error(EINVAL, f"{request.command}: {exc}") from None


def _offer(request: Request) -> tuple[JobOffer, bool]:
    """The offer of a site call and whether it came typed."""
    offer = _typed(request, JobOffer)
    if offer is not None:
        return offer, True
    try:
        return site_api.offer_from_words(_words(request)), False
    except site_api.SiteApiError as exc:
        raise jalien_error(EINVAL, str(exc)) from None


ReadFile = Callable[[Session, str], Awaitable[bytes]]


class JobCommands:
    def __init__(
        self, table: CommandTable, jobs: JobService, read_file: ReadFile | None = None
    ) -> None:
        self.table = table
        self.jobs = jobs
        self.read_file = read_file  # how a JDL named by its LFN is read (storage)

    def _add(self, name: str, fn: Any, summary: str, **how: Any) -> None:
        """The table's add; the site calls are raw: they read the typed Request.data."""
        if name in SITE_CALLS:
            how["raw"] = True
        self.table.add(name, fn, summary, **how)

    def register(self) -> None:
        add = self._add
        add(
            "submit",
            self.submit,
            "submit a job: submit =< <JDL text> [args] | submit <lfn>",
            action=A.SUBMIT,
        )
        add(
            "ps",
            self.ps,
            "jobs: ps [-u user] [-f states] [-s site] [-j ids] [-M] [-A] [-trace id] [-jdl id]",
            action=A.JOB_READ,
        )
        add("jobinfo", self.jobinfo, "a job's details: jobinfo id", action=A.JOB_READ)
        add(
            "masterjob",
            self.masterjob,
            "a master job's subjobs by state: masterjob id",
            action=A.JOB_READ,
        )
        add("kill", self.kill, "kill jobs: kill id...", action=A.JOB_CONTROL)
        add("resubmit", self.resubmit, "resubmit failed jobs: resubmit id...", action=A.JOB_CONTROL)
        add("top", self.top, "the task queue by state and user", action=A.JOB_READ)
        add(
            "getNumberWaitingJobs",
            self.waiting,
            "site call: waiting jobs matching key=value",
            action=A.MATCH,
        )
        add(
            "getMatchJob",
            self.match,
            "site call: a job for this agent (key=value resources)",
            action=A.MATCH,
        )
        add(
            "setJobStatus",
            self.set_status,
            "site/job call: setJobStatus id STATE [k=v...]",
            action=A.JOB_STATE,
        )
        add("jobHeartbeat", self.heartbeat, "site/job call: jobHeartbeat id", action=A.JOB_STATE)

    async def submit(self, session: Session, args: list[str]) -> list[Record]:
        if not args:
            raise jalien_error(EINVAL, "Command requires an argument")
        if args[0] == "=<":
            if len(args) < 2:
                raise jalien_error(EINVAL, "no JDL text after =<")
            text, rest = args[1], args[2:]
        elif args[0].startswith("=<"):
            text, rest = args[0][2:].lstrip(), args[1:]
        elif self.read_file is not None:
            data = await self.read_file(session, args[0])
            try:
                text = data.decode()
            except UnicodeDecodeError:
                raise jalien_error(EINVAL, f"{args[0]} is not a text JDL") from None
            rest = args[1:]
        else:
            raise jalien_error(
                ENOENT,
                f"{args[0]}: reading a JDL from the catalogue needs storage; pass the JDL "
                "text with 'submit =< <JDL text>'",
            )
        ids = await self.jobs.submit(session.identity, text, rest)
        return [{"jobId": str(i), "message": f"Your new job ID is {i}"} for i in ids]

    async def ps(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(
            args,
            flags=["M", "A", "W", "E", "a", "b", "X"],
            valued=["u", "f", "s", "j", "m", "l", "trace", "jdl", "n", "o", "F"],
        )
        if "trace" in opts:
            job_id = _ids([opts.value("trace")])[0]
            await self._visible(session, job_id)
            lines = [
                f"{stamp // 1000} [{state:<10}]: {message}"
                for stamp, state, message in await self.jobs.store.trace(job_id)
            ]
            return [{"id": str(job_id), "message": "\n".join(lines)}]
        if "jdl" in opts:
            job = await self._visible(session, _ids([opts.value("jdl")])[0])
            return [{"id": str(job.id), "jdl": job.jdl, "message": job.jdl.rstrip()}]
        states: frozenset[JobState] | None = None
        if "f" in opts:
            names = [s for v in opts.values["f"] for s in v.split(",") if s]
            states = frozenset(parse_state(n) for n in names if n.upper() != "ALL") or None
        for flag, group in STATE_GROUPS.items():
            if flag[1:] in opts:
                states = (states or frozenset()) | group
        user = opts.value("u") or ("" if "A" in opts else session.identity.login)
        if user == "%":
            user = ""
        rows = await self.jobs.store.query(
            user=user,
            states=states,
            site=opts.value("s"),
            master=_ids([opts.value("m")])[0] if "m" in opts else (0 if "M" in opts else None),
            ids=_ids(opts.values["j"]) if "j" in opts else None,
            limit=opts.number("l", 2000),
        )
        return [_ps_record(r) for r in rows]

    async def _visible(self, session: Session, job_id: int) -> JobRow:
        """Any user may look at any job, as in JAliEn; only owners change them."""
        return await self.jobs.store.get(job_id)

    async def jobinfo(self, session: Session, args: list[str]) -> list[Record]:
        job = await self._visible(session, _ids(args)[0])
        fields = {
            "id": job.id,
            "master": job.master,
            "owner": job.user,
            "status": job.state,
            "site": job.site,
            "ce": job.ce,
            "node": job.node,
            "ttl": job.ttl,
            "cores": job.cores,
            "memory": job.memory,
            "price": job.price,
            "submitted": job.submitted,
            "started": job.started,
            "finished": job.finished,
            "heartbeat": job.heartbeat,
            "exitcode": job.exit_code,
            "error": job.error,
            "resubmits": job.resubmits,
            "outputDir": job.output_dir,
        }
        record: Record = {k: str(v) for k, v in fields.items()}
        record["message"] = "\n".join(f"{k:>12}: {v}" for k, v in fields.items())
        return [record]

    async def masterjob(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(args, valued=["status"])
        job_id = _ids(opts.args)[0]
        master = await self._visible(session, job_id)
        subjobs = await self.jobs.store.query(master=job_id, limit=100_000)
        wanted = parse_state(opts.value("status")) if "status" in opts else None
        counts: dict[str, int] = {}
        for sub in subjobs:
            counts[sub.state] = counts.get(sub.state, 0) + 1
        lines = [f"Job {job_id} ({master.state}) has {len(subjobs)} subjobs"]
        lines += [f"  {state:<12} {n}" for state, n in sorted(counts.items())]
        records: list[Record] = [
            {
                "id": str(job_id),
                "status": master.state,
                "subjobs": str(len(subjobs)),
                "message": "\n".join(lines),
                **{f"count_{k}": str(v) for k, v in counts.items()},
            }
        ]
        if wanted is not None:
            records += [_ps_record(s) for s in subjobs if s.job_state is wanted]
        return records

    async def kill(self, session: Session, args: list[str]) -> list[Record]:
        records: list[Record] = []
        error: RequestError | None = None
        for job_id in _ids(args):
            try:
                await self.jobs.kill(session.identity, job_id)
                records.append({"id": str(job_id), "message": f"Job {job_id} killed"})
            except RequestError as exc:
                error = exc
        if error is not None and not records:
            raise error
        return records

    async def resubmit(self, session: Session, args: list[str]) -> list[Record]:
        records: list[Record] = []
        for job_id in _ids(args):
            await self.jobs.resubmit(session.identity, job_id)
            records.append({"id": str(job_id), "message": f"Job {job_id} resubmitted"})
        return records

    async def top(self, session: Session, args: list[str]) -> list[Record]:
        summary = await self.jobs.store.summary()
        lines = [f"{state:<12} {n:>10}" for state, n in sorted(summary.items())]
        record: Record = {k: str(v) for k, v in summary.items()}
        record["message"] = "\n".join(lines) if lines else "the task queue is empty"
        record["broker_waiting"] = str(len(self.jobs.broker))
        return [record]

    # -- site calls (raw: a typed request is answered typed, words with JAliEn's records)
    def waiting(self, session: Session, request: Request) -> Reply:
        offer, typed = _offer(request)
        count = self.jobs.count_waiting(Agent.of(offer))
        if typed:
            return Reply(data=[site_api.encode(WaitingJobs(count=count))])
        return Reply(results=[{"count": str(count), "message": str(count)}])

    async def match(self, session: Session, request: Request) -> Reply:
        offer, typed = _offer(request)
        found = await self.jobs.match(session.identity, offer, session.push)
        if typed:
            return Reply(data=[] if found is None else [site_api.encode(found)])
        return Reply(results=[dict(site_api.NO_JOB_RECORD) if found is None else found.record()])

    async def set_status(self, session: Session, request: Request) -> Reply:
        change = _typed(request, StatusChange)
        if change is None:
            try:
                change = site_api.status_from_words(_words(request))
            except site_api.SiteApiError as exc:
                raise jalien_error(EINVAL, str(exc)) from None
        row = await self.jobs.set_status(session.identity, change)
        if request.data:
            return Reply()
        return Reply(
            results=[
                {"id": str(row.id), "status": row.state, "message": f"job {row.id} is {row.state}"}
            ]
        )

    async def heartbeat(self, session: Session, args: list[str]) -> list[Record]:
        job_id = _ids(args[:1])[0]
        await self.jobs.heartbeat(session.identity, job_id)
        return [{"id": str(job_id), "time": str(int(time.time())), "message": "ok"}]
