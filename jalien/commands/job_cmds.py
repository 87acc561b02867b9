"""Job commands for users (submit, ps, jobinfo, masterjob, jobListMatch, registerOutput,
kill, resubmit, top, packages) and the calls sites make (getNumberWaitingJobs, getMatchJob,
setJobStatus, jobHeartbeat)."""

from __future__ import annotations

import fnmatch
import os.path
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec

from jalien.auth.policy import Action as A
from jalien.catalogue.service import Catalogue
from jalien.commands.errno import EINVAL, ENODATA, ENOENT, EPERM, jalien_error
from jalien.commands.options import Options, parse
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.jobs.broker import Agent, Broker
from jalien.jobs.jdl import parse_jdl
from jalien.jobs.packages import UnknownDigest
from jalien.jobs.service import JobService
from jalien.jobs.states import FINAL, JobState, parse_state
from jalien.jobs.store import JobRow
from jalien.wire import site_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Record, Reply, Request
from jalien.wire.site_api import JobOffer, PackagesWanted, StatusChange, WaitingJobs

S = JobState
WAITING_STATES = frozenset({S.INSERTING, S.SPLITTING, S.WAITING, S.TO_STAGE})
RUNNING_STATES = frozenset({S.ASSIGNED, S.STARTED, S.RUNNING, S.SAVING, S.SAVED})
DONE_STATES = frozenset({S.DONE, S.DONE_WARN})
ERROR_STATES = frozenset(s for s in JobState if s.is_error)
FLAG_GROUPS: dict[str, frozenset[JobState]] = {
    # JAliEn's ps -f letters: running, queued, failed, done, terminated, waiting
    "r": RUNNING_STATES,
    "q": WAITING_STATES | {S.ASSIGNED},
    "f": ERROR_STATES,
    "d": DONE_STATES,
    "t": FINAL,
    "s": WAITING_STATES,
}
STATE_GROUPS = {"-W": WAITING_STATES, "-E": ERROR_STATES}

SHORT_CODES: dict[JobState, str] = {
    # JAliEn's abbreviations of the states (JAliEnCommandps's abbrvStatus)
    S.KILLED: "K", S.RUNNING: "R", S.STARTED: "ST", S.DONE: "D", S.DONE_WARN: "DW",
    S.WAITING: "W", S.INSERTING: "I", S.SPLIT: "S", S.SPLITTING: "SP", S.SAVING: "SV",
    S.SAVED: "SVD", S.ASSIGNED: "ASG", S.TO_STAGE: "TST", S.ERROR_A: "EA", S.ERROR_E: "EE",
    S.ERROR_I: "EI", S.ERROR_IB: "EIB", S.ERROR_S: "ES", S.ERROR_SV: "ESV", S.ERROR_V: "EV",
    S.ERROR_VN: "EVN", S.ERROR_SPLT: "ESP", S.ERROR_EW: "EW", S.FAILED: "FF", S.ZOMBIE: "Z",
    S.EXPIRED: "XP",
}  # fmt: skip
BY_CODE = {code: state for state, code in reversed(SHORT_CODES.items())}


def short_code(state: str) -> str:
    """A state as ps prints it: JAliEn's code right-aligned in 3 columns."""
    try:
        return f"{SHORT_CODES[JobState(state)]:>3}"
    except (ValueError, KeyError):
        return "NUL"


def states_of(value: str) -> frozenset[JobState] | None:
    """ps -f: JAliEn's letters (``a`` all, ``r`` ``q`` ``f`` ``d`` ``t`` ``s``, with or
    without a dash, lower case) or a comma list of state names or short codes (``DONE``,
    ``D``, ``ERROR_ALL``, ``DONE_ANY``, ``%``/``ANY``). None: any state."""
    letters = value[1:] if value.startswith("-") else value
    if value.startswith("-") or (letters and letters.islower() and set(letters) <= set("arqfdts")):
        if not letters or "a" in letters:
            return None
        out: set[JobState] = set()
        for letter in letters:
            if letter not in FLAG_GROUPS:
                raise jalien_error(EINVAL, f"unknown state letter {letter!r} in -f {value}")
            out |= FLAG_GROUPS[letter]
        return frozenset(out)
    states: set[JobState] = set()
    for word in (w.strip().upper() for w in value.split(",")):
        if not word:
            continue
        if word in ("%", "ANY", "ALL"):
            return None
        if word in ("ERROR_ALL", "ERROR_ANY"):
            states |= ERROR_STATES
        elif word == "DONE_ANY":
            states |= DONE_STATES
        elif word in BY_CODE:
            states.add(BY_CODE[word])
        else:
            states.add(parse_state(word))
    return frozenset(states) or None


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


