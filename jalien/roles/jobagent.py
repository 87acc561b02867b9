"""``jalien-bin --role jobagent``: a worker node's JobAgent, configured by its environment.

The VoBox's startup script sets (see docs/site.md): ``JALIEN_HOST``/``JALIEN_PORT`` (the
binary channel upstream: the VoBox or central), ``X509_CERT_DIR``, ``JALIEN_TOKEN_CERT``/
``JALIEN_TOKEN_KEY`` (the jobagent token, PEM text or paths), ``JALIEN_SITE``, ``JALIEN_CE``,
``JALIEN_JOBAGENT_TTL``, ``JALIEN_CORES``, ``JALIEN_WORKDIR``, ``JALIEN_PACKAGES_DIR``
(``_ARCH``, ``_MODULECMD``, ``_REFRESH``), ``JALIEN_JOBAGENT_MAX_JOBS``,
``JALIEN_MONITOR_INTERVAL``.

This module composes the service (``jalien.agent``) with what it may not import itself: the
JDL parser (``jalien.jobs.jdl``) and the copy engine (``jalien.storage.cp``). Keys stay in
memory (``auth.memfile``); nothing is written outside the job sandboxes. Exit codes: 0 when
the TTL, the job cap or the idle wait ends the agent; 1 with one clear line when the
configuration or the credentials cannot work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jalien.agent import reports as agent_reports
from jalien.agent.agent import AgentConfig, AgentError, JobAgent
from jalien.agent.job import JobSpec, OutputItem
from jalien.agent.packages import Advertised, PackageError, PackageTree
from jalien.agent.reports import ErrorNotes
from jalien.agent.runner import CopyEngine, RunConfig, Upstream
from jalien.auth.errors import AuthError
from jalien.auth.tls import context_from_pem
from jalien.config import ConfigError, Settings
from jalien.jobs.jdl import JdlError, OutputSpec, parse_jdl, parse_size
from jalien.loops import LoopRegistry
from jalien.net import discovery, spool
from jalien.net.audit import AuditLog
from jalien.net.client import Client, ConnectionLost
from jalien.roles.role_metrics import (
    jobagent_metrics,
    request_counter,
    role_metrics,
    start_metrics,
)
from jalien.roles.start import Failure, LogOptions, on_signals, run_role
from jalien.storage.cp import Options, copy
from jalien.wire import monitor_api, site_api
from jalien.wire.errors import EXIT_FAILED, RequestError
from jalien.wire.messages import Request
from jalien.wire.monitor_api import AgentReport
from jalien.wire.site_api import MatchedJob, StagedFiles, StagedUpload

log = logging.getLogger("jalien.jobagent")


class ConfigProblem(Exception):
    """The environment does not describe a usable JobAgent."""


# -- the JDL, as the agent needs it
def _specs(spec: OutputSpec) -> str:
    parts = [*spec.ses, *(f"{tag}:{count}" for tag, count in spec.qos.items())]
    return ",".join(parts) or "disk:1"


def _inputs(values: Sequence[str]) -> list[str]:
    out = []
    for value in values:
        lfn, _, flags = value.partition(",")
        if "nodownload" in flags.lower():
            continue
        out.append(lfn.strip().removeprefix("LF:"))
    return out


def parse_job(matched: MatchedJob) -> JobSpec:
    """central's typed getMatchJob answer -> JobSpec (ValueError with the reason)."""
    try:
        jdl = parse_jdl(matched.jdl)
        disk_value = jdl.get("workdirectorysize", 0)
        if isinstance(disk_value, list):  # AliEn writes WorkDirectorySize = {"5000MB"}
            disk_value = disk_value[0] if disk_value else 0
        disk = parse_size(disk_value, "WorkDirectorySize")
        arguments = shlex.split(jdl.arguments)
    except JdlError as exc:
        raise ValueError(f"bad JDL: {exc}") from None
    outputs = [OutputItem(name=s.name, specs=_specs(s)) for s in jdl.output_file]
    outputs += [
        OutputItem(name=s.name, members=list(s.members) or ["*"], archive=True, specs=_specs(s))
        for s in jdl.output_archive
    ]
    output_dir = matched.output_dir
    if not output_dir and outputs:
        raise ValueError("central sent no outputDir for a job with outputs")
    return JobSpec(
        queue_id=matched.queue_id,
        user=matched.user,
        output_dir=output_dir,
        executable=jdl.executable.removeprefix("LF:"),
        arguments=arguments,
        inputs=_inputs(jdl.input_file) + _inputs(jdl.input_data),
        outputs=outputs,
        packages=list(jdl.packages),
        ttl=jdl.ttl,
        memory=jdl.memory_size,
        disk=disk,
        token_cert=matched.token_cert,
        token_key=matched.token_key,
    )


