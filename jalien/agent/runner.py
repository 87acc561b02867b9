"""One job's life on the node, from ASSIGNED to a final state, then the cleanup.

    STARTED   sandbox made; Executable (when it is an LFN), InputFile and InputData
              downloaded with the job token; packages applied    (failure: ERROR_IB)
    RUNNING   the local socket up; the payload started in its own session; every interval a
              sample (limits -> kill -> ERROR_E) and a jobHeartbeat  (exit != 0: ERROR_E)
    SAVING    OutputFile/OutputArchive uploaded to the job's output directory with the job
              token and committed                                  (failure: ERROR_S)
    SAVED -> DONE, with the resource trace in the message of the final state.

States go up on the agent's own connection (``setJobStatus``, allowed to JobAgents); data
moves on the job token's connection, so that catalogue permissions are the user's. A
``kill`` pushed by central (which has already set KILLED) cancels the run: the payload's tree
is killed and nothing more is reported. When central refuses a state (the job was killed or
expired meanwhile), the run stops the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import resource
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jalien.agent.environment import clean_environment, payload_environment
from jalien.agent.job import JobSpec, OutputItem
from jalien.agent.localsocket import JobSocket
from jalien.agent.monitor import Limits, Sample, Sampler, Trace, kill_tree
from jalien.agent.packages import PackageError, PackageTree
from jalien.agent.payload import Payload, PayloadError
from jalien.agent.sandbox import Sandbox, SandboxError
from jalien.agent.spy import spy_record
from jalien.net.audit import AuditLog
from jalien.net.client import Client
from jalien.net.identity import Identity
from jalien.wire import site_api
from jalien.wire.errors import EXIT_NO_CONNECTION, RequestError
from jalien.wire.messages import Reply, Request
from jalien.wire.site_api import StatusChange

log = logging.getLogger("jalien.agent")


class Upstream(Protocol):
    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply: ...
    async def request(self, request: Request, timeout: float | None = None) -> Reply: ...


class CopyEngine(Protocol):
    """The copy engine, injected by the role (jalien.storage.cp behind it)."""

    async def download(self, central: Upstream, lfns: Sequence[str], dest_dir: Path) -> list[str]:
        """Download *lfns* into *dest_dir*; one error text per file that failed."""
        ...

    async def upload(self, central: Upstream, path: Path, lfn: str, specs: str) -> str | None:
        """Upload and commit one file; the error text, or None."""
        ...


@dataclass
class RunConfig:
    site: str
    node: str
    workdir: str
    ca_dir: Path
    interval: float = 30.0
    packages: PackageTree | None = None  # the node's package tree (agent.packages)
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    kill_grace: float = 5.0
    call_timeout: float = 60.0
    audit: AuditLog | None = None  # the local socket's requests (the role's audit log)
    # the payload's local socket on 127.0.0.1; off on a node without network (the spool:
    # no loopback either), where the payload gets no JALIEN_HOST/JALIEN_PORT
    local_socket: bool = True


STATUS_ATTEMPTS = 8  # about three minutes of backoff before a state is given up


class JobGone(Exception):
    """Central refused a state change: the job ended meanwhile (killed, expired)."""


class Failed(Exception):
    """The job ends in *state* with *error* (ERROR_IB, ERROR_E, ERROR_S)."""

    def __init__(self, state: str, error: str, exitcode: int | None = None) -> None:
        super().__init__(error)
        self.state = state
        self.error = error
        self.exitcode = exitcode


class JobRunner:
    def __init__(
        self,
        job: JobSpec,
        *,
        agent: Upstream,
        job_conn: Client,
        copier: CopyEngine,
        config: RunConfig,
        identity: Identity,
    ) -> None:
        self.job = job
        self.agent = agent
        self.job_conn = job_conn
        self.copier = copier
        self.config = config
        self.identity = identity
        self.sandbox = Sandbox(config.workdir, job.queue_id)
        self.trace = Trace()
        self.packages_note = ""  # what the RUNNING state says about the packages loaded
        self.last_sample = Sample()
        self.payload: Payload | None = None
        self.socket: JobSocket | None = None
        self.killed = False
        self.aborted = ""  # why the agent itself stops the job (SIGTERM to the agent)
        self.final = ""
        self.started = time.monotonic()
        self.payload_started = 0.0  # monotonic time the payload was spawned (bench)
        self._task: asyncio.Task[str] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # -- what the agent calls
    def kill(self) -> None:
        """Central killed the job: stop everything, report nothing."""
        self.killed = True
        if self._task is not None:
            self._task.cancel()

    def abort(self, reason: str) -> None:
        """The agent is going away: kill the payload, report ERROR_E with *reason*."""
        self.aborted = reason
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> str:
        """Run the job to its end; the final state (``KILLED`` when central killed it,
        ``GONE`` when central refused a state)."""
        self._task = asyncio.current_task()  # type: ignore[assignment]
        try:
            self.final = await self._run()
        except asyncio.CancelledError:
            if not (self.killed or self.aborted):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self.killed:
                log.info("job %d: killed by central", self.job.queue_id)
                self.final = "KILLED"
            else:
                self.final = await self._report_abort()
        except JobGone as exc:
            log.info("job %d: %s", self.job.queue_id, exc)
            self.final = "GONE"
        except Exception as exc:  # a bug or the node (disk, TLS): the job fails, the agent goes on
            log.exception("job %d: the JobAgent failed", self.job.queue_id)
            self.final = "ERROR_E"
            with contextlib.suppress(JobGone, RequestError):
                await self._fail(Failed("ERROR_E", f"JobAgent error: {exc}"))
        finally:
            await asyncio.shield(self._cleanup())
        return self.final

    async def _report_abort(self) -> str:
        if self.payload is not None and self.payload.returncode is None:
            await kill_tree(self.payload.pid, self.payload.pgid, self.config.kill_grace)
        try:
            async with asyncio.timeout(10):
                return await self._fail(Failed("ERROR_E", self.aborted))
        except (RequestError, JobGone, TimeoutError) as exc:
            log.warning("job %d: could not report the abort: %s", self.job.queue_id, exc)
            return "GONE"

    async def spy(self) -> dict[str, str]:
        return await asyncio.to_thread(
            spy_record, self.job.queue_id, self.sandbox, self.last_sample, self.trace
        )

    # -- the life
    async def _run(self) -> str:
        job = self.job
        await self._status("STARTED", node=self.config.node, message="preparing the sandbox")
        try:
            argv, env = await self._prepare()
        except Failed as exc:
            return await self._fail(exc)
        try:
            exitcode, reason = await self._execute(argv, env)
        except Failed as exc:
            return await self._fail(exc)
        if reason:
            return await self._fail(Failed("ERROR_E", reason, exitcode))
        if exitcode != 0:
            return await self._fail(
                Failed("ERROR_E", f"the payload exited with code {exitcode}", exitcode)
            )
        await self._status("SAVING", exit_code=0, message="uploading outputs")
        try:
            saved = await self._save()
        except Failed as exc:
            return await self._fail(exc)
        await self._status("SAVED", message=f"saved {len(saved)} file(s): {' '.join(saved)}"[:900])
        await self._status("DONE", exit_code=0, trace=True)
        log.info("job %d: DONE (%s)", job.queue_id, self.trace.describe())
        return "DONE"

    async def _status(
        self,
        state: str,
        *,
        exit_code: int | None = None,
        error: str = "",
        message: str = "",
        node: str = "",
        trace: bool = False,
    ) -> None:
        """Report a state (a typed ``StatusChange``, with the resource trace if *trace*);
        central being away is waited out (the client reconnects), with backoff, for a few
        minutes; a refusal means the job is no longer ours."""
        change = StatusChange(
            queue_id=self.job.queue_id,
            state=state,
            exit_code=exit_code,
            error=error,
            message=message,
            node=node,
            trace=self.trace.typed() if trace else None,
        )
        request = Request(command="setJobStatus", data=[site_api.encode(change)])
        delay = 1.0
        for attempt in range(STATUS_ATTEMPTS):
            try:
                reply = await self.agent.request(request, timeout=self.config.call_timeout)
                if reply.exitcode == EXIT_NO_CONNECTION:  # a level lost central, or a spool
                    # relay restarted with the request in flight: not central's refusal
                    raise RequestError(reply.error, reply.exitcode)
            except RequestError as exc:
                if attempt == STATUS_ATTEMPTS - 1:
                    raise JobGone(f"cannot report {state}: {exc}") from None
                log.warning("job %d: reporting %s failed (%s); again in %.0f s",
                            self.job.queue_id, state, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if reply.exitcode:
                raise JobGone(f"central refused {state}: {reply.error}")
            return

    async def _fail(self, failure: Failed) -> str:
        log.warning("job %d: %s: %s", self.job.queue_id, failure.state, failure.error)
        await self._status(
            failure.state,
            exit_code=failure.exitcode,
            error=failure.error,
            message=failure.error,
            trace=True,
        )
        return failure.state

    async def _prepare(self) -> tuple[list[str], dict[str, str]]:
        job = self.job
        try:
            await asyncio.to_thread(self.sandbox.create)
        except SandboxError as exc:
            raise Failed("ERROR_IB", str(exc)) from None
        lfns = list(job.inputs)
        exe = job.executable
        local = os.path.isabs(exe) and os.path.isfile(exe) and os.access(exe, os.X_OK)
        if not local:
            lfns.insert(0, exe)
        if lfns:
            errors = await self.copier.download(self.job_conn, lfns, self.sandbox.root)
            if errors:
                raise Failed("ERROR_IB", "input download failed: " + "; ".join(errors))
        argv0 = exe
        if not local:
            argv0 = str(self.sandbox.root / os.path.basename(exe))
            os.chmod(argv0, 0o755)
        config = self.config
        endpoint = None
        if config.local_socket:
            self.socket = JobSocket(
                self.job_conn,
                job.token_cert,
                job.token_key,
                config.ca_dir,
                self.identity,
                self.spy,
                audit=config.audit,
            )
            endpoint = await self.socket.start()
        try:
            cert_path, key_path = await asyncio.to_thread(
                self.sandbox.write_token, job.token_cert, job.token_key
            )
        except SandboxError as exc:
            raise Failed("ERROR_IB", str(exc)) from None
        base = self.config.base_env
        if job.packages:
            tree = self.config.packages
            if tree is None:
                raise Failed(
                    "ERROR_IB",
                    f"packages {', '.join(job.packages)}: this node has no package tree "
                    "(JALIEN_PACKAGES_DIR)",
                )
            try:
                base = await tree.load(
                    job.packages, clean_environment(base, self.sandbox), self.sandbox.root
                )
            except PackageError as exc:
                raise Failed("ERROR_IB", str(exc)) from None
            self.packages_note = f"; packages {', '.join(job.packages)} from {tree.where}"
        env = payload_environment(
            base,
            sandbox=self.sandbox,
            queue_id=job.queue_id,
            user=job.user,
            site=self.config.site,
            endpoint=endpoint,
            token_cert=str(cert_path),
            token_key=str(key_path),
        )
        return [argv0, *job.arguments], env

    async def _execute(self, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        """Run and watch the payload: (exit code, reason it was killed or "")."""
        job = self.job
        limits = Limits(memory=job.memory, disk=job.disk, ttl=float(job.ttl))
        before = _children_cpu()
        try:
            payload = await Payload.start(argv, self.sandbox, env)
        except PayloadError as exc:
            raise Failed("ERROR_E", str(exc)) from None
        self.payload = payload
        self.payload_started = time.monotonic()
        log.info("job %d: payload %s started (pid %d)", job.queue_id, argv[0], payload.pid)
        sampler = Sampler(payload.pid, self.payload_started, self.sandbox.disk_usage)
        waiter = asyncio.ensure_future(payload.wait())
        reason = ""
        try:
            # RUNNING once the payload is there: whoever sees the state finds the process
            await self._status(
                "RUNNING", message=f"payload started (pid {payload.pid}){self.packages_note}"
            )
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=self.config.interval)
                if done:
                    break
                sample = await asyncio.to_thread(sampler.sample)
                self.last_sample = sample
                self.trace.add(sample)
                reason = limits.exceeded(sample) or ""
                if reason:
                    log.warning("job %d: %s: killing the payload", job.queue_id, reason)
                    await kill_tree(payload.pid, payload.pgid, self.config.kill_grace)
                    break
                self._beat()
            exitcode = await waiter
        finally:
            if not waiter.done():  # cancelled (kill): the tree goes, then we wait for it
                await asyncio.shield(kill_tree(payload.pid, payload.pgid, self.config.kill_grace))
                with contextlib.suppress(Exception):
                    await asyncio.shield(waiter)
            payload.kill_group()
            self.trace.cpu = max(self.trace.cpu, _children_cpu() - before)
            self.trace.wall = max(self.trace.wall, time.monotonic() - self.payload_started)
        log.info("job %d: payload exited with %d", job.queue_id, exitcode)
        return exitcode, reason

    def _beat(self) -> None:
        """A jobHeartbeat per interval, never two in flight, never blocking the watch."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return

        async def beat() -> None:
            try:
                reply = await self.agent.call(
                    "jobHeartbeat", str(self.job.queue_id), timeout=self.config.call_timeout
                )
                if reply.exitcode:
                    log.warning("job %d: heartbeat refused: %s", self.job.queue_id, reply.error)
            except RequestError as exc:
                log.warning("job %d: heartbeat failed: %s", self.job.queue_id, exc)

        self._heartbeat = asyncio.ensure_future(beat())

    async def _save(self) -> list[str]:
        saved: list[str] = []
        errors: list[str] = []
        for item in self.job.outputs:
            try:
                files = await asyncio.to_thread(self._materialize, item)
            except Failed as exc:
                errors.append(exc.error)
                continue
            for path in files:
                lfn = self.job.output_dir.rstrip("/") + "/" + path.name
                error = await self.copier.upload(self.job_conn, path, lfn, item.specs)
                if error:
                    errors.append(f"{path.name}: {error}")
                else:
                    saved.append(path.name)
        if errors:
            raise Failed("ERROR_S", "output upload failed: " + "; ".join(errors))
        return saved

    def _materialize(self, item: OutputItem) -> list[Path]:
        """The sandbox files an output item names (an archive is zipped first)."""
        root = self.sandbox.root
        names = sorted(p.name for p in root.iterdir() if p.is_file())
        if not item.archive:
            found = [root / n for n in names if fnmatch.fnmatchcase(n, item.name)]
            if not found:
                raise Failed("ERROR_S", f"output {item.name}: no such file in the sandbox")
            return found
        members = [n for n in names if any(fnmatch.fnmatchcase(n, m) for m in item.members)]
        if not members:
            raise Failed("ERROR_S", f"archive {item.name}: no file matches {item.members}")
        target = root / item.name
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in members:
                if name != item.name:
                    archive.write(root / name, name)
        return [target]

    async def _cleanup(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.payload is not None and self.payload.returncode is None:
            await kill_tree(self.payload.pid, self.payload.pgid, self.config.kill_grace)
        if self.payload is not None:
            self.payload.kill_group()
        if self.socket is not None:
            await self.socket.close()
        await self.sandbox.cleanup()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
