"""The jalien server: one process, two personalities, mutual TLS.

- WebSocket + JSON at ``/websocket/json`` (picows), JAliEn's protocol, for alien.py/ROOT.
- The binary channel: framed MessagePack, many requests in flight per connection, replies
  out of order, pushed events.

Every TCP connection first passes a TLS gate that runs the handshake itself
(``loop.start_tls``), so a refused client (unknown CA, expired, unknown or revoked user)
is logged with its address and the reason; only then is the personality's protocol
attached to the TLS transport. A trusted certificate without an account hears why before
the connection closes (``jalien.net.refusal``: a refusal Reply on the binary channel, HTTP
401 at the WebSocket upgrade).

Every connection ends with its credential: at the notAfter of the certificate, token or
proxy it was opened with, the server closes it (saying why), and a request on a channel
whose own identity has expired is refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import msgspec
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSAutoPingStrategy, WSProtocol  # type: ignore[attr-defined]

from jalien.auth import policy
from jalien.auth.errors import AuthError
from jalien.net import deflate, eager
from jalien.net.audit import AuditLog, raw_outcome
from jalien.net.fairness import (
    InFlight,
    LoopBudget,
    TurnGate,
    busy_text,
    done_after_this_turn,
    serving,
)
from jalien.net.handler import Handler
from jalien.net.identity import Authenticator, Identity
from jalien.net.limits import Limits
from jalien.net.peers import on_this_host
from jalien.net.refusal import (
    EXPIRED,
    UNAUTHORIZED,
    expired_text,
    not_authorized,
    refusal,
    ws_reason,
)
from jalien.wire import codec, framing
from jalien.wire.channel import (
    CancelReceived,
    ChannelClosed,
    Invalid,
    OpenRequested,
    RequestReceived,
    ServerChannel,
    ServerEvent,
)
from jalien.wire.codec import DecodeError
from jalien.wire.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_PERMISSION,
    EXIT_TOO_BIG,
    RequestError,
)
from jalien.wire.jalien_json import (
    STREAM_START,
    OutputMode,
    error_reply_json,
    parse_request,
    render_page,
    render_reply,
    render_stream_end,
)
from jalien.wire.messages import (
    Event,
    Reply,
    Request,
)
from jalien.wire.streams import CONTROL_SEQ, SEQ_BITS, channel_of, stream_id

log = logging.getLogger("jalien.net.server")

WS_PATH = b"/websocket/json"
BINARY = "binary"
WEBSOCKET = "websocket"
# a session a level (jBox, VoBox, JobAgent) opened on its binary connection for one of its
# own clients, which may be JSON clients (alien.py, ROOT): told apart for what they can use
LEVEL = "level"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "TLS handshake timed out"
    return str(exc) or type(exc).__name__


async def _aclose(pages: Any) -> None:
    close = getattr(pages, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def _with_credential_end(identity: Identity, ssl_object: Any) -> Identity:
    """*identity* with the end of the credential the peer presented: its authenticator's
    word, else the peer certificate's notAfter (a jBox's owner gate maps every client to
    one identity, whatever it presented)."""
    if identity.expires > 0 or ssl_object is None:
        return identity
    peer = ssl_object.getpeercert()
    not_after = peer.get("notAfter") if peer else None
    if not not_after:
        return identity
    return msgspec.structs.replace(identity, expires=float(ssl.cert_time_to_seconds(not_after)))


def _at_credential_end(
    identity: Identity, callback: Callable[[], None]
) -> asyncio.TimerHandle | None:
    """A timer for the notAfter of the connection's credential (none when unknown)."""
    if identity.expires <= 0:
        return None
    delay = max(0.0, identity.expires - time.time())
    return asyncio.get_running_loop().call_later(delay, callback)


def _internal_error(exc: BaseException) -> Reply:
    log.error("handler failed", exc_info=exc)
    return Reply(exitcode=EXIT_FAILED, error=f"internal error: {type(exc).__name__}")


class _Handover(asyncio.Protocol):
    """The first protocol of a connection: when the TLS handshake is done it looks the
    peer up and hands the transport to the personality's protocol, synchronously, so that
    no byte can arrive in between."""

    def __init__(self, server: Server, personality: str, where: str) -> None:
        self._server = server
        self._personality = personality
        self._where = where

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server, where = self._server, self._where
        ssl_object = transport.get_extra_info("ssl_object")
        try:
            identity = _with_credential_end(server.authenticator(ssl_object), ssl_object)
        except AuthError as exc:
            log.warning("refused %s (%s): %s", where, self._personality, exc)
            server.audit.refused("connect", where, self._personality, str(exc))
            self._refuse(transport, UNAUTHORIZED, not_authorized(str(exc)))
            return
        if 0 < identity.expires <= time.time():  # clock skew: TLS let it by
            text = expired_text(identity.dn, identity.expires)
            log.warning("refused %s (%s): %s", where, self._personality, text)
            server.audit.refused("connect", where, self._personality, text, identity)
            self._refuse(transport, EXPIRED, text)
            return
        try:
            if self._personality == BINARY:
                protocol: Any = BinaryConnection(server, identity, where)
            else:
                protocol = server.websocket_protocol(identity, where)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except Exception:
            log.exception("closing %s (%s): session setup failed", where, self._personality)
            transport.abort()  # type: ignore[attr-defined]  # a TCP/TLS transport has it
            return
        log.info("connected %s (%s) as %s", where, self._personality, identity.login)

    def _refuse(self, transport: asyncio.BaseTransport, kind: str, text: str) -> None:
        """Tell a refused client why, then close: a refusal Reply on stream 0 of the binary
        channel (this protocol stays, reading nothing, until the TLS close is done), HTTP
        401 at the WebSocket upgrade (alien.py: "not authorized", exit 129)."""
        if self._personality == BINARY:
            body = codec.encode_msgpack(refusal(kind, text))
            transport.write(framing.encode_frame(stream_id(0, CONTROL_SEQ), body))  # type: ignore[attr-defined]
            transport.close()
            return
        try:
            protocol = self._server.websocket_refusal(text, self._where)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except Exception:
            log.exception("closing %s (%s): refusal failed", self._where, self._personality)
            transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connection_count -= 1  # refused after the handshake

    def data_received(self, data: bytes) -> None:
        pass  # a refused binary client's last words, while the TLS close completes