# -- the copy engine, as the agent needs it
RETRY_AFTER = 2.0  # seconds before failed inputs are asked again


class StorageCopier:
    def __init__(self, se_context: ssl.SSLContext) -> None:
        self.se_context = se_context

    async def download(self, central: Upstream, lfns: Sequence[str], dest_dir: Path) -> list[str]:
        """The inputs into *dest_dir*; what failed is asked once more after RETRY_AFTER
        seconds (a central lost mid-download: the client has failed over meanwhile)."""
        options = Options(ssl=self.se_context, threads=4)
        wanted, errors = list(lfns), [""]
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(RETRY_AFTER)
            try:
                report = await copy(central, wanted, f"file:{dest_dir}/", options)
            except (RequestError, OSError, ValueError) as exc:  # central lost while planning
                errors = [str(exc)]
                continue
            failed = [r for r in report.results if r.status == "failed"]
            errors = [f"{r.src}: {r.error}" for r in failed]
            if not failed:
                return []
            wanted = [r.src for r in failed]
        return errors

    async def upload(self, central: Upstream, path: Path, lfn: str, specs: str) -> str | None:
        options = Options(ssl=self.se_context, threads=1, specs=specs)
        try:
            report = await copy(central, [f"file:{path}"], lfn, options)
        except (RequestError, OSError, ValueError) as exc:
            return str(exc)
        failed = [r.error for r in report.results if r.status == "failed"]
        return "; ".join(failed) if failed or not report.results else None


class StagedCopier:
    """The copy engine of a node without network (``JALIEN_SPOOL_DIR``): the relay on the
    login node stages a job's inputs into the shared filesystem (``relay.staged`` waits
    until they are there) and uploads its outputs from there (``relay.upload``), both with
    the job's token; the agent only copies files between the spool and its sandbox."""

    def __init__(self, call_timeout: float = 3600.0) -> None:
        self.call_timeout = call_timeout  # staging a big input takes the time it takes

    async def _staged(self, central: Upstream, lfns: Sequence[str]) -> StagedFiles:
        ask = StagedFiles(inputs={lfn: "" for lfn in lfns})
        reply = await central.request(
            Request(command="relay.staged", data=[site_api.encode(ask)]), self.call_timeout
        )
        if reply.exitcode:
            raise RequestError(reply.error or f"relay.staged: exit {reply.exitcode}")
        if not reply.data or not reply.data[0]:
            raise RequestError("relay.staged: the relay answered nothing")
        return site_api.decode(reply.data[0], StagedFiles)

    async def download(self, central: Upstream, lfns: Sequence[str], dest_dir: Path) -> list[str]:
        try:
            staged = await self._staged(central, lfns)
        except (RequestError, site_api.SiteApiError) as exc:
            return [str(exc)]
        errors = [f"{lfn}: {why}" for lfn, why in staged.errors.items()]
        pairs = [(staged.inputs[lfn], dest_dir / os.path.basename(lfn.rstrip("/")))
                 for lfn in lfns if lfn in staged.inputs]  # fmt: skip
        errors += [f"{lfn}: not staged" for lfn in lfns
                   if lfn not in staged.inputs and lfn not in staged.errors]  # fmt: skip
        try:
            await asyncio.to_thread(_copy_files, pairs)
        except OSError as exc:
            errors.append(f"copy from the spool: {exc}")
        return errors

    async def upload(self, central: Upstream, path: Path, lfn: str, specs: str) -> str | None:
        try:
            staged = await self._staged(central, [])
            if not staged.out_dir:
                return "the relay gave no output directory"
            name = path.name
            await asyncio.to_thread(_copy_files, [(str(path), Path(staged.out_dir) / name)])
            ask = StagedUpload(name=name, lfn=lfn, specs=specs)
            reply = await central.request(
                Request(command="relay.upload", data=[site_api.encode(ask)]), self.call_timeout
            )
        except (RequestError, site_api.SiteApiError) as exc:
            return str(exc)
        except OSError as exc:
            return f"copy to the spool: {exc}"
        return reply.error or f"exit {reply.exitcode}" if reply.exitcode else None


