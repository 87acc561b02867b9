"""The VoBox (``jalien-bin --role vobox``): a site's computing element.

It is a level like jBox, with a site loop beside it:

1. upstream, one binary connection to central services with the VoBox's certificate (a
   host or service certificate whose account has the ``proxy`` role), reconnecting with
   backoff;
2. downstream, a Server for the site's worker nodes (binary channel and WebSocket, on
   ``vobox_listen``... ports ``vobox_binary_port``/``vobox_ws_port``, 0 meaning any: the
   startup script tells the agents which): every client gets its own channel upstream,
   opened with its certificate (``OpenChannel.cert``), so that a JobAgent token or a job
   token is the same identity at central as on a direct connection; a small reply cache
   answers repeated read-only calls (``net.proxy``);
3. the site loop (``jalien.site.vobox``): JobAgent token, batch system, waiting jobs,
   submissions, cleanup, status.

Central closes a connection at the notAfter of its certificate: a renewed VoBox
certificate file is picked up at the next cycle and the upstream connection moves to it
at once, make before break (``_reload_certificate``).

The JobAgent token also tells the VoBox which CA issues tokens (its issuer in the CA
directory), so its gate recognises JobAgent and job tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from jalien.agent.packages import Advertised, PackageError, PackageTree, detect_arch
from jalien.auth.cadir import find_issuer
from jalien.auth.certs import dn_of, load_cert
from jalien.auth.errors import AuthError
from jalien.auth.tls import client_context, server_context
from jalien.auth.tokens import TokenKind, TokenVerifier, parse_token_name
from jalien.config import ConfigError, Settings
from jalien.loops import LoopRegistry
from jalien.net import discovery, logs_answer
from jalien.net.audit import AuditLog
from jalien.net.client import Client, ConnectionLost
from jalien.net.http import HttpServer
from jalien.net.identity import LevelAuthenticator
from jalien.net.limits import limits_from
from jalien.net.proxy import ProxySession, TTLReplyCache, UpstreamProxy, WithLocalCommands
from jalien.net.server import Server
from jalien.net.spool_relay import SpoolRelay
from jalien.roles.role_metrics import (
    reply_cache_metrics,
    role_metrics,
    server_metrics,
    start_metrics,
    vobox_metrics,
)
from jalien.roles.start import (
    CONFIG,
    SYSTEM,
    Failure,
    LogOptions,
    run_role,
    started,
    stop_event,
)
from jalien.roles.vobox_spool import start_relay
from jalien.site import reports as site_reports
from jalien.site.arc import ArcBatch
from jalien.site.batch import BatchInterface
from jalien.site.fork import ForkBatch
from jalien.site.slurm import SlurmBatch
from jalien.site.startup_script import AgentConfig
from jalien.site.vobox import AgentToken, CentralError, LoopOptions, VoBoxLoop
from jalien.wire import monitor_api, site_api
from jalien.wire.errors import EXIT_FAILED, RequestError
from jalien.wire.messages import Event, Reply, Request
from jalien.wire.monitor_api import LOGS_TOPIC, SiteReport
from jalien.wire.site_api import JobOffer, WaitingJobs

log = logging.getLogger("jalien.vobox")

DEFAULT_CE = "JALIEN::LOCAL::CE"
# read-only answers worth keeping for a site full of agents asking the same
CACHE_TTL = {"commandlist": 300.0, "version": 300.0, "motd": 300.0, "listSEDistance": 60.0}


def default_jobagent_command() -> list[str]:
    """The jalien-bin running now: the built binary as it was started, or this Python's
    ``-m jalien``. For the binary, argv[0] is read from ``/proc/self/cmdline``: the
    launcher execs the unpacked program with its own argv, so that names the launcher (the
    file on CVMFS, say) while Nuitka's ``sys.argv[0]`` names the user's unpack cache."""
    if "__compiled__" not in globals():  # Nuitka sets it in every module it compiles
        return [sys.executable, "-m", "jalien"]
    argv0 = sys.argv[0]
    with contextlib.suppress(OSError, IndexError):
        argv0 = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode() or argv0
    found = os.path.abspath(argv0) if os.sep in argv0 else shutil.which(argv0)
    return [found or argv0]


def site_packages(settings: Settings) -> PackageTree | None:
    """The package tree the VoBox lists for its offers (the agents load from the same
    tree; the VoBox only lists it, so it needs no modulecmd)."""
    if not settings.packages_dir:
        return None
    try:
        root = Path(settings.packages_dir)
        return PackageTree(root, settings.packages_arch or detect_arch(root), "")
    except PackageError as exc:
        raise ConfigError(f"packages_dir: {exc}") from None


def parse_central(value: str | None, settings: Settings) -> tuple[str, int]:
    if not value:
        return settings.central_host, settings.binary_port
    if value.count(":") > 1 and not value.startswith("["):  # a bare IPv6 address
        return value, settings.binary_port
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:  # no port, or a bare [v6] address
        return value.strip("[]"), settings.binary_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"--central {value}: the port must be a number") from None


class UpstreamCentral:
    """The site loop's view of central services, over the VoBox's upstream connection;
    its offers carry the packages its agents will see (agent.packages: the same tree)."""

    def __init__(self, client: Client, packages: Advertised | None = None) -> None:
        self.client = client
        self.packages = packages

    async def _call(self, *words: str):
        try:
            reply = await self.client.call(*words, timeout=60)
        except (ConnectionLost, RequestError) as exc:
            raise CentralError(str(exc)) from None
        if reply.exitcode or not reply.results:
            raise CentralError(f"{words[0]}: {reply.error or 'empty answer'}")
        return reply.results[0]

    async def waiting_jobs(self, *, site: str, ce: str, ttl: int, cores: int) -> WaitingJobs:
        """The typed site call (wire.site_api): a JobOffer in, WaitingJobs out (with
        central's settings of this CE: the loop takes its slots, TTL and status)."""
        offer = JobOffer(site=site, ce=ce, ttl=ttl, cores=cores)
        for with_list in (False, True):  # the list only when central does not know it
            if self.packages is not None:
                for name, value in (await self.packages.offer_fields(with_list)).items():
                    setattr(offer, name, value)
            request = Request(command="getNumberWaitingJobs", data=[site_api.encode(offer)])
            try:
                reply = await self.client.request(request, timeout=60)
            except (ConnectionLost, RequestError) as exc:
                raise CentralError(str(exc)) from None
            if reply.exitcode or not reply.data or reply.data[0] is None:
                raise CentralError(f"getNumberWaitingJobs: {reply.error or 'empty answer'}")
            try:
                waiting = site_api.decode(reply.data[0], WaitingJobs)
            except site_api.SiteApiError as exc:
                raise CentralError(f"getNumberWaitingJobs: {exc}") from None
            if not waiting.packages_wanted:
                break
        return waiting

    async def jobagent_token(self, hours: float) -> AgentToken:
        record = await self._call("token", "-t", "jobagent", "-hours", f"{hours:g}")
        cert_text, key_text = record.get("tokencert", ""), record.get("tokenkey", "")
        try:
            cert = x509.load_pem_x509_certificate(str(cert_text).encode())
        except ValueError:
            raise CentralError("central sent an unreadable JobAgent token") from None
        subject = parse_token_name(cert.subject)
        if subject is None or subject.kind is not TokenKind.JOBAGENT or not key_text:
            raise CentralError(f"central sent {dn_of(cert)}, not a JobAgent token")
        return AgentToken(
            cert_pem=str(cert_text).encode(),
            key_pem=str(key_text).encode(),
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )


def make_batch(settings: Settings, state_dir: Path, cert: Path, key: Path) -> BatchInterface:
    """The batch system of ``settings.batch``; *state_dir* is the VoBox's directory, *cert*
    and *key* its identity (an ARC CE gets proxies of it)."""
    if settings.batch == "fork":
        return ForkBatch()
    if settings.batch == "slurm":
        env = {"SLURM_CONF": settings.slurm_conf} if settings.slurm_conf else {}
        return SlurmBatch(
            settings.batch_job_name,
            partition=settings.slurm_partition,
            options=settings.slurm_options,
            env=env,
        )
    if settings.batch == "arc":
        if not settings.arc_ce:
            raise ConfigError("batch arc needs arc_ce, the CE's https://host:port/arex")
        try:
            return ArcBatch(
                settings.arc_ce,
                state_dir / "arc",
                ca_dir=settings.ca_dir_path,
                cert=cert,
                key=key,
                proxy=_path(settings.arc_proxy),
                job_name=settings.batch_job_name,
                xrsl=settings.arc_xrsl,
                proxy_hours=settings.arc_proxy_hours,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    raise ConfigError(f"batch must be fork, slurm or arc, not {settings.batch!r}")


def _extra_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``jobagent_env``: KEY=VALUE words, separated by commas (a TOML list, or the
    variable's commas) or blanks, shell-quoted when a value holds a blank."""
    found: list[tuple[str, str]] = []
    for item in items:
        try:
            words = shlex.split(item)
        except ValueError as exc:
            raise ConfigError(f"jobagent_env: {item!r}: {exc}") from None
        for pair in words:
            key, eq, value = pair.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ConfigError(f"jobagent_env: {pair!r} is not KEY=VALUE")
            found.append((key, value))
    return tuple(found)


def _check(settings: Settings) -> None:
    for name in ("max_running_agents", "max_queued_agents", "jobagent_ttl", "cores"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must not be negative")
    if settings.submit_interval <= 0 or settings.jobagent_token_hours <= 0:
        raise ConfigError("submit_interval and jobagent_token_hours must be positive")


STATUS_COMMAND = "vobox.status"


def status_record(status: dict[str, object]) -> dict[str, str]:
    """``vobox.status`` as one flat JAliEn record (string values; the last cycle's fields
    prefixed ``last_``) and its text."""
    record: dict[str, str] = {}
    for key, value in status.items():
        if isinstance(value, dict):
            record.update({f"last_{k}": str(v) for k, v in value.items()})
        else:
            record[key] = str(value)
    record["message"] = "\n".join(f"{k}: {v}" for k, v in record.items())
    return record


class VoBox:
    """The object graph of a VoBox, in plain code; ``start`` then ``close``."""

    def __init__(self, settings: Settings, central: tuple[str, int]) -> None:
        _check(settings)
        self.settings = settings
        self.central_address = central
        self.ca_dir = settings.ca_dir_path
        self.cert_path = _path(settings.vobox_cert) or settings.host_cert_path
        self.key_path = _path(settings.vobox_key) or settings.host_key_path
        self.dir = settings.path(settings.vobox_dir, "vobox")
        self.batch = make_batch(settings, self.dir, self.cert_path, self.key_path)
        self.extra_env = _extra_env(settings.jobagent_env)
        if settings.log_format != "text" and "JALIEN_LOG_FORMAT" not in dict(self.extra_env):
            # its agents log as the VoBox does, unless jobagent_env says otherwise
            self.extra_env += (("JALIEN_LOG_FORMAT", settings.log_format),)
        try:
            self.command = (
                shlex.split(settings.jobagent_command)
                if settings.jobagent_command
                else default_jobagent_command()
            )
        except ValueError as exc:
            raise ConfigError(f"jobagent_command: {exc}") from None
        if not self.command:
            raise ConfigError("jobagent_command is empty")
        self.upstream: Client | None = None
        self.server: Server | None = None
        self.cache = TTLReplyCache(CACHE_TTL)
        self.loop: VoBoxLoop | None = None
        self._stop = asyncio.Event()
        self.loops = LoopRegistry()  # the VoBox's background loops: its cycle
        self.metrics = role_metrics("vobox", self.loops)
        self.metrics_http: HttpServer | None = None
        self._cert_stamp: tuple[int, int] | None = None
        self._rotation: asyncio.Task[None] | None = None  # to a renewed certificate
        self.relay: SpoolRelay | None = None  # the spool of worker nodes without network
        self._relay_event: Callable[[int, Event], None] | None = None
        self._answers: set[asyncio.Future[None]] = set()  # logs answers being sent

    async def start(self) -> None:
        settings = self.settings
        host, port = self.central_address
        context = client_context(self.cert_path, self.key_path, self.ca_dir)
        self._cert_stamp = _stamp(self.cert_path)
        self.upstream = Client(
            host,
            port,
            context,
            connect_wait=3.0,
            backoff=(0.5, 30.0),
            alternates=discovery.central_endpoints(settings),  # several jcentrals
        )
        await self.upstream.connect()
        who = await self.upstream.call("whoami", "-v", timeout=30)
        if who.exitcode or not who.results:
            raise AuthError(f"central services refused the VoBox certificate: {who.error}")
        record = who.results[0]
        roles = str(record.get("roles", "")).split(",")
        if "proxy" not in roles:
            raise AuthError(
                f"the account {record.get('user', '?')} of {self.cert_path} lacks the proxy "
                "role: a VoBox acts for its worker nodes' identities"
            )
        central = UpstreamCentral(
            self.upstream, Advertised(site_packages(settings), settings.packages_refresh)
        )
        first = await central.jobagent_token(settings.jobagent_token_hours)
        issuer = find_issuer(self.ca_dir, x509.load_pem_x509_certificate(first.cert_pem))
        if issuer is None:
            log.warning("the token CA is not in %s: agents' tokens will be refused", self.ca_dir)
        authenticator = LevelAuthenticator(
            self.ca_dir, TokenVerifier(issuer) if issuer is not None else None
        )
        limits = limits_from(settings)
        proxy = UpstreamProxy(self.upstream, self.cache)
        self._relay_event = self.upstream.on_event  # the proxy's: events to its clients
        self.upstream.on_event = self._event
        self.server = Server(
            WithLocalCommands(proxy, {STATUS_COMMAND: self._status_reply}),
            server_context(settings.host_cert_path, settings.host_key_path, self.ca_dir),
            authenticator,
            limits=limits,
            audit=AuditLog.from_settings(settings, "vobox"),
        )
        await self.server.start(settings.listen, settings.vobox_ws_port, settings.vobox_binary_port)
        agent = AgentConfig(
            host=settings.vobox_host or settings.listen[0],
            port=self.server.ports()["binary"],
            ca_dir=str(self.ca_dir),
            site=settings.site,
            ce=settings.ce or DEFAULT_CE,
            ttl=settings.jobagent_ttl,
            cores=settings.cores,
            workdir=settings.workdir,
            packages_dir=settings.packages_dir,
            packages_arch=settings.packages_arch,
            packages_modulecmd=settings.packages_modulecmd,
            command=tuple(self.command),
            extra_env=self.extra_env,
            spool_dir=settings.spool_dir,
            staged=getattr(self.batch, "stages_files", False),
        )
        if settings.spool_dir:  # worker nodes without network: the relay (docs/relay.md)
            self.relay = await start_relay(
                settings,
                self.upstream,
                proxy,
                authenticator,
                {STATUS_COMMAND: self._status_reply},
                self.loops,
            )
        options = LoopOptions(
            agents_dir=self.dir / "agents",
            job_name=settings.batch_job_name,
            max_running=settings.max_running_agents,
            max_queued=settings.max_queued_agents,
            interval=settings.submit_interval,
            token_hours=settings.jobagent_token_hours,
            start_grace=settings.agent_start_grace,
            keep_dirs=settings.agent_dir_keep,
        )
        own = load_cert(self.cert_path).not_valid_after_utc.timestamp()
        self.loop = VoBoxLoop(central, self.batch, agent, options, own_cert_expires=own)
        self.loop.token = first
        self.loop.extra_status = self._status
        if isinstance(self.batch, ForkBatch):
            self.batch.adopt(int(i) for i in self.loop.known_batch_ids() if i.isdigit())
        self.loops.start(self.loop.runner(self._stop))
        server_metrics(self.metrics, self.server)
        reply_cache_metrics(self.metrics, self.cache)
        vobox_metrics(self.metrics, self.loop)
        self.metrics_http = await start_metrics(settings, self.metrics)
        every = min(settings.submit_interval, settings.monitor_report_interval)
        self.loops.start(site_reports.report_loop(self.loop, self._send_report, every))

    def _event(self, channel: int, event: Event) -> None:
        """Central's ``logs`` question on the VoBox's own channel is the VoBox's to answer
        (docs/monitoring.md); every other event goes to the agents, as the proxy does."""
        if channel == 0 and event.topic == LOGS_TOPIC and self.upstream is not None:
            ce = self.loop.agent.ce if self.loop is not None else ""
            task = asyncio.ensure_future(logs_answer.answer(self.upstream, event.payload, ce))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)
        elif self._relay_event is not None:
            self._relay_event(channel, event)

    async def _send_report(self, report: SiteReport) -> None:
        """``monitor.report`` upstream (docs/monitoring.md): the site's slots and agents."""
        assert self.upstream is not None
        request = Request(command="monitor.report", data=[monitor_api.encode(report)])
        reply = await self.upstream.request(request, timeout=30)
        if reply.exitcode:
            raise RuntimeError(f"central refused the site report: {reply.error}")

    def _status(self) -> dict[str, object]:
        """What the loop's status.json adds about the level: its ports, the cache, the
        upstream connection, and a re-read of the VoBox's certificate when it changed."""
        self._reload_certificate()
        ports = self.server.ports() if self.server is not None else {}
        return {
            "binary_port": ports.get("binary", -1),
            "ws_port": ports.get("websocket", -1),
            "upstream_connected": bool(self.upstream and self.upstream.connected),
            "clients": len(self.server.connections) if self.server else 0,
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            **(self.relay.status() if self.relay is not None else {}),
        }

    def _reload_certificate(self) -> None:
        """A renewed certificate file: central closes a connection at the notAfter of the
        certificate it was opened with, so the upstream connection moves to the new one
        at once, make before break (``Client.rotate``: requests in flight finish on the
        old connection). Should that fail (central away), the next reconnection uses it."""
        stamp = _stamp(self.cert_path)
        if stamp is None or stamp == self._cert_stamp or self.upstream is None:
            return
        try:
            context = client_context(self.cert_path, self.key_path, self.ca_dir)
            cert = load_cert(self.cert_path)
        except (AuthError, OSError, ValueError) as exc:  # a key not written yet, say
            log.warning("cannot load the renewed certificate %s: %s", self.cert_path, exc)
            return
        self._cert_stamp = stamp
        self.upstream.ssl_context = context
        if self.loop is not None:
            self.loop.own_cert_expires = cert.not_valid_after_utc.timestamp()
        log.info(
            "reloaded the VoBox certificate %s (valid until %s)",
            self.cert_path,
            cert.not_valid_after_utc,
        )
        if self._rotation is None or self._rotation.done():
            self._rotation = asyncio.get_running_loop().create_task(self._rotate(context))

    async def _rotate(self, context: ssl.SSLContext) -> None:
        assert self.upstream is not None
        try:
            await self.upstream.rotate(context)
        except ConnectionLost as exc:
            log.warning(
                "cannot reconnect to central with the renewed certificate now (%s); "
                "the next reconnection uses it",
                exc,
            )
            return
        log.info("reconnected to central with the renewed certificate")

    def status(self) -> dict[str, object]:
        return self.loop.status() if self.loop is not None else self._status()

    def _status_reply(self, session: ProxySession, request: Request) -> Reply:
        """``vobox.status``: what status.json says, live, for the site's admin."""
        return Reply(results=[status_record(self.status())], metadata=session.metadata)

    def describe(self) -> str:
        assert self.server is not None and self.loop is not None
        ports = self.server.ports()
        return (
            f"vobox ready: CE {self.loop.agent.ce} at {self.loop.agent.site}, batch "
            f"{self.batch.name}, binary port {ports.get('binary', -1)}, WebSocket port "
            f"{ports.get('websocket', -1)}, agents in {self.dir / 'agents'}"
        )

    async def close(self) -> None:
        self._stop.set()
        await self.loops.stop_all(timeout=30)
        if self.relay is not None:
            await self.relay.close()
        if self._rotation is not None:
            self._rotation.cancel()
        if self.server is not None:
            await self.server.close()
            self.server.audit.close()
        if self.upstream is not None:
            await self.upstream.close()
        if self.metrics_http is not None:
            await self.metrics_http.close()


def _path(value: str) -> Path | None:
    return Path(os.path.expanduser(value)) if value else None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


async def serve(settings: Settings, central: tuple[str, int]) -> None:
    vobox = VoBox(settings, central)
    stop = stop_event()
    try:
        await vobox.start()
        started()
        print(vobox.describe(), flush=True)
        await stop.wait()
        log.info("stopping (the JobAgents keep running)")
    finally:
        await vobox.close()


def run_vobox(settings: Settings, central: str | None = None) -> int:
    return run_role(
        lambda: serve(settings, parse_central(central, settings)),
        log_level=settings.log_level,
        log=LogOptions.from_settings(settings, "vobox"),
        prefix="jalien-bin: cannot start the VoBox: ",
        failures=[CONFIG, Failure((AuthError, CentralError, RequestError), EXIT_FAILED), SYSTEM],
    )