class _Session:
    """A client session as the binary connection sees it: the handler's state, whose."""

    __slots__ = ("identity", "state")

    def __init__(self, state: Any, identity: Identity) -> None:
        self.state = state
        self.identity = identity  # whose session: its credential's end is checked per request


STREAMS_AT_ONCE = 4
"""Streamed replies of one connection producing pages at once (each holds a page of up to
5000 entries in memory): the others wait their turn, so memory per connection stays
bounded whatever a client pipelines. A level's raw frames are not counted: they are bytes
already, and waiting for upstream must not hold back a client's other requests."""


class BinaryConnection(asyncio.Protocol):
    """The binary channel, server side: sockets, tasks and backpressure around the
    protocol's state machine (``wire.channel.ServerChannel``), which decodes frames and
    encodes replies."""

    def __init__(self, server: Server, identity: Identity, where: str) -> None:
        self.server = server
        self.identity = identity
        self.where = where
        self.transport: asyncio.Transport | None = None
        limits = server.limits
        self._channel = ServerChannel(limits.max_message_size, limits.compress_threshold)
        self._sessions: dict[int, _Session] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._out: list[bytes] | None = None
        self._out_size = 0
        self._reading_paused = False
        self._write_paused = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._slots = asyncio.Semaphore(STREAMS_AT_ONCE)
        self._idle: asyncio.TimerHandle | None = None
        self._ends: asyncio.TimerHandle | None = None  # the credential's notAfter
        self._active = True

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        limits = self.server.limits
        transport.set_write_buffer_limits(high=limits.write_buffer_high)  # type: ignore[attr-defined]
        if not limits.compress_local and on_this_host(transport):
            self._channel.compress_threshold = 0
        self.server.connections.add(self)
        self.server.join(self.identity.login, self)
        self._open_session(0, self.identity)
        self._arm_idle()
        self._ends = _at_credential_end(self.identity, self._credential_ended)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.leave(self.identity.login, self)
        self.server.connection_count -= 1
        if self._idle is not None:
            self._idle.cancel()
        if self._ends is not None:
            self._ends.cancel()
        self._drained.set()  # streams waiting to write see the transport closing
        for task in self._tasks.values():
            task.cancel()
        for channel in list(self._sessions):
            self._close_session(channel)
        log.info("disconnected %s (%s)", self.where, self.identity.login)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._drained.clear()
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._drained.set()
        if self._channel.pending:  # events left while it could not write
            asyncio.get_running_loop().call_soon(self._serve_backlog)
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        self._active = True
        try:
            self._channel.feed(data)
        except framing.ProtocolError as exc:
            log.warning("closing %s (%s): %s", self.where, self.identity.login, exc)
            self.transport.abort()  # type: ignore[union-attr]
            return
        if not self._write_paused:
            self._serve()
        self._update_reading()

    def _serve_backlog(self) -> None:
        if self._channel.pending and not self._write_paused:
            self._serve()
            self._update_reading()

    def _serve(self) -> None:
        """Serve the events received, the replies answered inline coalesced into one
        write; past the high-water mark the write goes out and, if the transport pauses,
        the rest waits in the channel (reading is paused meanwhile): inline replies are
        bounded too."""
        out: list[bytes] = []  # not `self._out = out = []`: Nuitka folds `if out` to False
        self._out = out
        self._out_size = 0
        transport = self.transport
        next_event = self._channel.next_event
        sessions = self._sessions
        try:
            while True:
                event = next_event()
                if event is None:
                    break
                if type(event) is RequestReceived:  # the hot path
                    sid = event.stream
                    self._request(
                        sid, sessions[sid >> SEQ_BITS], event.request, event.flags, event.body
                    )
                else:
                    self._event(event)
                if self._write_paused:  # (_write wrote out past the high-water mark)
                    break
        finally:
            self._out = None
            if out and transport is not None:
                transport.write(b"".join(out))

    # -- events
    def _event(self, event: ServerEvent) -> None:
        kind = type(event)
        if kind is RequestReceived:
            sid = event.stream  # type: ignore[union-attr]
            session = self._sessions[sid >> SEQ_BITS]
            self._request(sid, session, event.request, event.flags, event.body)  # type: ignore[union-attr]
        elif kind is Invalid:
            started = time.perf_counter()
            sent = self._write(self._channel.invalid(event))  # type: ignore[arg-type]
            if event.undecodable:  # type: ignore[union-attr]
                self.server.audit.record(
                    self.where, BINARY, channel_of(event.stream), self.identity, "", (),  # type: ignore[union-attr]
                    EXIT_INVALID, event.error, started, sent,  # type: ignore[union-attr]
                )  # fmt: skip
        elif kind is CancelReceived:
            task = self._tasks.get(event.stream)  # type: ignore[union-attr]
            if task is not None:
                task.cancel()
        elif kind is OpenRequested:
            self._open_channel(event)  # type: ignore[arg-type]
        elif kind is ChannelClosed:
            self._close_session(event.channel, event.streams)  # type: ignore[union-attr]

    def _request(
        self, sid: int, session: _Session, request: Request, flags: int, body: bytes
    ) -> None:
        expires = session.identity.expires
        if expires and expires <= time.time():  # a channel's own (forwarded) credential
            reply = refusal(EXPIRED, expired_text(session.identity.dn, expires))
            sent = self.send(sid, reply)
            self._audit(session.identity, sid, request, time.perf_counter(), 13, reply.error, sent)
            return
        started = time.perf_counter()
        server = self.server
        key = session.identity.login
        in_flight = server.in_flight
        if not in_flight.admit(key):  # past the identity's hard bound: busy, at once
            reply = Reply(exitcode=EXIT_BUSY, error=server.busy(key))
            sent = self.send(sid, reply)
            self._audit(session.identity, sid, request, started, EXIT_BUSY, reply.error, sent)
            return
        handler = server.handler
        forward = server.forward_raw
        try:
            if forward is not None:  # a proxy level: the body goes upstream as it is
                result: Any = forward(session.state, request, flags, body)
            else:
                result = handler.dispatch(session.state, request)
        except Exception as exc:  # the handler's own guard failed: a bug, keep serving
            result = _internal_error(exc)
        if type(result) is Reply:
            in_flight.done(key)
            sent = self.send(sid, result)
            self._audit(
                session.identity, sid, request, started, result.exitcode, result.error, sent
            )
            return
        if type(result) is tuple:  # a level's cached raw reply
            in_flight.done(key)
            sent = self.send_raw(sid, *result)
            self._audit(session.identity, sid, request, started, *raw_outcome(*result), sent)
            return
        # run at once (net.eager): most end without waiting, and need no Task
        task = eager.start(self._finish(sid, result, session.identity, request, started))
        if type(task) is eager.Ended:
            done_after_this_turn(in_flight, key)
            return
        task.add_done_callback(lambda _t: in_flight.done(key))  # type: ignore[union-attr]
        self._tasks[sid] = task  # type: ignore[assignment]
        self._update_reading()

    async def _finish(
        self, sid: int, pending: Any, identity: Identity, request: Request, started: float
    ) -> None:
        try:
            if hasattr(pending, "__anext__"):
                outcome = await self._stream(sid, pending, identity.login)
                self._audit(identity, sid, request, started, *outcome)
                return
            reply = await pending
        except asyncio.CancelledError:
            reply = Reply(exitcode=EXIT_FAILED, error="cancelled")
        except RequestError as exc:
            reply = Reply(exitcode=exc.exitcode, error=str(exc))
        except Exception as exc:
            reply = _internal_error(exc)
        finally:
            self._tasks.pop(sid, None)
            self._update_reading()
        sent = 0
        if self.transport is not None and not self.transport.is_closing():
            sent = self.send_raw(sid, *reply) if type(reply) is tuple else self.send(sid, reply)
        if type(reply) is tuple:
            self._audit(identity, sid, request, started, *raw_outcome(*reply), sent)
        else:
            self._audit(identity, sid, request, started, reply.exitcode, reply.error, sent)

    def _audit(
        self,
        identity: Identity,
        sid: int,
        request: Request,
        started: float,
        exitcode: int | str,
        error: str,
        sent: int,
        frames: int = 1,
    ) -> None:
        self.server.audit.record(
            self.where, BINARY, channel_of(sid), identity, request.command, request.options,
            exitcode, error, started, sent, frames,
        )  # fmt: skip

    async def _stream(self, sid: int, pages: Any, key: str) -> tuple[int | str, str, int, int]:
        """A reply in several frames: every one but the last carries FLAG_MORE (the
        channel holds each page back until the next), and a stream that produced nothing
        still ends with an empty final reply (``ServerChannel.end``). Items are Replies, or
        raw (flags, body) frames from upstream that already say so. A page is produced
        only while the transport is below its high-water mark, by at most STREAMS_AT_ONCE
        streams of the connection. Returns (exit code, error, bytes sent, frames) for the
        audit log."""
        channel = self._channel
        outcome: tuple[int | str, str] = (0, "")
        sent = frames = 0
        slots = self._slots if self.server.forward_raw is None else None
        # a page is made in a turn (net.fairness): a level's raw frames wait for upstream
        turns = self.server.turns if slots is not None else None
        in_flight = self.server.in_flight
        budget = self.server.page_budget
        serving(in_flight, key)  # short pages while others are active
        try:
            if slots is not None:
                await slots.acquire()
            try:
                while True:
                    if self._write_paused:
                        await self._writable()
                    if self.transport is None or self.transport.is_closing():
                        channel.drop_held(sid)
                        return EXIT_FAILED, "client gone", sent, frames
                    if budget.spent():  # new requests are read first (net.fairness)
                        await budget.wait()
                    # a page is made and written in a turn (net.fairness), when
                    # another identity is active and this one could flood
                    held = turns is not None and turns.try_enter()
                    if turns is not None and not held and in_flight.needs_turn(key):
                        await turns.enter(key)  # other identities' pages first, in turn
                        held = True
                    try:
                        try:
                            item = await pages.__anext__()
                        except StopAsyncIteration:
                            break
                        frames += 1
                        if type(item) is tuple:
                            sent += self._write(channel.reply_raw(sid, *item), now=True)
                            outcome = raw_outcome(*item)
                        else:
                            sent += self._write(channel.page(sid, item), now=True)
                            outcome = (item.exitcode, item.error)
                    finally:
                        if held:
                            turns.leave()  # type: ignore[union-attr]
            finally:
                if slots is not None:
                    slots.release()
        except asyncio.CancelledError:
            channel.drop_held(sid)
            reply = Reply(exitcode=EXIT_FAILED, error="cancelled")
            sent += self._write(channel.finish(sid, reply))
            return reply.exitcode, reply.error, sent, frames
        except Exception as exc:
            reply = (
                Reply(exitcode=exc.exitcode, error=str(exc))
                if isinstance(exc, RequestError)
                else _internal_error(exc)
            )
            frames += 1  # the error's frame
            sent += self._write(channel.finish(sid, reply))
            return reply.exitcode, reply.error, sent, frames
        finally:
            await _aclose(pages)
        ended = channel.end(sid)
        if ended and not frames:
            frames = 1
        sent += self._write(ended)
        return (*outcome, sent, frames)

    async def _writable(self) -> None:
        """Wait while the transport is above its high-water mark (its client reads slowly,
        or not at all)."""
        while self._write_paused:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            await self._drained.wait()

    def _open_channel(self, event: OpenRequested) -> None:
        sid, channel = event.stream, event.channel
        dn = event.dn or self.identity.dn
        try:
            if event.cert:
                identity = self._forwarded(event.cert)
            elif dn == self.identity.dn:
                identity = self.identity
            elif policy.allows(self.identity, policy.Action.ACT_FOR):
                identity = self.server.identify_dn(dn)
            else:
                raise AuthError(f"{self.identity.login} may not act for {dn}")
        except AuthError as exc:
            log.warning(
                "%s (%s): channel %d refused: %s", self.where, self.identity.login, channel, exc
            )
            self.server.audit.refused(
                "channel", self.where, BINARY, str(exc), self.identity, channel
            )
            self.send(sid, Reply(exitcode=13, error=str(exc)))
            return
        if channel in self._sessions:
            self._close_session(channel)
        self._open_session(channel, identity)
        self.send(sid, Reply(metadata={"user": identity.login}))

    def _forwarded(self, der: bytes) -> Identity:
        """A channel for the certificate a level forwarded (its client's, a token may be):
        the policy says whose (jalien.auth.policy.may_forward)."""
        opener = self.identity
        if not policy.allows(opener, policy.Action.FORWARD):
            raise AuthError(policy.refusal(opener, policy.Action.FORWARD))
        identity = self.server.identify_forwarded(der)
        if not policy.may_forward(opener, identity):
            raise AuthError(f"{opener.login} may forward job tokens only, not {identity.dn}")
        return identity

    def _open_session(self, channel: int, identity: Identity) -> None:
        def push(event: Event) -> None:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                self._write(self._channel.push(channel, event))

        personality = LEVEL if channel else BINARY
        state = self.server.handler.open_session(identity, push, personality=personality)
        if channel:
            self._channel.open(channel)
        self._sessions[channel] = _Session(state, identity)

    def _close_session(self, channel: int, streams: list[int] | None = None) -> None:
        """End *channel*'s session; its requests still in flight are cancelled."""
        if streams is None:
            streams = self._channel.close(channel) if channel else []
        session = self._sessions.pop(channel, None)
        for sid in streams:
            task = self._tasks.get(sid)
            if task is not None:
                task.cancel()
        if session is not None:
            self.server.handler.close_session(session.state)

    def _write(self, data: bytes, now: bool = False) -> int:
        """Write *data* (or queue it for the coalesced write of this read); its size.
        *now*: a page of a stream that goes on (the client starts reading it while the
        next are made, even when the stream was started at once inside a read)."""
        transport = self.transport
        if not data or transport is None or transport.is_closing():
            return 0
        out = self._out
        if out is not None:
            out.append(data)
            self._out_size += len(data)
            if now or self._out_size > self.server.limits.write_buffer_high:
                self._write_out(out, transport)  # past the mark: backpressure
        else:
            transport.write(data)
        return len(data)

    def _write_out(self, out: list[bytes], transport: asyncio.Transport) -> None:
        """The coalesced write of this read, now; past the transport's high-water mark it
        calls pause_writing, and what is made next waits (``_writable``)."""
        transport.write(b"".join(out))
        out.clear()
        self._out_size = 0

    def send(self, sid: int, message: Reply | Event, more: bool = False) -> int:
        """Encode and write (or queue for the coalesced write of this read); the bytes."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return 0
        return self._write(self._channel.reply(sid, message, more))

    def send_raw(self, sid: int, flags: int, body: bytes) -> int:
        """Write a reply body as it came from upstream (a proxy level); the bytes."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return 0
        return self._write(self._channel.reply_raw(sid, flags, body))

    # -- flow control and idleness
    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = (
            self._write_paused
            or self._channel.pending > 0
            or len(self._tasks) >= self.server.limits.max_in_flight
            or self.server.in_flight.saturated(self.identity.login)
        )
        if pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _arm_idle(self) -> None:
        timeout = self.server.limits.idle_timeout
        if timeout > 0:
            self._idle = asyncio.get_running_loop().call_later(timeout, self._check_idle)

    def _check_idle(self) -> None:
        if not self._active and not self._tasks and self.transport is not None:
            log.info("closing %s (%s): idle", self.where, self.identity.login)
            self.transport.close()
            return
        self._active = False
        self._arm_idle()

    def _credential_ended(self) -> None:
        """The connection's credential reached its notAfter: say so on stream 0, close."""
        self._ends = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        text = expired_text(self.identity.dn, self.identity.expires)
        log.info("closing %s (%s): %s", self.where, self.identity.login, text)
        self.send(stream_id(0, CONTROL_SEQ), refusal(EXPIRED, text))
        transport.close()