def _priority(job: JobRow) -> str:
    """JAliEn shows a priority only for jobs still to run, ``___`` for the others."""
    if job.state in ("WAITING", "INSERTING"):
        return f"{int(job.price):>3}"
    return "___"


def ps_line(job: JobRow, name: str, long: bool = False) -> str:
    """One line of ps as JAliEn prints it (-L: with the site and the node)."""
    if long:
        return (
            f"{job.user:>10}    {job.id:>10}  {_priority(job)}  {job.site:>38}  "
            f"{job.node:>40}  {short_code(job.state)}  {name:>30}"
        )
    return f"{job.user:>10} {job.id:>10}  {_priority(job)}  {short_code(job.state)}  {name:>32}"


def _ps_record(job: JobRow, long: bool = False) -> Record:
    """JAliEn's ps record: owner, id, split (the master job), priority, status (the full
    name), name, site, node; ``id `` as JAliEn spells it too (alien.py's jobList reads it)."""
    name = _name(job)
    return {
        "id": str(job.id),
        "id ": str(job.id),
        "owner": job.user,
        "split": str(job.master),
        "status": job.state,
        "name": name,
        "site": job.site,
        "node": job.node,
        "master": str(job.master),
        "priority": str(int(job.price)),
        "ce": job.ce,
        "message": ps_line(job, name, long),
    }


def trace_text(rows: list[tuple[int, str, str]]) -> str:
    """A job's trace as JAliEn's trace log: ``<seconds> [state     ]: Job state transition
    from A to B`` for each state and ``[trace     ]: <message>`` for what came with it (the
    tags alien.py's jobInfo sorts by)."""
    lines: list[str] = []
    previous = ""
    for stamp, state, message in rows:
        seconds = stamp // 1000
        change = f"from {previous} to {state}" if previous and previous != state else f"to {state}"
        lines.append(f"{seconds} [state     ]: Job state transition {change}")
        if message:
            lines.append(f"{seconds} [trace     ]: {message}")
        previous = state
    return "\n".join(lines)


PS_FLAGS = ("M", "A", "W", "E", "a", "b", "X", "L", "Fl", "id")
PS_VALUED = ("u", "f", "s", "j", "m", "l", "n", "o", "F", "q")
PS_USAGE = (
    "usage: ps [-options]\n"
    "options:\n"
    "    -F l | -Fl | -L     : long output format\n"
    "    -f <flags|status>   : a|r|q|f|d|t|s (all, running, queued, failed, done, final, "
    "waiting) or states (DONE, D, ERROR_ALL, ...)\n"
    "    -u <userlist>\n    -s <sitelist>\n    -n <nodelist>\n    -m <masterjoblist>\n"
    "    -o <sortkey>\n    -j <jobidlist>\n    -l <query-limit>\n"
    "    -M                  : show only masterjobs\n"
    "    -X                  : active jobs in extended format\n"
    "    -A                  : select all owned jobs of you\n"
    "    -W                  : select all jobs which are waiting for execution of you\n"
    "    -E                  : select all jobs which are in error state of you\n"
    "    -a                  : select jobs of all users\n"
    "    -b                  : do only black-white output\n"
    "    -id                 : only the job IDs\n"
    "    -jdl [<jobid>]      : display the job jdl (with -j: in each job's record)\n"
    "    -trace [<jobid>]    : display the job trace (with -j: in each job's record)"
)