def _copy_files(pairs: Sequence[tuple[str, Path]]) -> None:
    """Each file to its destination under a temporary name, fsync'ed, then renamed."""
    for src, dest in pairs:
        tmp = dest.with_name(f".tmp-{dest.name}.{os.getpid()}")
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copymode(src, tmp)
        os.replace(tmp, dest)


# -- the environment contract
def _pem(env: Mapping[str, str], name: str) -> bytes:
    value = env.get(name, "")
    if not value:
        raise ConfigProblem(f"{name} is not set (the jobagent token: PEM text or a path)")
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ConfigProblem(f"{name}: cannot read {value}: {exc.strerror}") from None


def package_tree(settings: Settings) -> PackageTree | None:
    """The node's package tree (agent.packages), checked at start: a bad one is a
    configuration problem, not a job failure later."""
    if not settings.packages_dir:
        return None
    try:
        return PackageTree.open(
            settings.packages_dir, settings.packages_arch, settings.packages_modulecmd
        )
    except PackageError as exc:
        raise ConfigProblem(f"JALIEN_PACKAGES_DIR: {exc}") from None


def upstream_address(settings: Settings, env: Mapping[str, str]) -> tuple[str, int]:
    host = env.get("JALIEN_HOST") or settings.central_host
    raw = env.get("JALIEN_PORT") or str(settings.binary_port)
    try:
        port = int(raw)
    except ValueError:
        raise ConfigProblem(f"JALIEN_PORT={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigProblem(f"JALIEN_PORT={raw!r} is not a port number")
    return host, port


def _workdir(settings: Settings, env: Mapping[str, str]) -> str:
    workdir = settings.workdir or str(discovery.tmpdir(env))
    if not os.path.isdir(workdir) or not os.access(workdir, os.W_OK | os.X_OK):
        raise ConfigProblem(f"JALIEN_WORKDIR {workdir} is not a writable directory")
    return workdir


def _spool_client(settings: Settings, cert_pem: bytes, key_pem: bytes, **kw: Any) -> Client:
    """A Client whose connections are directories of the spool (net.spool): the same
    interface, frames as files; the key stays in memory to sign each connection's hello."""
    root = Path(settings.spool_dir)
    connect = spool.connector(
        root,
        cert_pem,
        key_pem,
        watch=settings.spool_watch,
        poll=settings.spool_poll,
        max_files=settings.spool_max_files,
        sync=settings.spool_fsync,
    )
    return Client(f"spool {root}", 0, None, connector=connect, backoff=(0.5, 30.0), **kw)


async def serve(settings: Settings, env: Mapping[str, str]) -> int:
    cert_pem, key_pem = _pem(env, "JALIEN_TOKEN_CERT"), _pem(env, "JALIEN_TOKEN_KEY")
    ca_dir = discovery.ca_dir(settings, env)
    workdir = _workdir(settings, env)
    if settings.monitor_interval <= 0 or settings.jobagent_ttl <= 0 or settings.cores <= 0:
        raise ConfigProblem("JALIEN_MONITOR_INTERVAL, _JOBAGENT_TTL and _CORES must be positive")
    packages = package_tree(settings)
    se_context = ssl.create_default_context(capath=str(ca_dir))
    se_context.check_hostname = False  # SEs are named by the URLs central hands out
    copier: CopyEngine
    if settings.spool_dir:  # no network: the relay's spool (docs/relay.md)
        if not os.path.isdir(settings.spool_dir):
            raise ConfigProblem(f"JALIEN_SPOOL_DIR {settings.spool_dir} is not a directory")
        where = f"spool {settings.spool_dir}"
        upstream = _spool_client(settings, cert_pem, key_pem, reconnect=True, connect_wait=30)
        copier = StagedCopier()
        alternates: list[tuple[str, int]] = []
    else:
        host, port = upstream_address(settings, env)
        where = f"{host}:{port}"
        context = context_from_pem("client", cert_pem, key_pem, ca_dir)
        # straight to central services (no VoBox level): every endpoint of central_hosts
        alternates = [] if env.get("JALIEN_HOST") else discovery.central_endpoints(settings)
        upstream = Client(
            host,
            port,
            context,
            backoff=(0.5, 30.0),
            reconnect=True,
            connect_wait=30,
            alternates=alternates,
        )
        copier = StorageCopier(se_context)
    del key_pem
    try:
        await upstream.connect()
    except spool.SpoolError as exc:
        raise ConfigProblem(str(exc)) from None
    try:  # a refused identity shows as a closed connection: say so now, not after idling
        who = await upstream.call("whoami", timeout=30)
    except RequestError as exc:
        await upstream.close()
        raise ConfigProblem(f"{where} did not accept the jobagent token: {exc}") from None
    if who.exitcode:
        await upstream.close()
        raise ConfigProblem(f"{where} did not accept the jobagent token: {who.error}")

    async def connect_job(job: JobSpec) -> Client:
        if settings.spool_dir:
            client = _spool_client(
                settings, job.token_cert.encode(), job.token_key.encode(), reconnect=True
            )
        else:
            job_context = context_from_pem(
                "client", job.token_cert.encode(), job.token_key.encode(), ca_dir
            )
            client = Client(
                host,
                port,
                job_context,
                backoff=(0.5, 30.0),
                reconnect=True,
                alternates=alternates,
            )
        await client.connect()
        return client

    try:  # the payload's local socket logs each request under the agent's directory
        audit = AuditLog.from_settings(settings, "jobagent")
    except (OSError, ConfigError) as exc:
        await upstream.close()
        raise ConfigProblem(f"audit log: {exc}") from None
    node = socket.gethostname()
    agent = JobAgent(
        AgentConfig(
            site=settings.site,
            ce=settings.ce,
            ttl=float(settings.jobagent_ttl),
            cores=settings.cores,
            max_jobs=settings.jobagent_max_jobs,
            packages=Advertised(packages, settings.packages_refresh),
        ),
        RunConfig(
            site=settings.site,
            node=node,
            workdir=workdir,
            ca_dir=ca_dir,
            interval=settings.monitor_interval,
            packages=packages,
            base_env=dict(env),
            audit=audit,
            local_socket=not settings.spool_dir,
        ),
        upstream,
        copier,
        connect_job,
        parse_job,
    )
    reports = LoopRegistry()  # the monitoring report upstream (docs/monitoring.md)
    metrics = role_metrics("jobagent", reports)
    audit.requests = request_counter(metrics)  # the payload's local sockets count theirs
    jobagent_metrics(metrics, agent)
    metrics_http = await start_metrics(settings, metrics)
    notes = ErrorNotes()
    logging.getLogger("jalien").addHandler(notes)

    async def send_report(report: AgentReport) -> None:
        request = Request(command="monitor.report", data=[monitor_api.encode(report)])
        reply = await upstream.request(request, timeout=30)
        if reply.exitcode:
            raise RuntimeError(f"central refused the agent's report: {reply.error}")

    every = settings.monitor_report_interval
    report = agent_reports.report_loop(agent, node, send_report, every, notes)
    reports.start(report)
    agent.on_change = report.run_now  # a job's start and end are reported at once
    on_signals(lambda sig: agent.stop(f"the JobAgent got signal {sig.name}"))
    log.info(
        "jobagent ready: upstream %s, site %s, ce %s, ttl %d s, workdir %s",
        where, settings.site, settings.ce or "-", settings.jobagent_ttl, workdir,
    )  # fmt: skip
    try:
        return await agent.run()
    finally:
        await upstream.close()
        audit.close()
        await reports.stop_all(timeout=1.0)
        logging.getLogger("jalien").removeHandler(notes)
        if metrics_http is not None:
            await metrics_http.close()


def run_jobagent(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return run_role(
        lambda: serve(settings, env),
        log_level=settings.log_level,
        log=LogOptions.from_settings(settings, "jobagent"),
        prefix="jalien-bin: jobagent: ",
        failures=[Failure((ConfigProblem, AuthError, AgentError, ConnectionLost), EXIT_FAILED)],
    )
