"""The VoBox's relay for worker nodes without network (docs/relay.md): the spool served by
``net.spool_relay.SpoolRelay`` in front of the VoBox's own handler (its ``UpstreamProxy``:
one upstream connection, its reply cache), plus the data such nodes cannot move
themselves.

Staging: when central's ``getMatchJob`` answer passes through with a job, the relay starts
downloading the job's executable and inputs into ``<spool>/stage/<queueId>/in/`` with the
job's token (a channel opened upstream with that certificate: central sees the job); the
agent's ``relay.staged`` (on its job-token connection) waits for them and gets their paths.
Outputs: the agent copies each into ``stage/<queueId>/out/`` and asks ``relay.upload``; the
relay uploads and registers it with the job's token. The job's directory goes when its
final state passes through (``setJobStatus``), else with the spool's stale cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jalien.agent.job import JobSpec
from jalien.config import ConfigError, Settings
from jalien.jobs.states import JobState
from jalien.loops import Loop, LoopRegistry
from jalien.net import spool
from jalien.net.client import Client
from jalien.net.identity import LevelAuthenticator
from jalien.net.proxy import LocalAnswer, ProxySession, UpstreamProxy, WithLocalCommands
from jalien.net.spool_relay import SpoolRelay
from jalien.roles.jobagent import parse_job
from jalien.storage.cp import Options, copy
from jalien.wire import codec, framing, site_api
from jalien.wire.channel import decode_reply
from jalien.wire.errors import EXIT_FAILED, EXIT_PERMISSION, RequestError
from jalien.wire.messages import Reply, Request
from jalien.wire.site_api import MatchedJob, StagedFiles, StagedUpload, StatusChange

log = logging.getLogger("jalien.vobox.spool")

STAGED = "relay.staged"
UPLOAD = "relay.upload"


class Staging:
    """A job's files between the grid and the shared filesystem, with the job's token."""

    def __init__(
        self,
        upstream: Client,
        root: Path,
        se_context: ssl.SSLContext,
        parse_job: Callable[[MatchedJob], JobSpec],
    ) -> None:
        self.upstream = upstream
        self.root = root / spool.STAGE
        self.se_context = se_context
        self.parse_job = parse_job
        self._jobs: dict[int, asyncio.Task[StagedFiles]] = {}
        self._removals: set[asyncio.Future[None]] = set()
        self.staged = 0

    def job_dir(self, queue_id: int) -> Path:
        return self.root / str(int(queue_id))

    # -- inputs
    def prestage(self, matched: MatchedJob) -> None:
        """Start fetching a matched job's inputs (the executable first, as the agent)."""
        try:
            job = self.parse_job(matched)
        except ValueError as exc:
            log.warning("job %d: not staged: %s", matched.queue_id, exc)
            return
        lfns = list(job.inputs)
        exe = job.executable
        if not os.path.isabs(exe) or not _local_executable(exe):
            lfns.insert(0, exe)
        der = x509.load_pem_x509_certificate(matched.token_cert.encode()).public_bytes(Encoding.DER)
        self._start(matched.queue_id, lfns, der)

    def _start(self, queue_id: int, lfns: Sequence[str], der: bytes) -> asyncio.Task[StagedFiles]:
        task = asyncio.ensure_future(self._stage(queue_id, list(lfns), der))
        self._jobs[queue_id] = task
        return task

    async def _stage(self, queue_id: int, lfns: list[str], der: bytes) -> StagedFiles:
        started = time.monotonic()
        inbox, outbox = self.job_dir(queue_id) / "in", self.job_dir(queue_id) / "out"
        await asyncio.to_thread(_mkdirs, inbox, outbox)
        staged = StagedFiles(queue_id=queue_id, out_dir=str(outbox))
        if not lfns:
            return staged
        channel = await self.upstream.open_channel(cert=der)
        try:
            report = await copy(
                channel, lfns, f"file:{inbox}/", Options(ssl=self.se_context, threads=4)
            )
        except (RequestError, OSError, ValueError) as exc:
            staged.errors.update({lfn: str(exc) for lfn in lfns})
            return staged
        finally:
            channel.close()
        for result in report.results:
            if result.status == "failed":
                staged.errors[result.src] = result.error
            else:
                staged.inputs[result.src] = str(inbox / os.path.basename(result.dst.rstrip("/")))
        for lfn in lfns:
            if lfn not in staged.inputs and lfn not in staged.errors:
                path = inbox / os.path.basename(lfn)
                if path.exists():  # a result named differently (a glob)
                    staged.inputs[lfn] = str(path)
        self.staged += 1
        log.info(
            "job %d: %d input(s) staged, %d failed, in %.2f s",
            queue_id, len(staged.inputs), len(staged.errors), time.monotonic() - started,
        )  # fmt: skip
        return staged

    async def staged_reply(self, session: ProxySession, request: Request) -> Reply:
        """``relay.staged``: the job's inputs, once staged (staged now when the relay did
        not see the match: it restarted since)."""
        identity = session.identity
        if not identity.job_id:
            return Reply(exitcode=EXIT_PERMISSION, error=f"{STAGED}: a job token's call only")
        queue_id = int(identity.job_id)
        try:
            first = request.data[0] if request.data else None
            ask = site_api.decode(first, StagedFiles) if first else StagedFiles()
        except site_api.SiteApiError as exc:
            return Reply(exitcode=22, error=f"{STAGED}: {exc}")
        task = self._jobs.get(queue_id)
        if task is None or (task.done() and _missing(task, ask)):
            task = self._start(queue_id, list(ask.inputs), identity.cert)
        try:
            staged = await asyncio.shield(task)
        except Exception as exc:
            return Reply(exitcode=EXIT_FAILED, error=f"{STAGED}: {exc}")
        return Reply(data=[site_api.encode(staged)], metadata=session.metadata)

    # -- outputs
    async def upload_reply(self, session: ProxySession, request: Request) -> Reply:
        """``relay.upload``: one output file of the job's out directory, to *lfn*."""
        identity = session.identity
        if not identity.job_id:
            return Reply(exitcode=EXIT_PERMISSION, error=f"{UPLOAD}: a job token's call only")
        try:
            if not request.data or not request.data[0]:
                raise site_api.SiteApiError("no StagedUpload")
            ask = site_api.decode(request.data[0], StagedUpload)
        except site_api.SiteApiError as exc:
            return Reply(exitcode=22, error=f"{UPLOAD}: {exc}")
        name = ask.name
        if not name or "/" in name or name in (".", ".."):
            return Reply(exitcode=22, error=f"{UPLOAD}: {name!r} is not a file name")
        path = self.job_dir(int(identity.job_id)) / "out" / name
        if not path.is_file():
            return Reply(exitcode=2, error=f"{UPLOAD}: {name} is not in the job's out directory")
        channel = await self.upstream.open_channel(cert=identity.cert)
        try:
            options = Options(ssl=self.se_context, threads=1, specs=ask.specs or "disk:1")
            report = await copy(channel, [f"file:{path}"], ask.lfn, options)
        except (RequestError, OSError, ValueError) as exc:
            return Reply(exitcode=EXIT_FAILED, error=f"{UPLOAD}: {exc}")
        finally:
            channel.close()
        failed = [r.error for r in report.results if r.status == "failed"]
        if failed or not report.results:
            return Reply(exitcode=EXIT_FAILED, error="; ".join(failed) or "nothing uploaded")
        log.info("job %s: %s uploaded as %s", identity.job_id, name, ask.lfn)
        return Reply(metadata=session.metadata)

    # -- the end
    def forget(self, queue_id: int) -> None:
        task = self._jobs.pop(queue_id, None)
        if task is not None and not task.done():
            task.cancel()
        removal = asyncio.ensure_future(asyncio.to_thread(_remove, self.job_dir(queue_id)))
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)

    def clean(self, older_than: float) -> int:
        """(Thread.) Job directories untouched for *older_than* seconds (a killed job)."""
        now, removed = time.time(), 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > older_than:
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed += 1
        return removed


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _mkdirs(*paths: Path) -> None:
    for path in paths:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _local_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _missing(task: asyncio.Task[StagedFiles], ask: StagedFiles) -> bool:
    """A finished staging that lacks inputs the agent asks for (or failed)."""
    if task.cancelled() or task.exception() is not None:
        return True
    staged = task.result()
    return any(lfn not in staged.inputs and lfn not in staged.errors for lfn in ask.inputs)