def optional_values(words: list[str], names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Take out the options whose argument is optional (JAliEn's ps -trace [id], -jdl [id]):
    a number after one is its value. The rest of the words and {name: value or ""}."""
    rest: list[str] = []
    found: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, inline = word.lstrip("-").partition("=")
        if word.startswith("-") and name in names:
            if eq:
                found[name] = inline
            elif i + 1 < len(words) and words[i + 1].replace(",", "").isdigit():
                found[name] = words[i + 1]
                i += 1
            else:
                found[name] = ""
        else:
            rest.append(word)
        i += 1
    return rest, found


def with_usage(parse_: Callable[[], Options], usage: str) -> Options:
    """Options parsed; a bad option is EINVAL with the command's usage, as JAliEn prints
    its help when jopt refuses the options."""
    try:
        return parse_()
    except RequestError as exc:
        raise jalien_error(
            EINVAL, f"{str(exc).removeprefix('Invalid argument : ')}\n{usage}"
        ) from None


def _list(opts: Options, name: str) -> list[str]:
    return [part for value in opts.values.get(name, []) for part in value.split(",") if part]


def ps_query(opts: Options, login: str) -> dict[str, Any]:
    """ps's options as JAliEn reads them, made into a task queue query (with ``users`` and
    ``sites``: lists filtered after the query when there is more than one)."""
    states: frozenset[JobState] | None = None
    users = _list(opts, "u")
    everyone = "a" in opts or "%" in users
    if "j" in opts:
        everyone = True  # any user's job by its id, as JAliEn
    if "X" in opts:
        states = RUNNING_STATES | WAITING_STATES
    for flag, group in STATE_GROUPS.items():
        if flag[1:] in opts:
            states = (states or frozenset()) | group
    if "f" in opts:
        states = states_of(opts.value("f"))
    if "A" in opts:
        states = None
    sites = _list(opts, "s")
    if everyone:
        users = []
    elif not users:
        users = [login]
    master: int | None = None
    if "M" in opts:
        master = 0
    elif "m" in opts:
        master = _ids(opts.values["m"])[0]
    limit = opts.number("l", 2000)
    query: dict[str, Any] = {
        "user": users[0] if len(users) == 1 else "",
        "states": states,
        "site": sites[0] if len(sites) == 1 else "",
        "master": master,
        "ids": _ids(opts.values["j"]) if "j" in opts else None,
        "limit": limit if limit > 0 else 2000,
        "users": set(users) if len(users) > 1 else set(),
        "sites": set(sites) if len(sites) > 1 else set(),
    }
    return query


MASTERJOB_USAGE = (
    "usage: masterjob <jobId> [-options]\n"
    "options:\n"
    "    -status <status>    : display only the subjobs with that status\n"
    "    -site <site>        : display only the subjobs on that site\n"
    "    -id <id>            : only these subjobs (comma separated)\n"
    "    -printid            : print also the id of all the subjobs\n"
    "    -printsite          : split the number of jobs according to the execution site"
)


def masterjob_records(
    master: JobRow, subjobs: list[JobRow], printid: bool, printsite: bool
) -> list[Record]:
    """masterjob's answer as JAliEn gives it: the master, its subjobs counted by state
    (with their ids: -printid), by site and state (-printsite)."""
    by_state: dict[str, list[int]] = {}
    for sub in sorted(subjobs, key=lambda s: s.id):
        by_state.setdefault(sub.state, []).append(sub.id)
    lines = [
        f"Checking the masterjob {master.id}",
        f"The job {master.id} is in status: {master.state}",
    ]
    lines.append(f"It has the following subjobs: {len(subjobs)}")
    for state, ids in sorted(by_state.items()):
        line = f"\t\tSubjobs in {state}: {len(ids)}"
        if printid:
            line += f" (ids: {','.join(map(str, ids))})"
        lines.append(line)
    record: Record = {
        "id": str(master.id),
        "status": master.state,
        "subjobs": str(len(subjobs)),
        **{f"count_{k}": str(len(v)) for k, v in by_state.items()},
    }
    if printid:
        record.update({f"ids_{k}": ",".join(map(str, v)) for k, v in by_state.items()})
    if printsite:
        by_site: dict[str, dict[str, int]] = {}
        for sub in subjobs:
            counts = by_site.setdefault(sub.site or "-", {})
            counts[sub.state] = counts.get(sub.state, 0) + 1
        lines.append(f"In total, there are {len(by_site)} sites:")
        for site, counts in sorted(by_site.items()):
            states = ", ".join(f"{state}: {n}" for state, n in sorted(counts.items()))
            lines.append(f"\t{site}: {sum(counts.values())} subjobs ({states})")
            record[f"site_{site}"] = str(sum(counts.values()))
    record["message"] = "\n".join(lines)
    return [record]


REGISTERABLE = frozenset({"ERROR_V", "ERROR_E", "ERROR_S"})  # registerOutput's states
MAX_AGENTS = 10_000  # (site, CE) pairs remembered for jobListMatch
SHARED_EVERY = 30.0  # seconds between two writes of one (site, CE) to the shared store
SHARED_TTL = 86400.0


class SeenStore(Protocol):
    """Where the workers of a jcentral share the agents that asked (the role's cache)."""

    def put(self, key: bytes, value: bytes, ttl: float) -> None: ...
    def scan(self) -> list[tuple[bytes, bytes]]: ...


class _Asked(msgspec.Struct, array_like=True):
    agent: Agent
    seen: float


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
        self,
        table: CommandTable,
        jobs: JobService,
        read_file: ReadFile | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.table = table
        self.jobs = jobs
        self.read_file = read_file  # how a JDL named by its LFN is read (storage)
        self.catalogue = catalogue  # registerOutput looks at a job's output directory
        # the JobAgents that asked for work lately, by (site, CE): what jobListMatch checks
        self.agents: dict[tuple[str, str], tuple[Agent, float]] = {}
        # the other workers' (roles/workers.py), through the shared cache; set by the role
        self.shared_seen: SeenStore | None = None
        self._shared_at: dict[tuple[str, str], float] = {}  # when we last wrote each there

    def _seen(self, agent: Agent) -> None:
        key = (agent.site, agent.ce)
        if len(self.agents) >= MAX_AGENTS and key not in self.agents:
            oldest = min(self.agents, key=lambda k: self.agents[k][1])
            del self.agents[oldest]
            self._shared_at.pop(oldest, None)
        now = time.time()
        self.agents[key] = (agent, now)
        shared = self.shared_seen
        if shared is not None and now - self._shared_at.get(key, 0.0) >= SHARED_EVERY:
            self._shared_at[key] = now
            raw = _asked_encoder.encode(_Asked(agent, now))
            shared.put(f"{agent.site}\n{agent.ce}".encode(), raw, SHARED_TTL)

    def _asked(self) -> dict[tuple[str, str], tuple[Agent, float]]:
        """The agents that asked lately: here, and at the other workers (the latest wins)."""
        if self.shared_seen is None:
            return self.agents
        merged = dict(self.agents)
        for key, raw in self.shared_seen.scan():
            try:
                site, _, ce = key.decode().partition("\n")
                asked = _asked_decoder.decode(raw)
            except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            have = merged.get((site, ce))
            if have is None or have[1] < asked.seen:
                merged[(site, ce)] = (asked.agent, asked.seen)
        return merged

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
            "jobs: ps [-u users] [-f a|r|q|f|d|t|s|states] [-s sites] [-j ids] [-m id] [-M] [-A] "
            "[-a] [-W] [-E] [-X] [-L] [-id] [-l n] [-trace [id]] [-jdl [id]]",
            action=A.JOB_READ,
        )
        add("jobinfo", self.jobinfo, "a job's details: jobinfo id", action=A.JOB_READ)
        add(
            "masterjob",
            self.masterjob,
            "a master job's subjobs by state: masterjob id [-status s] [-site s] [-id ids] "
            "[-printid] [-printsite]",
            action=A.JOB_READ,
        )
        add(
            "jobListMatch",
            self.job_list_match,
            "the sites and CEs that asked lately and could run a job: jobListMatch id",
            action=A.JOB_READ,
            args=Args(min=1, max=1, words=True, usage="usage: jobListMatch <jobId>"),
        )
        add(
            "registerOutput",
            self.register_output,
            "the outputs of a failed job in its output directory: registerOutput <job ID>",
            action=A.JOB_CONTROL,
            args=Args(min=1, max=1, words=True, usage="usage: registerOutput <job ID>"),
        )
        add("kill", self.kill, "kill jobs: kill id...", action=A.JOB_CONTROL)
        add("resubmit", self.resubmit, "resubmit failed jobs: resubmit id...", action=A.JOB_CONTROL)
        add("top", self.top, "the task queue by state and user", action=A.JOB_READ)
        add(
            "packages",
            self.packages,
            "the packages the grid's nodes offer: packages [-l] [pattern]",
            action=A.JOB_READ,
            args=Args(max=1, flags=("l",), usage="usage: packages [-l] [pattern]"),
        )
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
        words, wanted = optional_values(args, ("trace", "jdl"))
        opts = with_usage(lambda: parse(words, flags=PS_FLAGS, valued=PS_VALUED), PS_USAGE)
        if opts.args:
            raise jalien_error(EINVAL, f"ps takes no arguments: {' '.join(opts.args)}\n{PS_USAGE}")
        for name in ("jdl", "trace"):
            # JAliEn: -jdl ID / -trace ID answer that one job's JDL or trace
            given = wanted.get(name)
            if given:
                job_id = _ids([given])[0]
                job = await self._visible(session, job_id)
                if name == "jdl":
                    return [{"id": str(job.id), "jdl": job.jdl, "message": job.jdl.rstrip()}]
                text = trace_text(await self.jobs.store.trace(job_id))
                if not text:
                    raise jalien_error(ENODATA, f"No trace information for {job_id}")
                reason = self.jobs.waiting_reason(job)  # now, not stored: the grid changes
                if reason:
                    text += f"\n{int(time.time())} [trace     ]: {reason}"
                return [{"id": str(job_id), "trace": text, "message": text}]
        query = ps_query(opts, session.identity.login)
        users, sites = query.pop("users"), query.pop("sites")
        rows = await self.jobs.store.query(**query)
        if users:
            rows = [r for r in rows if r.user in users]
        if sites:
            rows = [r for r in rows if r.site in sites]
        long = bool(opts.flags & {"L", "Fl", "X"}) or opts.value("F") == "l"
        records = [_ps_record(r, long) for r in rows]
        if "id" in opts:
            for record in records:
                record["message"] = record["id"]
        if wanted:  # ps -j ID -trace -jdl: the records carry them (alien.py's jobInfo)
            for record, row in zip(records, rows, strict=True):
                if "trace" in wanted:
                    record["trace"] = trace_text(await self.jobs.store.trace(row.id))
                if "jdl" in wanted:
                    record["jdl"] = row.jdl
        return records

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
        opts = with_usage(
            lambda: parse(args, flags=("printid", "printsite"), valued=("status", "site", "id")),
            MASTERJOB_USAGE,
        )
        if not opts.args:
            raise jalien_error(EINVAL, f"Command requires a job id\n{MASTERJOB_USAGE}")
        job_id = _ids(opts.args[:1])[0]
        master = await self._visible(session, job_id)
        subjobs = await self.jobs.store.query(master=job_id, limit=100_000)
        if "status" in opts:
            wanted = states_of(opts.value("status"))
            subjobs = [s for s in subjobs if wanted is None or s.job_state in wanted]
        if "site" in opts:
            subjobs = [s for s in subjobs if s.site in _list(opts, "site")]
        if "id" in opts:
            subjobs = [s for s in subjobs if s.id in _ids(opts.values["id"])]
        records = masterjob_records(master, subjobs, "printid" in opts, "printsite" in opts)
        if "status" in opts or "printid" in opts:  # the subjobs themselves, as ps lists them
            records += [_ps_record(s) for s in subjobs]
        return records

    async def job_list_match(self, session: Session, opts: Options) -> list[Record]:
        job = await self._visible(session, _ids(opts.args)[0])
        probe = Broker()  # the broker's own test, on this job alone
        probe.add(job)
        records: list[Record] = []
        asked = self._asked()
        for (site, ce), (agent, seen) in sorted(asked.items()):
            if probe.count(agent):
                records.append(
                    {
                        "site": site,
                        "ce": ce,
                        "lastSeen": str(int(seen)),
                        "message": f"{site:<30} {ce}",
                    }
                )
        if not records:
            text = f"No site has asked for a job like {job.id} lately ({len(asked)} asked)"
            reason = self.jobs.waiting_reason(job)
            if reason:
                text += f"\n{reason}"
            return [{"message": text, "id": str(job.id)}]
        head: Record = {"message": f"Job {job.id} ({job.state}) could run on {len(records)} CEs:"}
        return [head, *records]

    async def register_output(self, session: Session, opts: Options) -> list[Record]:
        """JAliEn's checks (a subjob or single job, ERROR_V or ERROR_E - ERROR_S here too,
        where an upload failed - of a user the caller may act for, with outputs in its
        JDL), then the outputs found in its output directory. The JobAgent registers each
        output as it uploads it (commit), so there is nothing booked and unregistered to
        add: what is listed is what the job left registered."""
        try:
            job_id = int(opts.args[0])
        except ValueError:
            raise jalien_error(EINVAL, f"Invalid job ID: {opts.args[0]}") from None
        job = await self._visible(session, job_id)
        if await self.jobs.store.query(master=job_id, limit=1):
            raise jalien_error(
                EINVAL,
                f"Job ID {job_id} is a masterjob, you can only register the output of a "
                "failed (sub)job",
            )
        if job.state not in REGISTERABLE:
            raise jalien_error(
                EINVAL,
                f"Job ID {job_id} is in state {job.state}. You can only register ERROR_V jobs "
                "(or ERROR_E when OutputErrorE exists).",
            )
        identity = session.identity
        if job.user != identity.login and "admin" not in identity.roles:
            raise RequestError(
                f"You ({identity.login}) are not allowed to work on {job.user}'s jobs", EPERM
            )
        try:
            jdl = parse_jdl(job.jdl)
        except ValueError:
            raise jalien_error(EINVAL, f"Cannot parse the JDL of {job_id}") from None
        names = [spec.name for spec in [*jdl.output_file, *jdl.output_archive]]
        if not names:
            raise jalien_error(
                ENODATA,
                f"No files are expected to be registered by job ID {job_id} according to its JDL",
            )
        directory = self.jobs.output_dir(job.user, job.id, job.output_dir)
        found: list[str] = []
        if self.catalogue is not None:
            for name in names:
                entry = await self.catalogue.get(directory + name)
                if entry is not None and entry.type == "f":
                    found.append(entry.path)
        if not found:
            raise jalien_error(ENODATA, f"No output of job {job_id} is in {directory}")
        return [{"lfn": lfn, "message": f"  {lfn}"} for lfn in found]

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
        active = await self.jobs.store.active_by_user()  # the live ones: assigned .. saving
        if active:
            lines += ["active jobs by user:"]
            lines += [f"  {user:<10} {n:>10}" for user, n in sorted(active.items())]
        record: Record = {k: str(v) for k, v in summary.items()}
        record["message"] = "\n".join(lines) if lines else "the task queue is empty"
        record["broker_waiting"] = str(len(self.jobs.broker))
        return [record]

    async def packages(self, session: Session, opts: Options) -> list[Record]:
        """JAliEn's ``packages``: one record per package, ``packages`` = its full name
        (``VO_ALICE@Package::version``), the text one name a line; ``-l`` adds who
        offered it lately; a pattern (glob) selects. Exit 1 when there is none."""
        table = self.jobs.packages.table()
        found = list(table)
        if opts.args:
            found = [p for p in found if fnmatch.fnmatchcase(p, opts.args[0])
                     or fnmatch.fnmatchcase(p.partition("@")[2], opts.args[0])]  # fmt: skip
        if not found:
            raise RequestError("Couldn't find any packages.", 1)
        records: list[Record] = []
        for name in found:
            record: Record = {"packages": name, "message": f" {name}"}
            if "l" in opts:
                record["sites"] = ",".join(table[name])
                record["message"] = f" {name:<50} {'; '.join(table[name])}"
            records.append(record)
        return records

    # -- site calls (raw: a typed request is answered typed, words with JAliEn's records)
    def waiting(self, session: Session, request: Request) -> Reply:
        offer, typed = _offer(request)
        try:
            agent = self.jobs.agent_for(offer)
        except UnknownDigest:  # a new list, or central restarted: the VoBox sends it
            return Reply(data=[site_api.encode(WaitingJobs(count=0, packages_wanted=True))])
        self._seen(agent)
        count = self.jobs.count_waiting(agent)
        if typed:
            settings = self.jobs.ce_settings(offer.ce) if self.jobs.ce_settings else None
            return Reply(data=[site_api.encode(WaitingJobs(count=count, ce=settings))])
        return Reply(results=[{"count": str(count), "message": str(count)}])

    async def match(self, session: Session, request: Request) -> Reply:
        offer, typed = _offer(request)
        try:
            agent = self.jobs.agent_for(offer)
        except UnknownDigest as unknown:  # the agent asks again with its list
            return Reply(data=[site_api.encode(PackagesWanted(digest=unknown.digest))])
        self._seen(agent)
        found = await self.jobs.match(session.identity, agent, session.push)
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
        row = await self.jobs.set_status(session.identity, change, session.push)
        if request.data:
            return Reply()
        return Reply(
            results=[
                {"id": str(row.id), "status": row.state, "message": f"job {row.id} is {row.state}"}
            ]
        )

    async def heartbeat(self, session: Session, args: list[str]) -> list[Record]:
        job_id = _ids(args[:1])[0]
        await self.jobs.heartbeat(session.identity, job_id, session.push)
        return [{"id": str(job_id), "time": str(int(time.time())), "message": "ok"}]


_asked_encoder = msgspec.msgpack.Encoder()
_asked_decoder = msgspec.msgpack.Decoder(_Asked)