def _close_answer(frame: WSFrame) -> WSCloseCode:
    """The code that answers a peer's close frame (RFC 6455 7.4): its own code echoed, or
    1000 when it gave none (picows reports 0 then, which no endpoint may send)."""
    # picows.pyi says Enum: at run time an IntEnum, or an int for a code it does not name
    code: int = frame.get_close_code() if frame.payload_size >= 2 else 0  # type: ignore[assignment]
    return code if code >= 1000 else WSCloseCode.OK  # type: ignore[return-value]


COALESCE_MAX = 64 * 1024
"""A WebSocket reply smaller than this is framed by ``JsonWebSocket`` and written with the
other replies of the loop's turn (pipelined ``pwd``s: one TLS record for many replies)."""


def _text_frame(text: bytes, size: int) -> bytes:
    """A final, unmasked TEXT frame (a server's, RFC 6455 5.2) of *size* < 2**16 bytes."""
    if size < 126:
        return bytes((0x81, size)) + text
    return b"\x81\x7e" + size.to_bytes(2, "big") + text


KEEP_PAGE = 16 * 1024
"""A streamed JSON reply's first page smaller than this waits for the next page: when there
is none (``ls`` of a small directory), the reply leaves as one WebSocket message instead of
two fragments (each fragment costs a TLS record and a write)."""


