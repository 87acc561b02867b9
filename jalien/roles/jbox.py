"""jBox, the user's desktop agent (an ssh-agent for the grid).

Started once with the user's grid certificate (the key's password is asked once, by the
command line, and the decrypted key lives in memory only), it:

1. connects to central services over the binary channel with that certificate (the TLS
   context is built from in-memory PEM, see ``jalien.auth.memfile``) and learns the account
   (``whoami -v``);
2. obtains a user token certificate (``token -hours N``), writes it where alien.py and ROOT
   look (``$TMPDIR/tokencert_<uid>.pem``, ``tokenkey_<uid>.pem``) and serves its local
   clients with it as its own TLS certificate; ``TokenKeeper`` renews it before it expires;
3. listens on 127.0.0.1, dynamic ports, for both personalities: local clients (the shell,
   alien.py, ROOT, raw WebSocket clients) are multiplexed over the one upstream connection,
   one channel each, with a small reply cache (``net.proxy.UpstreamProxy``). Only the owner
   gets in (``net.identity.OwnerAuthenticator``): their certificate, a proxy of it, or their
   user tokens;
4. writes the token file (``$TMPDIR/jclient_token_<uid>`` and ``jalien_token_<uid>``, mode
   0600) and removes it on exit: a signal, or ``shutdown`` from its owner (a command the
   jBox answers itself, ``net.proxy.WithLocalCommands``; central lists it so that alien.py
   sends it, and refuses it).

Upstream drops are repaired in the background (the client reconnects with backoff and
re-opens every channel); meanwhile requests fail within ``connect_wait`` seconds with exit
code 107 and the reason, instead of hanging.

A connection ends with its credential: a local client's with the token it presented (it
reconnects with the renewed token files), and the jBox's own upstream one with the user's
certificate or proxy, which the jBox cannot renew: at that notAfter it stops, saying why
(exit code 1), and removes its token files, so that clients look for other credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography import x509

from jalien.auth.cadir import find_issuer
from jalien.auth.certs import dn_of
from jalien.auth.errors import AuthError
from jalien.auth.files import write_file
from jalien.auth.tls import context_from_pem
from jalien.auth.tokens import TokenKind, TokenVerifier, parse_token_name
from jalien.commands.dispatch import GLOBAL_FLAGS
from jalien.config import Settings
from jalien.loops import Loop, LoopRegistry
from jalien.net import discovery
from jalien.net.audit import AuditLog
from jalien.net.client import Client, ConnectionLost
from jalien.net.http import HttpServer
from jalien.net.identity import Identity, OwnerAuthenticator
from jalien.net.limits import limits_from
from jalien.net.proxy import ProxySession, TTLReplyCache, UpstreamProxy, WithLocalCommands
from jalien.net.server import Server
from jalien.roles.role_metrics import (
    reply_cache_metrics,
    role_metrics,
    server_metrics,
    start_metrics,
)
from jalien.roles.start import (
    STOP_SIGNALS,
    SYSTEM,
    Failure,
    LogOptions,
    run_role,
    started,
    stop_event,
)
from jalien.wire.errors import EINVAL, EXIT_FAILED, EXIT_PERMISSION, RequestError
from jalien.wire.messages import Reply, Request

log = logging.getLogger("jalien.jbox")

LISTEN_HOST = "127.0.0.1"
MIN_INTERVAL = 1.0  # never ask central for tokens in a tight loop
CACHE_TTL = {"commandlist": 60.0, "version": 60.0, "motd": 60.0}
SHUTDOWN_COMMAND = "shutdown"  # answered by the jBox itself: its owner stops it


@dataclass
class JBoxOptions:
    central_host: str
    central_port: int
    token_hours: float = 24.0
    connect_wait: float = 3.0  # how long a local request waits for a lost upstream
    alternates: list[tuple[str, int]] = field(default_factory=list)  # central_hosts


@dataclass(frozen=True)
class Token:
    """A token certificate and its key, as PEM text, with the parsed certificate."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    received: float = 0.0  # when it arrived (its not-before is backdated for clock skew)

    @property
    def not_before(self) -> float:
        return self.cert.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Token:
        cert_text, key_text = record.get("tokencert", ""), record.get("tokenkey", "")
        if not cert_text or not key_text:
            raise AuthError("central answered the token request without tokencert/tokenkey")
        try:
            cert = x509.load_pem_x509_certificate(cert_text.encode())
        except ValueError:
            raise AuthError("central sent an unreadable token certificate") from None
        return cls(cert_text.encode(), key_text.encode(), cert)


