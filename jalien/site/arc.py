"""ARC: JobAgents submitted to an ARC CE (NorduGrid A-REX) over its REST interface.

``arcsub`` (the ARC client) submits: it delegates our proxy to the CE as ARC wants it done
and uploads the agent's files (script, token) to the job's session directory. Everything
after that is A-REX's REST interface with the same proxy, from here: a job's state is a GET
of ``/rest/1.0/jobs/<id>/diagnose/status`` (the state A-REX's grid manager holds); an ended
agent's log and output are GETs of its session files, then ``jobs?action=clean``; cancel is
``jobs?action=kill``. ``arcstat`` and ``arcget`` would go by the job's GLUE2 record, which
A-REX's information system refreshes about once a minute: an ended agent would hold its slot
a minute longer, and ``arcget`` skips a job whose record still says it is not over.

Our agents are the jobs in ``agents.json`` (with their directories on the VoBox), in
*state_dir* beside the proxy we make from the VoBox's certificate (or the site's own proxy)
and the ARC client's own files (``HOME`` points there, never at the user's home).

State mapping (what the VoBox counts): ACCEPTED, PREPARING (staging in) and SUBMIT are
queued; INLRMS (in the batch system behind the CE: A-REX does not tell waiting from running
there) and FINISHING or CANCELING are running, so the VoBox's start grace counts a fresh one
as starting; FINISHED, DELETED, or a job the CE no longer knows, has ended: its outputs are
fetched into the agent's directory, it is cleaned and forgotten.

The agents' files are shipped, not shared: the CE runs the script in its session directory
(``stages_files``: the startup script finds its token beside itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiohttp
import msgspec

from jalien.auth.certs import load_cert, load_key
from jalien.auth.errors import AuthError
from jalien.auth.proxy import make_proxy, write_proxy_file
from jalien.site.batch import AgentState, BatchError, BatchJob, run_command
from jalien.site.startup_script import LOG_NAME, SCRIPT_NAME, TOKEN_CERT_NAME, TOKEN_KEY_NAME

log = logging.getLogger("jalien.vobox")

QUEUED = {"ACCEPTED", "ACCEPTING", "PREPARING", "SUBMIT", "SUBMITTING", "PENDING"}
RUNNING = {"INLRMS", "FINISHING", "CANCELING"}
ENDED = {"FINISHED", "DELETED"}
OUT_NAME = "jobagent.out"  # the script's own stdout and stderr (before it execs the agent)
SHIPPED = (SCRIPT_NAME, TOKEN_CERT_NAME, TOKEN_KEY_NAME)
FETCHED = (LOG_NAME, OUT_NAME)
ERRORS = "arc-errors.log"  # A-REX's log of the job (its diagnose/errors)
JOB_ID = re.compile(r"jobid:\s*(\S+)")


class Agent(msgspec.Struct):
    """One submitted agent, as ``agents.json`` keeps it (a VoBox restart follows it on)."""

    directory: str  # the agent's directory on the VoBox (its outputs come back there)
    submitted: float


def _xrsl_string(value: str) -> str:
    if '"' in value or "\n" in value:
        raise BatchError(f"arc: {value!r} cannot be quoted in xRSL")
    return f'"{value}"'


def job_description(directory: Path, job_name: str, extra: Sequence[str]) -> str:
    """The xRSL of one agent: its script run in the session directory, the files it needs
    uploaded beside it, its log and output kept there until we fetch them."""
    inputs = "".join(
        f"({_xrsl_string(name)} {_xrsl_string(str(directory / name))})" for name in SHIPPED
    )
    outputs = "".join(f'({_xrsl_string(name)} "")' for name in FETCHED)
    return (
        f"&(executable={_xrsl_string(SCRIPT_NAME)})\n"
        f" (jobname={_xrsl_string(job_name)})\n"
        f" (inputfiles={inputs})\n"
        f" (outputfiles={outputs})\n"
        f" (stdout={_xrsl_string(OUT_NAME)})(join=yes)\n"
        + "".join(f" {relation}\n" for relation in extra)
    )


class ArcBatch:
    name = "arc"
    stages_files = True  # the CE copies the agent's files to its session directory

    def __init__(
        self,
        endpoint: str,
        state_dir: Path,
        *,
        ca_dir: Path,
        cert: Path | None = None,
        key: Path | None = None,
        proxy: Path | None = None,
        job_name: str = "jalien-agent",
        xrsl: Sequence[str] = (),
        proxy_hours: float = 24.0,
        bin_dir: str = "",
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not endpoint.startswith("https://"):
            raise ValueError(f"arc_ce must be the CE's https:// endpoint, not {endpoint!r}")
        if proxy is None and (cert is None or key is None):
            raise ValueError("arc: a proxy file, or a certificate and key to make one")
        self.endpoint = endpoint.rstrip("/")
        self.state_dir = state_dir
        self.ca_dir = ca_dir
        self.cert, self.key, self.site_proxy = cert, key, proxy
        self.job_name = job_name
        self.xrsl = list(xrsl)
        self.proxy_hours = proxy_hours
        self.bin_dir = bin_dir
        self.extra_env = dict(env or {})
        self.timeout = timeout
        self._agents: dict[str, Agent] | None = None
        self._context: ssl.SSLContext | None = None
        self._context_stamp: tuple[int, int] | None = None

    # -- files of ours
    @property
    def proxy_path(self) -> Path:
        return self.site_proxy or self.state_dir / "proxy.pem"

    def _agents_file(self) -> Path:
        return self.state_dir / "agents.json"

    def _load(self) -> dict[str, Agent]:
        if self._agents is None:
            try:
                raw = self._agents_file().read_bytes()
                self._agents = msgspec.json.decode(raw, type=dict[str, Agent])
            except FileNotFoundError:
                self._agents = {}
            except (OSError, msgspec.DecodeError) as exc:
                raise BatchError(f"arc: cannot read {self._agents_file()}: {exc}") from None
        return self._agents

    def _save(self) -> None:
        path = self._agents_file()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(self._load()))
        os.replace(tmp, path)

    def _cmd(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def _env(self) -> dict[str, str]:
        # the client's configuration and caches go to our directory, not to $HOME/.arc
        return {
            "HOME": str(self.state_dir),
            "X509_USER_PROXY": str(self.proxy_path),
            "X509_CERT_DIR": str(self.ca_dir),
            **self.extra_env,
        }

    # -- the proxy
    def _ensure_proxy(self) -> None:
        """A proxy with at least half of ``proxy_hours`` left: the site's own (checked), or
        one we make from the VoBox's certificate (RFC 3820, renewed here)."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        path = self.proxy_path
        with contextlib.suppress(OSError, ValueError, AuthError):
            left = load_cert(path).not_valid_after_utc - now
            if self.site_proxy is not None or left > dt.timedelta(hours=self.proxy_hours / 2):
                if left <= dt.timedelta(0):
                    raise BatchError(f"arc: the proxy {path} has expired")
                return
        if self.site_proxy is not None:
            raise BatchError(f"arc: cannot read the proxy {path}")
        assert self.cert is not None and self.key is not None
        try:
            cert = load_cert(self.cert)
            proxy, proxy_key = make_proxy(cert, load_key(self.key), hours=self.proxy_hours)
            write_proxy_file(path, proxy, proxy_key, [cert])
        except (OSError, ValueError, AuthError) as exc:
            raise BatchError(f"arc: cannot make a proxy from {self.cert}: {exc}") from None
        self._context = None
        log.info("ARC proxy made from %s, valid until %s", self.cert, proxy.not_valid_after_utc)

    def _ssl(self) -> ssl.SSLContext:
        path = self.proxy_path
        try:
            st = path.stat()
        except OSError as exc:
            raise BatchError(f"arc: no proxy at {path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._context is None or stamp != self._context_stamp:
            context = ssl.create_default_context(capath=str(self.ca_dir))
            try:
                context.load_cert_chain(str(path))
            except (OSError, ssl.SSLError) as exc:
                raise BatchError(f"arc: cannot use the proxy {path}: {exc}") from None
            self._context, self._context_stamp = context, stamp
        return self._context

    # -- the interface
    async def submit(self, script: Path, log_path: Path, job_name: str) -> str:
        directory = script.parent
        await asyncio.to_thread(self._ensure_proxy)
        text = job_description(directory, job_name or self.job_name, self.xrsl)
        description = directory / "jobagent.xrsl"
        await asyncio.to_thread(description.write_text, text)
        argv = [
            self._cmd("arcsub"),
            "-C",
            self.endpoint,
            "-T",
            "arcrest",
            "-Q",
            "NONE",  # no information query, no brokering: this one CE
            "-t",
            str(int(self.timeout)),
            "-f",
            str(description),
        ]
        # arcsub's job list is not ours to keep: agents.json is (A-REX's REST interface
        # follows, cancels and cleans); a throwaway one per submission
        with tempfile.TemporaryDirectory(dir=self.state_dir, prefix="sub-") as tmp:
            argv[1:1] = ["-j", f"{tmp}/jobs.dat"]
            out = await run_command(argv, env=self._env(), timeout=self.timeout + 30)
        found = JOB_ID.search(out)
        if found is None:
            raise BatchError(f"arcsub answered {out.strip()!r}, no job id")
        job_id = found.group(1)
        agents = self._load()
        agents[job_id] = Agent(str(directory), time.time())
        await asyncio.to_thread(self._save)
        return job_id

    async def jobs(self) -> list[BatchJob]:
        agents = self._load()
        if not agents:
            return []
        found: list[BatchJob] = []
        async with self._session() as session:
            states = await self._states(session, list(agents))
            for job_id, state in states.items():
                if state in RUNNING:
                    found.append(BatchJob(job_id, AgentState.RUNNING))
                elif state in ENDED or state == "":
                    await self._collect(session, job_id)
                else:  # QUEUED, or a state this mapping does not know: it holds a slot
                    found.append(BatchJob(job_id, AgentState.QUEUED))
        return found

    async def states(self, job_ids: Sequence[str]) -> dict[str, str]:
        """A-REX's state of each job ('' for a job the CE does not know)."""
        async with self._session() as session:
            return await self._states(session, job_ids)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """An HTTPS session to the CE with our proxy; its failures are BatchErrors."""
        await asyncio.to_thread(self._ensure_proxy)
        self._ssl()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                yield session
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BatchError(f"arc: {self.endpoint} did not answer: {exc}") from None

    async def _states(
        self, session: aiohttp.ClientSession, job_ids: Sequence[str]
    ) -> dict[str, str]:
        context = self._ssl()
        found = await asyncio.gather(*(self._state(session, context, i) for i in job_ids))
        return dict(zip(job_ids, found, strict=True))

    async def _state(
        self, session: aiohttp.ClientSession, context: ssl.SSLContext, job_id: str
    ) -> str:
        """The grid manager's state of the job ('' when the CE does not know it)."""
        url = f"{self.endpoint}/rest/1.0/jobs/{_local_id(job_id)}/diagnose/status"
        async with session.get(url, ssl=context) as reply:
            if reply.status == 404:
                return ""
            if reply.status != 200:
                raise BatchError(f"arc: {url}: HTTP {reply.status} {reply.reason}")
            words = (await reply.text()).split()
        # the status file: the state, after "PENDING:" while A-REX holds the job back
        return words[0].rsplit(":", 1)[-1].upper() if words else "UNKNOWN"

    async def _collect(self, session: aiohttp.ClientSession, job_id: str) -> None:
        """An ended agent: its log and output (and A-REX's own log of the job) into its
        directory, the job cleaned from the CE; forgotten either way."""
        agents = self._load()
        agent = agents.get(job_id)
        directory = Path(agent.directory) if agent else self.state_dir
        base = f"{self.endpoint}/rest/1.0/jobs/{_local_id(job_id)}"
        fetched: dict[str, bytes] = {}
        for name, path in [*((n, f"session/{n}") for n in FETCHED), (ERRORS, "diagnose/errors")]:
            async with session.get(f"{base}/{path}", ssl=self._ssl()) as reply:
                if reply.status == 200:
                    fetched[name] = await reply.read()
        await asyncio.to_thread(_keep_outputs, fetched, directory)
        await self._action(session, "clean", job_id)
        agents.pop(job_id, None)
        await asyncio.to_thread(self._save)

    async def _action(self, session: aiohttp.ClientSession, action: str, job_id: str) -> str:
        """POST ``jobs?action=kill|clean`` for one job; A-REX's answer for it."""
        url = f"{self.endpoint}/rest/1.0/jobs?action={action}"
        body = {"job": [{"id": _local_id(job_id)}]}
        headers = {"Accept": "application/json"}
        async with session.post(url, json=body, headers=headers, ssl=self._ssl()) as reply:
            text = await reply.text()
            if reply.status != 201 and reply.status != 200:
                raise BatchError(f"arc: {action} {job_id}: HTTP {reply.status} {text[:200]}")
        try:
            answer = json.loads(text)["job"]
            answer = answer[0] if isinstance(answer, list) else answer
            return f"{answer.get('status-code', '?')} {answer.get('reason', '')}".strip()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return text[:200]

    async def cancel(self, job_id: str) -> None:
        """A-REX cancels the job (``jobs?action=kill``); it stays ours, holding its slot,
        until A-REX has ended it: then its log comes back and it is cleaned like any other
        (A-REX does not clean a job it is still cancelling)."""
        if job_id not in self._load():
            return  # gone already (or never ours: nothing of ours to end)
        async with self._session() as session:
            answer = await self._action(session, "kill", job_id)
        if not answer.startswith(("200", "201", "202", "404")):  # 404: the CE forgot it
            raise BatchError(f"arc: cancelling {job_id}: {answer}")


def _local_id(job_id: str) -> str:
    """A-REX's id of a job from its ARC job id (the URL arcsub prints)."""
    local = job_id.rstrip("/").rsplit("/", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", local):
        raise BatchError(f"arc: {job_id!r} is not an ARC job id")
    return local


def _keep_outputs(fetched: Mapping[str, bytes], directory: Path) -> None:
    """The files fetched from the session directory into the agent's directory (one it
    already has is kept: its name gets an ``arc-`` prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in fetched.items():
        target = directory / name
        if target.exists():
            target = directory / f"arc-{name}"
        with contextlib.suppress(OSError):
            target.write_bytes(data)