class _JsonStream:
    """A streamed reply waiting for its turn in a WebSocket's reply queue."""

    __slots__ = ("mode", "pages", "request", "running", "started", "task")

    def __init__(self, pages: Any, mode: OutputMode, request: Request, started: float) -> None:
        self.pages = pages
        self.mode = mode
        self.request = request
        self.started = started
        self.task: asyncio.Future[None] | None = None  # once it waited
        self.running = False  # its first step was taken (net.eager)


class JsonWebSocket(WSListener):
    """One alien.py/ROOT client: JAliEn JSON requests in, replies in request order."""

    def __init__(
        self,
        server: Server,
        identity: Identity,
        where: str,
        agreement: deflate.Agreement | None = None,
    ) -> None:
        self.server = server
        self.identity = identity
        self.where = where
        self.transport: WSTransport | None = None
        self.session: Any = None
        # permessage-deflate, when the client offered it (RFC 7692; net.deflate)
        self._deflate = agreement
        self._zipped = deflate.Stats()  # this connection's compressed replies
        self._inflating = False  # the message being received was compressed (RSV1)
        # small replies framed here and written together at the end of the loop's turn
        self._out: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # replies waiting for their turn: bytes when done, a Task while running
        self._queue: collections.deque[Any] = collections.deque()
        self._fragments: list[bytes] = []
        self._reading_paused = False
        self._idle: asyncio.TimerHandle | None = None
        self._ends: asyncio.TimerHandle | None = None  # the credential's notAfter
        self._active = True

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self.server.join(self.identity.login, self)
        self.session = self.server.handler.open_session(
            self.identity, self._push, personality=WEBSOCKET
        )
        self._arm_idle()
        self._ends = _at_credential_end(self.identity, self._credential_ended)
        if self._deflate is not None:
            log.info("%s (websocket, %s): permessage-deflate", self.where, self.identity.login)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.connections.discard(self)  # counted out by _CountedWSProtocol
        self.server.leave(self.identity.login, self)
        self._out.clear()
        if self._idle is not None:
            self._idle.cancel()
        if self._ends is not None:
            self._ends.cancel()
        for item in self._queue:
            if isinstance(item, asyncio.Task):
                item.cancel()
            elif type(item) is _JsonStream:
                if item.task is not None:
                    item.task.cancel()
                elif not item.running:  # never started: counted out here
                    self.server.in_flight.done(self.identity.login)
        self._queue.clear()
        if self.session is not None:
            self.server.handler.close_session(self.session)
            self.session = None
        zipped = self._zipped
        if self._deflate is None:
            log.info("disconnected %s (websocket, %s)", self.where, self.identity.login)
        else:
            log.info(
                "disconnected %s (websocket, %s): permessage-deflate, %d replies compressed, "
                "%d -> %d bytes", self.where, self.identity.login, zipped.messages,
                zipped.raw, zipped.sent,
            )  # fmt: skip

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._active = True
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            self._flush()
            transport.send_close(_close_answer(frame))
            transport.disconnect()
            return
        if kind not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            if frame.rsv1:
                self._protocol_error("RSV1 on a control frame")
            return  # pings are answered by picows; pongs need nothing
        if frame.rsv1:  # RSV1: the first frame of a compressed message (RFC 7692 6)
            if self._deflate is None or kind is WSMsgType.CONTINUATION:
                self._protocol_error("RSV1 without permessage-deflate on a message's first frame")
                return
            self._inflating = True
        elif kind is not WSMsgType.CONTINUATION and not self._fragments:
            self._inflating = False
        if not frame.fin or self._fragments:
            self._fragments.append(frame.get_payload_as_bytes())
            size = sum(map(len, self._fragments))
            if size > self.server.limits.max_message_size:
                self._fragments.clear()
                self._enqueue(self._error(EXIT_TOO_BIG, "message too big"))
                return
            if not frame.fin:
                return
            payload: bytes | memoryview = b"".join(self._fragments)
            self._fragments.clear()
        else:
            payload = frame.get_payload_as_memoryview()
        if self._inflating:
            self._inflating = False
            try:
                payload = deflate.inflate(payload, self.server.limits.max_message_size)
            except deflate.TooBig:
                self._enqueue(self._error(EXIT_TOO_BIG, "message too big"))
                return
            except deflate.BadData as exc:
                self._enqueue(self._error(EXIT_INVALID, str(exc)))
                return
        self._request(payload)

    def _protocol_error(self, text: str) -> None:
        transport = self.transport
        log.warning("closing %s (websocket, %s): %s", self.where, self.identity.login, text)
        if transport is not None and not transport.is_disconnected:
            self._flush()
            transport.send_close(WSCloseCode.PROTOCOL_ERROR, text.encode()[:120])
            transport.disconnect()

    def _error(self, code: int, text: str) -> bytes:
        return error_reply_json(code, text, self._metadata())

    def _metadata(self) -> dict[str, str]:
        describe: Callable[[Any], dict[str, str]] | None = getattr(
            self.server.handler, "describe_session", None
        )
        if describe is not None and self.session is not None:
            return describe(self.session)
        return {"user": self.identity.login, "currentdir": self.identity.home or "/"}

    def _request(self, payload: bytes | memoryview) -> None:
        started = time.perf_counter()
        try:
            request, mode = parse_request(bytes(payload))
        except DecodeError as exc:
            text = self._error(EXIT_INVALID, str(exc))
            self._enqueue(text)
            self.server.audit.record(
                self.where, WEBSOCKET, 0, self.identity, "", (), EXIT_INVALID, str(exc),
                started, len(text),
            )  # fmt: skip
            return
        expires = self.identity.expires
        if expires and expires <= time.time():  # before the close frame leaves
            self._enqueue(self._error(EXIT_PERMISSION, expired_text(self.identity.dn, expires)))
            return
        server = self.server
        key = self.identity.login
        in_flight = server.in_flight
        if not in_flight.admit(key):  # past the identity's hard bound: busy, at once
            error = server.busy(key)
            text = self._error(EXIT_BUSY, error)
            self._enqueue(text)
            self._audit(request, started, EXIT_BUSY, error, len(text))
            return
        try:
            result = server.handler.dispatch(self.session, request)
        except Exception as exc:
            result = _internal_error(exc)
        if type(result) is Reply:
            in_flight.done(key)
            text = render_reply(result, mode)
            self._enqueue(text)
            self._audit(request, started, result.exitcode, result.error, len(text))
            return
        if hasattr(result, "__anext__"):
            self._enqueue(_JsonStream(result, mode, request, started))
        else:
            # neither a Reply nor a stream: an awaitable (type() is not narrowed by mypy),
            # run at once (net.eager): most end without waiting
            started_now = eager.start(self._finish(result, mode, request, started))  # type: ignore[arg-type]
            if type(started_now) is eager.Ended:
                done_after_this_turn(in_flight, key)
                self._enqueue(started_now.value)
            else:
                started_now.add_done_callback(lambda _t: in_flight.done(key))  # type: ignore[union-attr]
                self._enqueue(started_now)
        if in_flight.saturated(key):
            self._update_reading()

    def _update_reading(self) -> None:
        """Read this connection while its identity is below its bound (net.fairness)."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        pause = self.server.in_flight.saturated(self.identity.login)
        if pause != self._reading_paused:
            raw = transport.underlying_transport
            if pause:
                raw.pause_reading()
            else:
                raw.resume_reading()
            self._reading_paused = pause

    async def _finish(
        self, pending: Awaitable[Reply], mode: OutputMode, request: Request, started: float
    ) -> bytes:
        try:
            reply = await pending
        except asyncio.CancelledError:
            self._audit(request, started, EXIT_FAILED, "cancelled", 0)
            raise
        except Exception as exc:
            reply = _internal_error(exc)
        text = render_reply(reply, mode)
        self._audit(request, started, reply.exitcode, reply.error, len(text))
        return text

    def _audit(
        self,
        request: Request,
        started: float,
        exitcode: int | str,
        error: str,
        sent: int,
        pages: int = 1,
    ) -> None:
        self.server.audit.record(
            self.where, WEBSOCKET, 0, self.identity, request.command, request.options,
            exitcode, error, started, sent, pages,
        )  # fmt: skip

    def _enqueue(self, item: Any) -> None:
        queue = self._queue
        if not queue and type(item) is bytes:
            self._send(item)
            return
        queue.append(item)
        if isinstance(item, asyncio.Task):
            item.add_done_callback(lambda _t: self._drain())
        else:
            self._drain()

    def _drain(self) -> None:
        """Send what is ready at the head of the queue: replies leave in request order."""
        queue = self._queue
        while queue:
            head = queue[0]
            if type(head) is bytes:
                text = head
            elif type(head) is _JsonStream:
                if head.task is None and not head.running:  # its turn: start its pages
                    head.running = True
                    task = eager.start(self._run_stream(head))  # most end at once
                    if type(task) is eager.Ended:
                        done_after_this_turn(self.server.in_flight, self.identity.login)
                        if queue and queue[0] is head:  # (not emptied by a disconnect)
                            queue.popleft()
                        continue
                    head.task = task  # type: ignore[assignment]
                    task.add_done_callback(lambda _t: self._stream_done())  # type: ignore[union-attr]
                    task.add_done_callback(  # type: ignore[union-attr]
                        lambda _t: self.server.in_flight.done(self.identity.login)
                    )
                return
            elif head.done():
                if head.cancelled():
                    queue.popleft()
                    continue
                text = head.result()
            else:
                return
            queue.popleft()
            self._send(text)

    def _stream_done(self) -> None:
        if self._queue and type(self._queue[0]) is _JsonStream:
            self._queue.popleft()
        self._drain()

    async def _run_stream(self, stream: _JsonStream) -> None:
        """One JSON message sent as WebSocket fragments, a page at a time."""
        last = Reply()
        first = True
        started = False
        sent = pages = 0
        zipper: deflate.MessageDeflater | None = None
        kept: bytes | None = None  # a small first page, sent with the end if it is the last
        turns = self.server.turns
        key = self.identity.login
        in_flight = self.server.in_flight
        budget = self.server.page_budget
        serving(in_flight, key)  # short pages while others are active
        pages_of = stream.pages
        try:
            while True:
                if budget.spent():  # new requests are read first (net.fairness)
                    await budget.wait()
                # a page is made, rendered and written in a turn (net.fairness); a light
                # identity's needs none
                held = turns.try_enter()
                if not held and in_flight.needs_turn(key):
                    await turns.enter(key)
                    held = True
                try:
                    try:
                        page = await pages_of.__anext__()
                    except StopAsyncIteration:
                        break
                    if self.transport is None or self.transport.is_disconnected:
                        self._audit(
                            stream.request, stream.started, EXIT_FAILED, "client gone", sent,
                            pages,
                        )  # fmt: skip
                        return
                    text = render_page(page, stream.mode, first)
                    last = page
                    pages += 1
                    if text:
                        first = False
                        if kept is not None:  # not the only page: the kept one goes first
                            text, kept = kept + text, None
                        if not started and len(text) < KEEP_PAGE:
                            kept = text  # maybe the only page: one message with the end
                            continue
                        if not started and self._compresses(len(text)):
                            zipper = self._deflater()
                        self._send_fragment(
                            STREAM_START + text if not started else text, started, zipper=zipper
                        )
                        sent += len(text) + (0 if started else len(STREAM_START))
                        started = True
                finally:
                    if held:
                        turns.leave()
                if started:
                    await self._writable()
        except asyncio.CancelledError:
            self._audit(stream.request, stream.started, EXIT_FAILED, "cancelled", sent, pages)
            raise
        except RequestError as exc:
            last = Reply(exitcode=exc.exitcode, error=str(exc), metadata=last.metadata)
        except Exception as exc:
            last = _internal_error(exc)
        finally:
            await _aclose(stream.pages)
        if not last.metadata:
            last.metadata = self._metadata()
        end = render_stream_end(last)
        if not started:  # one message, not fragments: one TLS record, one write
            if kept is not None:
                end = kept + end
            self._send(STREAM_START + end)
        else:
            self._send_fragment(end, True, fin=True, zipper=zipper)
        sent += len(end) + (0 if started else len(STREAM_START))
        self._audit(stream.request, stream.started, last.exitcode, last.error, sent, pages)

    def _send_fragment(
        self,
        data: bytes,
        continuation: bool,
        fin: bool = False,
        zipper: deflate.MessageDeflater | None = None,
    ) -> None:
        """A fragment of a streamed message; compressed by *zipper* when the stream's first
        page decided so (RSV1 on the first frame only, RFC 7692 6.1)."""
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            self._flush()  # the replies before it go first
            kind = WSMsgType.CONTINUATION if continuation else WSMsgType.TEXT
            if zipper is None:
                transport.send(kind, data, fin=fin)
                return
            packed = zipper.fragment(data, final=fin)
            self._count(len(data), len(packed), fin)
            transport.send(kind, packed, fin=fin, rsv1=not continuation)

    def _count(self, raw: int, sent: int, final: bool) -> None:
        self._zipped.count(raw, sent, final)
        self.server.deflate_stats.count(raw, sent, final)

    def _compresses(self, size: int) -> bool:
        return self._deflate is not None and size >= self.server.limits.deflate_threshold

    def _deflater(self) -> deflate.MessageDeflater:
        window = self._deflate.server_max_window_bits if self._deflate is not None else 15
        return deflate.MessageDeflater(self.server.limits.deflate_level, window)

    async def _writable(self) -> None:
        transport = self.transport
        if transport is None:
            return
        raw = transport.underlying_transport
        while raw.get_write_buffer_size() > self.server.limits.write_buffer_high:
            await asyncio.sleep(0.005)
            if transport.is_disconnected:
                return

    def _send(self, text: bytes) -> None:
        """A reply as one message. A small one is framed here and written with the others
        of this loop turn in one write (one TLS record, one syscall: ``_flush``)."""
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            size = len(text)
            zipped = self._deflate is not None and size >= self.server.limits.deflate_threshold
            if size < COALESCE_MAX and not zipped:
                out = self._out
                if not out:
                    loop = self._loop
                    if loop is None:
                        loop = self._loop = asyncio.get_running_loop()
                    loop.call_soon(self._flush)
                out.append(_text_frame(text, size))
                return
            self._flush()  # what is framed goes first
            if zipped:
                packed = self._deflater().fragment(text, final=True)
                self._count(size, len(packed), True)
                transport.send(WSMsgType.TEXT, packed, rsv1=True)
                return
            transport.send(WSMsgType.TEXT, text)

    def _flush(self) -> None:
        """Write the replies framed in this loop turn, in one write."""
        out = self._out
        if not out:
            return
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            transport.underlying_transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _push(self, event: Event) -> None:
        """JAliEn's JSON protocol has no server push; events are dropped on WebSocket."""

    def _arm_idle(self) -> None:
        timeout = self.server.limits.idle_timeout
        if timeout > 0:
            self._idle = asyncio.get_running_loop().call_later(timeout, self._check_idle)

    def _check_idle(self) -> None:
        if not self._active and not self._queue and self.transport is not None:
            log.info("closing %s (websocket, %s): idle", self.where, self.identity.login)
            self._flush()
            self.transport.send_close(WSCloseCode.GOING_AWAY, b"idle")
            self.transport.disconnect()
            return
        self._active = False
        self._arm_idle()

    def _credential_ended(self) -> None:
        """The connection's credential reached its notAfter: a close frame saying so."""
        self._ends = None
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        text = expired_text(self.identity.dn, self.identity.expires)
        log.info("closing %s (websocket, %s): %s", self.where, self.identity.login, text)
        self._flush()
        transport.send_close(WSCloseCode.POLICY_VIOLATION, ws_reason(text))
        transport.disconnect()