def chain_end(cert_chain_pem: bytes) -> float:
    """The earliest notAfter of a certificate chain (a proxy ends no later than that)."""
    try:
        certs = x509.load_pem_x509_certificates(cert_chain_pem)
    except ValueError:
        return 0.0
    return min(cert.not_valid_after_utc.timestamp() for cert in certs)


def renew_at(token: Token) -> float:
    """When to ask for the next token: with a fifth of the lifetime left, and at least 15
    minutes before the end (alien.py ignores a token with less than 10 minutes left), but
    never before half of the lifetime (short tokens, tests)."""
    issued = token.received or token.not_before
    lifetime = max(token.not_after - issued, 1.0)
    margin = max(0.2 * lifetime, min(15 * 60.0, 0.5 * lifetime))
    return token.not_after - margin


class TokenKeeper:
    """Keeps a valid token: ``run_once`` fetches one when there is none or it is due, and
    says how long to sleep; failures are retried with backoff (central may be down).
    The clock is injectable so tests can jump past an expiry."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Token]],
        install: Callable[[Token], None],
        *,
        clock: Callable[[], float] = time.time,
        retry: tuple[float, float] = (2.0, 300.0),
    ) -> None:
        self.fetch = fetch
        self.install = install
        self.clock = clock
        self.retry = retry
        self.token: Token | None = None
        self.failures = 0
        self.renewals = 0

    async def run_once(self) -> float:
        """Renew if due; the number of seconds until the next call is useful."""
        now = self.clock()
        if self.token is not None and now < renew_at(self.token):
            return renew_at(self.token) - now
        try:
            token = dataclasses.replace(await self.fetch(), received=now)
        except (RequestError, AuthError, OSError) as exc:
            self.failures += 1
            delay = min(self.retry[0] * 2 ** (self.failures - 1), self.retry[1])
            if self.token is not None:  # never sleep past the current token's end
                delay = min(delay, max(self.token.not_after - now, self.retry[0]))
            log.warning("token renewal failed (%s); retrying in %.0f s", exc, delay)
            return delay
        self.failures = 0
        if self.token is not None:
            self.renewals += 1
        self.token = token
        self.install(token)
        log.info("token %s valid until %s", dn_of(token.cert), token.cert.not_valid_after_utc)
        return max(renew_at(token) - self.clock(), MIN_INTERVAL)

    async def prime(self) -> Token:
        """The first token; a failure here is the caller's (a jBox cannot start without)."""
        self.token = dataclasses.replace(await self.fetch(), received=self.clock())
        self.install(self.token)
        return self.token

    def runner(self) -> Loop:
        """``run_once`` again after the seconds it returns (it retries failures itself)."""
        return Loop("token-renewal", self.run_once, MIN_INTERVAL, first=0, logger=log)