class StagingHandler:
    """The VoBox's handler for spool connections: *inner* (its proxy with local commands)
    with ``getMatchJob`` answers watched (a job: its inputs start staging) and final
    ``setJobStatus`` calls (the job's stage directory goes)."""

    def __init__(self, inner: Any, staging: Staging) -> None:
        self.inner = inner
        self.staging = staging

    def open_session(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.open_session(*args, **kwargs)

    def close_session(self, session: Any) -> None:
        self.inner.close_session(session)

    def describe_session(self, session: Any) -> dict[str, str]:
        return self.inner.describe_session(session)  # type: ignore[no-any-return]

    def dispatch(self, session: Any, request: Request) -> Any:
        return self.inner.dispatch(session, request)

    def dispatch_raw(self, session: Any, request: Request, flags: int, body: bytes) -> Any:
        result = self.inner.dispatch_raw(session, request, flags, body)
        if request.command == "getMatchJob":
            return self._watch_match(result)
        if request.command == "setJobStatus" and request.data and request.data[0]:
            with contextlib.suppress(site_api.SiteApiError, ValueError):
                change = site_api.decode(request.data[0], StatusChange)
                if JobState(change.state).is_final:
                    return self._after(result, change.queue_id)
        return result

    async def _watch_match(self, result: Any) -> AsyncIterator[tuple[int, bytes]]:
        frames = [frame async for frame in _frames(result)]
        if frames and not frames[-1][0] & framing.FLAG_MORE:
            with contextlib.suppress(Exception):
                reply = decode_reply(*frames[-1])
                if not reply.exitcode and reply.data and reply.data[0] is not None:
                    self.staging.prestage(site_api.decode(reply.data[0], MatchedJob))
        for frame in frames:
            yield frame

    async def _after(self, result: Any, queue_id: int) -> AsyncIterator[tuple[int, bytes]]:
        async for frame in _frames(result):
            yield frame
        self.staging.forget(queue_id)


async def _frames(result: Any) -> AsyncIterator[tuple[int, bytes]]:
    """What a level's dispatch_raw gave, as raw frames (a Reply is encoded once)."""
    if hasattr(result, "__anext__"):
        async for item in result:
            yield _raw(item)
        return
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        result = await result
    yield _raw(result)


def _raw(item: Any) -> tuple[int, bytes]:
    if type(item) is tuple:
        return item
    return 0, codec.encode_msgpack(item)


async def start_relay(
    settings: Settings,
    upstream: Client,
    proxy: UpstreamProxy,
    authenticator: LevelAuthenticator,
    local: dict[str, LocalAnswer],
    loops: LoopRegistry,
) -> SpoolRelay:
    """The relay on ``settings.spool_dir``: the VoBox's *proxy* (its upstream connection
    and reply cache), its *local* commands and the staging ones; identities as its TCP
    gate decides them (a certificate a CA of the directory signed, tokens recognised);
    a ``spool-cleanup`` loop in the VoBox's registry."""
    root = Path(settings.spool_dir)
    se_context = ssl.create_default_context(capath=str(settings.ca_dir_path))
    se_context.check_hostname = False  # SEs are named by the URLs central hands out
    staging = Staging(upstream, root, se_context, parse_job)
    commands = {**local, STAGED: staging.staged_reply, UPLOAD: staging.upload_reply}
    relay = SpoolRelay(
        StagingHandler(WithLocalCommands(proxy, commands), staging),
        root,
        authenticator.identify_forwarded,
        watch=settings.spool_watch,
        poll=settings.spool_poll,
        max_files=settings.spool_max_files,
        stale=settings.spool_stale,
        sync=settings.spool_fsync,
        max_frame=settings.max_message_size,
    )
    try:
        await relay.start()
    except OSError as exc:
        raise ConfigError(f"spool_dir {root}: {exc.strerror or exc}") from None

    async def clean() -> None:
        await relay.clean()
        await asyncio.to_thread(staging.clean, settings.spool_stale)

    loops.start(Loop("spool-cleanup", clean, min(600.0, max(1.0, settings.spool_stale / 10))))
    return relay