class _CountedWSProtocol(WSProtocol):  # type: ignore[misc]  # WSProtocol: not in picows.pyi
    """picows' protocol, counted out when its connection ends, whether the upgrade was
    answered with a listener or not (a 401 or a 404 never reaches one)."""

    def __init__(self, server: Server, *args: Any) -> None:
        super().__init__(*args)
        self._jalien_server = server

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._jalien_server.connection_count -= 1


class Server:
    """Listens on every configured address for both personalities."""

    def __init__(
        self,
        handler: Handler,
        ssl_context: ssl.SSLContext | None,
        authenticator: Authenticator,
        *,
        identify_dn: Callable[[str], Identity] | None = None,
        identify_forwarded: Callable[[bytes], Identity] | None = None,
        limits: Limits | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.handler = handler
        # every request answered is a line there (net.audit); default: DEBUG console only
        self.audit = audit if audit is not None else AuditLog()
        self.forward_raw = getattr(handler, "dispatch_raw", None)
        # picows logs every accepted connection at INFO; our gate already does
        logging.getLogger("jalien.net.websocket").setLevel(logging.WARNING)
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self._identify_dn = identify_dn
        # a forwarded certificate (OpenChannel.cert) -> Identity; default: the
        # authenticator's identify_forwarded, when it has one
        self._identify_forwarded = identify_forwarded or getattr(
            authenticator, "identify_forwarded", None
        )
        self.limits = limits or Limits()
        self.deflate_stats = deflate.Stats()  # WebSocket messages compressed, bytes
        # fairness between identities (net.fairness): requests in flight per login, the
        # turns of streamed pages, each login's connections (to resume reading them)
        self.in_flight = InFlight(
            self.limits.identity_soft, self.limits.identity_hard, on_resume=self._resume
        )
        self.turns = TurnGate(self.limits.turns)
        self.page_budget = LoopBudget()  # pages per turn of the loop (net.fairness)
        self.busy_replies = 0
        self._by_login: dict[str, set[Any]] = {}
        self.connections: set[Any] = set()
        self.connection_count = 0
        self._sockets: dict[str, list[socket.socket]] = {}
        self._accepting: set[asyncio.Task[None]] = set()
        self._handshakes: set[asyncio.Task[None]] = set()

    def join(self, login: str, connection: Any) -> None:
        self._by_login.setdefault(login, set()).add(connection)

    def leave(self, login: str, connection: Any) -> None:
        conns = self._by_login.get(login)
        if conns is not None:
            conns.discard(connection)
            if not conns:
                del self._by_login[login]

    def _resume(self, login: str) -> None:
        """*login* fell back below its bound: read its connections again."""
        for connection in list(self._by_login.get(login, ())):
            connection._update_reading()

    def busy(self, login: str) -> str:
        """The text of a busy reply (EXIT_BUSY), logged once per hundred."""
        self.busy_replies += 1
        limit = self.limits.identity_hard
        if self.busy_replies % 100 == 1:
            log.warning("%s past %d requests in flight: answered busy", login, limit)
        return busy_text(login, self.in_flight.counts.get(login, 0), limit)

    def identify_dn(self, dn: str) -> Identity:
        if self._identify_dn is None:
            raise AuthError("this server does not accept proxied identities")
        return self._identify_dn(dn)

    def identify_forwarded(self, der: bytes) -> Identity:
        if self._identify_forwarded is None:
            raise AuthError("this server does not accept forwarded certificates")
        return self._identify_forwarded(der)

    def websocket_protocol(self, identity: Identity, where: str) -> WSProtocol:
        def route(request: WSUpgradeRequest) -> Any:
            if request.path.split(b"?", 1)[0].rstrip(b"/") != WS_PATH:
                return None  # picows answers 404
            offer = ", ".join(request.headers.getall("Sec-WebSocket-Extensions", []))
            agreement = deflate.negotiate(offer) if self.limits.deflate else None
            listener = JsonWebSocket(self, identity, where, agreement)
            if agreement is None:
                return listener
            response = WSUpgradeResponse.create_101_response(
                {"Sec-WebSocket-Extensions": agreement.header}
            )
            return WSUpgradeResponseWithListener(response, listener)

        return self._ws_protocol(route)

    def websocket_refusal(self, reason: str, where: str) -> WSProtocol:
        """The upgrade of a refused client answered with HTTP 401 and the reason (alien.py
        says "not authorized" and exits 129)."""

        def route(request: WSUpgradeRequest) -> Any:
            response = WSUpgradeResponse.create_error_response(
                HTTPStatus.UNAUTHORIZED,
                reason.encode() + b"\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )
            return WSUpgradeResponseWithListener(response, None)

        return self._ws_protocol(route)

    def _ws_protocol(self, route: Callable[[WSUpgradeRequest], Any]) -> WSProtocol:
        limits = self.limits
        return _CountedWSProtocol(
            self,
            None,
            None,
            False,
            route,
            logging.getLogger("jalien.net.websocket"),
            True,  # disconnect on exception
            limits.handshake_timeout,
            False,
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,  # unused: the server does not auto-ping
            True,  # answer pings (alien.py pings every 20 s)
            limits.max_message_size,
            None,
            16 * 1024,
        )

    async def start(
        self, hosts: list[str], ws_port: int, binary_port: int, *, reuse_port: bool = False
    ) -> None:
        """Listen on every host for each personality (a port < 0 disables one). With port 0
        the first host picks a free port and the others use the same one. *reuse_port*:
        SO_REUSEPORT, the ports shared with the other workers of a jcentral (the kernel
        spreads the connections over them; roles/workers.py)."""
        loop = asyncio.get_running_loop()
        for personality, port in ((WEBSOCKET, ws_port), (BINARY, binary_port)):
            if port < 0:
                continue
            for host in hosts:
                sock = _listen(host, port, reuse_port)
                port = sock.getsockname()[1]
                self._sockets.setdefault(personality, []).append(sock)
                self._accepting.add(loop.create_task(self._accept(sock, personality)))
            log.info("%s listening on %s", personality, ", ".join(f"[{h}]:{port}" for h in hosts))

    def ports(self) -> dict[str, int]:
        """The bound port of each personality (useful with port 0)."""
        return {name: socks[0].getsockname()[1] for name, socks in self._sockets.items()}

    async def _accept(self, sock: socket.socket, personality: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:  # out of file descriptors, ...: wait, keep serving
                log.error("accept on %s failed: %s", personality, exc)
                await asyncio.sleep(0.5)
                continue
            where = f"{addr[0]}:{addr[1]}"
            if self.connection_count >= self.limits.max_connections:
                log.warning("refused %s (%s): too many connections", where, personality)
                self.audit.refused(
                    "connect", where, personality, "too many connections", exitcode=107
                )
                conn.close()
                continue
            self.connection_count += 1
            task = loop.create_task(self._handshake(conn, where, personality))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, where: str, personality: str) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _Handover(self, personality, where),
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.limits.handshake_timeout
                if self.ssl_context is not None
                else None,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.connection_count -= 1
            if isinstance(exc, ConnectionResetError | BrokenPipeError):
                # closed before a TLS word: a port probe (health check, a script waiting
                # for the port), not a client that was refused
                log.debug("%s (%s) closed before the TLS handshake", where, personality)
            else:
                log.warning("refused %s (%s): TLS: %s", where, personality, _reason(exc))
                self.audit.refused("connect", where, personality, f"TLS: {_reason(exc)}")
            conn.close()

    async def close(self) -> None:
        for task in self._accepting | self._handshakes:
            task.cancel()
        for socks in self._sockets.values():
            for sock in socks:
                sock.close()
        self._sockets.clear()
        for conn in list(self.connections):
            transport = conn.transport
            if isinstance(conn, JsonWebSocket) and transport is not None:
                conn._flush()
                transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
                transport.disconnect()
            elif transport is not None:
                transport.close()
        await asyncio.gather(*self._accepting, *self._handshakes, return_exceptions=True)
        self._accepting.clear()
        for _ in range(100):  # let the connections say goodbye
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        self.audit.flush()  # the role closes it (a JobAgent's servers share one)


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