class JBox:
    """The object graph of a jBox, in plain code; ``start`` then ``close``."""

    def __init__(
        self,
        settings: Settings,
        options: JBoxOptions,
        cert_chain_pem: bytes,
        key_pem: bytes,
    ) -> None:
        self.settings = settings
        self.options = options
        self.ca_dir = discovery.ca_dir(settings)
        self._cert_chain_pem = cert_chain_pem
        self._key_pem: bytes | None = key_pem
        self.upstream: Client | None = None
        self.server: Server | None = None
        self.owner: Identity | None = None
        self.authenticator: OwnerAuthenticator | None = None
        self.keeper: TokenKeeper | None = None
        self.loops = LoopRegistry()  # the jBox's background loops: token renewal
        self.metrics = role_metrics("jbox", self.loops)
        self.metrics_http: HttpServer | None = None
        self.token_files: list[os.PathLike[str]] = []
        # the end of the certificate (or proxy chain) the jBox connects with: central
        # closes the upstream connection then, and nothing here can renew it
        self.credential_end = chain_end(cert_chain_pem)
        # called by the local command ``shutdown`` (serve: its stop event's set)
        self.on_shutdown: Callable[[], None] | None = None

    async def start(self) -> None:
        options = self.options
        assert self._key_pem is not None, "start() runs once"
        context = context_from_pem("client", self._cert_chain_pem, self._key_pem, self.ca_dir)
        self._key_pem = None  # OpenSSL holds the key now; drop our reference to the text
        self.upstream = Client(
            options.central_host,
            options.central_port,
            context,
            connect_wait=options.connect_wait,
            backoff=(0.5, 30.0),
            reconnect=True,
            alternates=options.alternates,
        )
        await self.upstream.connect()
        self.upstream.on_reconnect = lambda: log.info("central services are back")
        who = await self.upstream.call("whoami", "-v", timeout=30)
        if who.exitcode or not who.results:
            raise AuthError(f"central services did not accept this certificate: {who.error}")
        record = who.results[0]
        self.owner = Identity(
            dn=str(record.get("dn", "")),
            login=str(record.get("user", record.get("message", ""))),
            roles=tuple(r for r in str(record.get("roles", "")).split(",") if r),
            home=str(record.get("home", "")),
        )
        self.authenticator = OwnerAuthenticator(self.owner)
        self.keeper = TokenKeeper(self.fetch_token, self.install_token)
        token = await self.keeper.prime()
        replies = TTLReplyCache(CACHE_TTL)
        proxy = UpstreamProxy(self.upstream, replies)
        self.server = Server(
            WithLocalCommands(proxy, {SHUTDOWN_COMMAND: self._shutdown_reply}),
            self._server_context(token),
            self.authenticator,
            limits=limits_from(self.settings),
            audit=AuditLog.from_settings(self.settings, "jbox"),
        )
        await self.server.start([LISTEN_HOST], 0, 0)
        ports = self.server.ports()
        text = discovery.token_file_text(
            host=LISTEN_HOST,
            port=ports["binary"],
            ws_port=ports["websocket"],
            pid=os.getpid(),
            user=self.owner.login,
            home=self.owner.home or "/",
        )
        self.token_files = list(discovery.write_token_files(text))
        self.loops.start(self.keeper.runner())
        server_metrics(self.metrics, self.server)
        reply_cache_metrics(self.metrics, replies)
        self.metrics_http = await start_metrics(self.settings, self.metrics)

    def _shutdown_reply(self, session: ProxySession, request: Request) -> Reply:
        """``shutdown``: the owner stops the jBox cleanly (its token files removed, as on
        SIGTERM); answered before it stops."""
        owner = self.owner
        if [w for w in request.options if w not in GLOBAL_FLAGS and not w.startswith("-pwd=")]:
            return Reply(exitcode=EINVAL, error="usage: shutdown", metadata=session.metadata)
        if owner is None or session.identity.login != owner.login:
            return Reply(
                exitcode=EXIT_PERMISSION,
                error="Permission denied : only the owner of this jBox may shut it down",
                metadata=session.metadata,
            )
        log.info("shutdown asked by %s", session.identity.login)
        if self.on_shutdown is not None:
            asyncio.get_running_loop().call_soon(self.on_shutdown)
        text = f"Shutting down the jBox (pid {os.getpid()}) of {owner.login}"
        return Reply(results=[{"message": text}], metadata=session.metadata)

    async def fetch_token(self) -> Token:
        assert self.upstream is not None
        hours = f"{self.options.token_hours:g}"
        try:
            reply = await self.upstream.call("token", "-hours", hours, timeout=60)
        except ConnectionLost as exc:
            raise RequestError(str(exc), exc.exitcode) from None
        if reply.exitcode or not reply.results:
            raise RequestError(f"token request refused: {reply.error}", reply.exitcode or 1)
        token = Token.from_record(reply.results[0])
        subject = parse_token_name(token.cert.subject)
        if subject is None or subject.kind is not TokenKind.USER:
            raise AuthError(f"central sent {dn_of(token.cert)}, not a user token")
        return token

    def install_token(self, token: Token) -> None:
        """Publish a new token: the files alien.py reads, our TLS certificate, and the
        token CA that local clients' tokens must come from."""
        cert_path, key_path = discovery.token_cert_paths()
        # both read-only for the owner alone, as alien.py writes them itself
        write_file(key_path, token.key_pem, 0o400, overwrite=True)
        write_file(cert_path, token.cert_pem, 0o400, overwrite=True)
        issuer = find_issuer(self.ca_dir, token.cert)
        if issuer is None:
            log.warning(
                "the CA of the token certificate is not in %s: local clients presenting "
                "tokens will be refused, and alien.py cannot verify this jBox",
                self.ca_dir,
            )
        elif self.authenticator is not None:
            self.authenticator.tokens = [TokenVerifier(issuer)]
        if self.server is not None:
            self.server.ssl_context = self._server_context(token)

    def _server_context(self, token: Token):  # -> ssl.SSLContext
        return context_from_pem("server", token.cert_pem, token.key_pem, self.ca_dir)

    def describe(self) -> str:
        assert self.server is not None and self.owner is not None and self.keeper is not None
        ports = self.server.ports()
        assert self.keeper.token is not None
        until = dt.datetime.fromtimestamp(self.keeper.token.not_after, dt.UTC)
        return (
            f"jBox ready: user {self.owner.login}, wss://{LISTEN_HOST}:{ports['websocket']}"
            f"/websocket/json, binary port {ports['binary']}, token valid until "
            f"{until:%Y-%m-%d %H:%M:%S} UTC, token file {self.token_files[0]}"
        )

    async def close(self) -> None:
        discovery.remove_token_files(os.getpid())
        await self.loops.stop_all(timeout=0)  # a renewal in progress is cancelled
        if self.server is not None:
            await self.server.close()
            self.server.audit.close()
        if self.upstream is not None:
            await self.upstream.close()
        if self.metrics_http is not None:
            await self.metrics_http.close()


async def serve(
    settings: Settings,
    options: JBoxOptions,
    cert_chain_pem: bytes,
    key_pem: bytes,
    ready: Callable[[str], None],
    *,
    stop_on_hup: bool = True,
) -> int:
    """Run until a signal (exit code 0) or the end of the jBox's own credential (1)."""
    jbox = JBox(settings, options, cert_chain_pem, key_pem)
    del key_pem
    loop = asyncio.get_running_loop()
    stop = stop_event([*STOP_SIGNALS, *([signal.SIGHUP] if stop_on_hup else [])])
    jbox.on_shutdown = stop.set
    ended: list[bool] = []

    def credential_ended() -> None:
        until = dt.datetime.fromtimestamp(jbox.credential_end, dt.UTC)
        log.error(
            "the certificate this jBox connects with ended at %s UTC and it cannot renew "
            "it: stopping (start the jBox again with a renewed certificate or proxy)",
            f"{until:%Y-%m-%d %H:%M:%S}",
        )
        ended.append(True)
        stop.set()

    timer: asyncio.TimerHandle | None = None
    try:
        await jbox.start()
        started()
        ready(jbox.describe())
        if jbox.credential_end > 0:
            timer = loop.call_later(max(0.0, jbox.credential_end - time.time()), credential_ended)
        await stop.wait()
        log.info("stopping")
    finally:
        if timer is not None:
            timer.cancel()
        await jbox.close()
    return 1 if ended else 0


def run_jbox(
    settings: Settings,
    options: JBoxOptions,
    cert_chain_pem: bytes,
    key_pem: bytes,
    *,
    detach: bool = False,
    log_file: str | None = None,
) -> int:
    """Run a jBox until SIGINT/SIGTERM; with *detach*, in the background once it is ready
    (the command returns then, ssh-agent style), logging to *log_file*."""
    notify_fd = -1
    if detach:
        read_fd, notify_fd = os.pipe()
        pid = os.fork()
        if pid:  # the parent waits for "ready" (or the reason it failed), then returns
            os.close(notify_fd)
            with os.fdopen(read_fd, "rb") as pipe:
                message = pipe.read().decode(errors="replace").strip()
            if message.startswith("jBox ready"):
                print(f"{message} (pid {pid})", flush=True)
                return 0
            print(f"jalien-bin: jBox did not start: {message or 'see the log'}", file=sys.stderr)
            return 1
        os.close(read_fd)
        os.setsid()
        _redirect(log_file)

    def ready(text: str) -> None:
        print(text, flush=True)
        if notify_fd >= 0:
            os.write(notify_fd, text.encode())
            os.close(notify_fd)

    def failed(text: str) -> None:
        if notify_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(notify_fd, text.encode())

    return run_role(
        lambda: serve(settings, options, cert_chain_pem, key_pem, ready, stop_on_hup=not detach),
        log_level=settings.log_level,
        log=LogOptions.from_settings(settings, "jbox"),
        prefix="jalien-bin: cannot start jBox: ",
        failures=[Failure((AuthError, RequestError), EXIT_FAILED), SYSTEM],
        report=failed,
    )


def _redirect(log_file: str | None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    target = null
    if log_file:
        with contextlib.suppress(OSError):
            target = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, 1)
    os.dup2(target, 2)
