"""Client of the binary channel: one TLS connection, many requests in flight, pushed
events, reconnection with backoff. The shell, jBox, VoBox and JobAgent all use it.

    client = Client("localhost", 8098, ssl_context)
    await client.connect()
    reply = await client.call("ls", "-l", "/alice")

Channels (see jalien.wire.streams) let a proxy level run one session per downstream
client on this one connection. ``SyncClient`` wraps it all for synchronous code.

A server that refuses the credential says why before it closes (``jalien.net.refusal``):
the requests fail with ``Refused`` (exit code 13, the server's reason). When the reason is
that the credential expired, a reconnecting client connects again with fresh credentials
(``credentials``, asked at every connection); ``rotate`` moves to a new credential before
the old one ends, without failing the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from jalien.net.peers import on_this_host
from jalien.net.refusal import EXPIRED, refusal_kind
from jalien.wire import codec, framing
from jalien.wire.channel import ClientChannel, ControlReply, EventReceived, ReplyFrame, decode
from jalien.wire.errors import EXIT_NO_CONNECTION, EXIT_PERMISSION, EXIT_TIMEOUT, RequestError
from jalien.wire.messages import DirEntry, Event, Reply, Request, entries_of
from jalien.wire.streams import (
    MAX_CHANNEL,
    SequenceAllocator,
    stream_id,
)

log = logging.getLogger("jalien.net.client")
T = TypeVar("T")

EventCallback = Callable[[int, Event], None]
# makes a transport for a protocol factory, as loop.create_connection (net.spool.connector)
Connector = Callable[[Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.BaseTransport, Any]]]
RawReply = tuple[int, bytes]  # (flags, body as on the wire)


class ConnectionLost(RequestError):
    def __init__(self, message: str = "no connection to the server") -> None:
        super().__init__(message, EXIT_NO_CONNECTION)


class Refused(ConnectionLost):
    """The server refused the connection's credential and closed it, saying why: *kind*
    is ``unauthorized`` (no account, revoked) or ``expired`` (its notAfter passed)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.exitcode = EXIT_PERMISSION
        self.kind = kind


class RequestTimeout(RequestError):
    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"{command}: no answer within {timeout:g} s", EXIT_TIMEOUT)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: Client) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        # the protocol's state (frames, streams in flight, control messages): wire.channel
        self.channel = ClientChannel(owner.max_message_size, owner.compress_threshold)
        self.closed = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.refusal: Reply | None = None  # what the server said before it closed
        self.opened = asyncio.get_running_loop().time()
        self.calls = 0  # requests in flight on this connection
        self.retiring = False  # replaced by rotate(): closes when its calls are done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.owner.compress_local and on_this_host(transport):
            self.channel.compress_threshold = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(exc)
        self.owner._lost(self, exc)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        await self._can_write.wait()

    def data_received(self, data: bytes) -> None:
        channel = self.channel
        try:
            events = channel.receive(data)
        except framing.ProtocolError as exc:
            log.warning("server sent garbage: %s", exc)
            if self.transport is not None:
                self.transport.abort()
            return
        owner = self.owner
        pending = owner._pending
        for event in events:
            if type(event) is ReplyFrame:
                call = pending.get(event.stream)
                if call is not None:
                    call.add(event.flags, event.body)
            elif type(event) is EventReceived:
                if owner.on_event is not None:
                    owner.on_event(event.channel, event.event)
            else:
                owner._control_reply(event, self)  # type: ignore[arg-type]
        if channel.bad_control:
            for text in channel.bad_control:
                log.warning("%s", text)
            channel.bad_control.clear()


class _Call:
    """The frames of one request's answer as they arrive."""

    __slots__ = ("done", "frames", "protocol", "queue")

    def __init__(self, streaming: bool, protocol: _Protocol | None) -> None:
        self.protocol = protocol  # the connection it was sent on
        self.frames: list[RawReply] = []
        self.queue: asyncio.Queue[RawReply | BaseException] | None = (
            asyncio.Queue() if streaming else None
        )
        self.done: asyncio.Future[list[RawReply]] = asyncio.get_running_loop().create_future()

    def add(self, flags: int, body: bytes) -> None:
        if self.queue is not None:
            self.queue.put_nowait((flags, body))
            if not flags & framing.FLAG_MORE and not self.done.done():
                self.done.set_result([])
            return
        self.frames.append((flags, body))
        if not flags & framing.FLAG_MORE and not self.done.done():
            self.done.set_result(self.frames)

    def fail(self, exc: BaseException) -> None:
        if self.queue is not None:
            self.queue.put_nowait(exc)
        if not self.done.done():
            self.done.set_exception(exc)
            self.done.exception()  # retrieved: a streaming caller may not look at it


class Channel:
    """A session on the connection: channel 0 is the client's own; others are opened by a
    proxy for the users it serves (OpenChannel)."""

    def __init__(self, client: Client, number: int, dn: str = "", cert: bytes = b"") -> None:
        self.client = client
        self.number = number
        self.dn = dn
        self.cert = cert  # the downstream client's certificate (DER), sent again on reconnect
        self.seqs = SequenceAllocator()

    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply:
        return await self.request(Request(command=command, options=list(options)), timeout)

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        """The whole answer; a streamed one is merged (results and entries concatenated,
        exit code, error and metadata from its last frame)."""
        body = codec.encode_msgpack(request)
        frames = await self.client._exchange(self, body, 0, request.command, timeout)
        return merge_replies([decode_reply(flags, raw) for flags, raw in frames])

    async def stream(self, request: Request, timeout: float | None = None) -> AsyncIterator[Reply]:
        """The answer page by page, as the server sends it (ls of a huge directory)."""
        body = codec.encode_msgpack(request)
        async for flags, raw in self.client._exchange_stream(
            self, body, 0, request.command, timeout
        ):
            yield decode_reply(flags, raw)

    async def forward(
        self, flags: int, body: bytes, timeout: float | None = None
    ) -> list[RawReply]:
        """Send a request body as it came from downstream; the reply frames come back raw."""
        return await self.client._exchange(self, body, flags, "request", timeout)

    def forward_stream(
        self, flags: int, body: bytes, timeout: float | None = None
    ) -> AsyncIterator[RawReply]:
        """Like forward(), handing on each raw frame as soon as it arrives."""
        return self.client._exchange_stream(self, body, flags, "request", timeout)

    def close(self) -> None:
        self.client.close_channel(self)


def merge_replies(pages: list[Reply]) -> Reply:
    if len(pages) == 1:
        return pages[0]
    last = pages[-1]
    merged = Reply(exitcode=last.exitcode, error=last.error, metadata=last.metadata, view=last.view)
    entries: list[DirEntry] = []
    for page in pages:
        merged.results.extend(page.results)
        entries.extend(entries_of(page))
    merged.entries = entries
    return merged


def decode_reply(flags: int, raw: bytes) -> Reply:
    """A reply frame's body (``wire.channel.decode``: by its flags); RequestError when the
    server answered with something else."""
    message = decode(flags, raw)
    if type(message) is not Reply:
        raise RequestError(f"server answered with {type(message).__name__}, not a reply")
    return message


class Client:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 120.0,
        connect_wait: float | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 10.0),
        on_event: EventCallback | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        max_message_size: int = framing.DEFAULT_MAX_FRAME,
        compress_threshold: int = framing.DEFAULT_COMPRESS_THRESHOLD,
        compress_local: bool = False,
        credentials: Callable[[], ssl.SSLContext] | None = None,
        connector: Connector | None = None,
        alternates: Sequence[tuple[str, int]] = (),
    ) -> None:
        # several endpoints of the same service, as behind a DNS alias (host, port first,
        # then *alternates*): a client starts at a random one, a (re)connection tries the
        # current one and then the others in order, a lost connection moves to the next
        self.endpoints: list[tuple[str, int]] = list(dict.fromkeys([(host, port), *alternates]))
        if len(self.endpoints) > 1:
            host, port = random.choice(self.endpoints)
        self.host = host
        # another transport than TCP+TLS (the filesystem spool, net.spool): it makes the
        # transport for the protocol factory it is given, as loop.create_connection does
        self.connector = connector
        self.port = port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        # how long a request waits for a (re)connection before failing with ConnectionLost
        # (None: its whole timeout); a proxy level keeps it short so that its clients hear
        # at once that the server is down while it reconnects in the background
        self.connect_wait = connect_wait
        self.reconnect = reconnect
        self.backoff = backoff
        self.on_event = on_event
        self.on_reconnect = on_reconnect
        self.max_message_size = max_message_size
        self.compress_threshold = compress_threshold
        # requests to a server on this host compressed too (net.peers: off, a copy is cheap)
        self.compress_local = compress_local
        # fresh credentials for each (re)connection, e.g. a token file that is renewed
        self.credentials = credentials
        self.channels: dict[int, Channel] = {}
        self.main = Channel(self, 0)
        self.channels[0] = self.main
        self._protocol: _Protocol | None = None
        self._pending: dict[int, _Call] = {}
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnector: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._retiring: set[_Protocol] = set()
        self.last_error: str = ""
        # the server's last refusal (jalien.net.refusal), until the next connection
        self.refusal: Reply | None = None
        self._refusals = 0  # connections refused in a row: the reconnection backs off

    # -- connection management
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def refused(self) -> str:
        """The kind of the server's last refusal ("expired", "unauthorized"), or ""."""
        return refusal_kind(self.refusal) if self.refusal is not None else ""

    def _refused_error(self) -> Refused:
        assert self.refusal is not None
        return Refused(self.refusal.error, self.refused)

    async def connect(self) -> None:
        """Connect once; raises ConnectionLost with the reason when it fails."""
        async with self._connect_lock:
            if self.connected:
                return
            self._fresh_context()
            self._protocol = await self._open()
            self.refusal = None
            self._connected.set()
            self._open_channels()

    def _fresh_context(self) -> None:
        if self.credentials is None:
            return
        try:
            self.ssl_context = self.credentials()
        except Exception as exc:  # a credential file being rewritten, unreadable, ...
            self.last_error = f"no usable credentials: {exc}"
            raise ConnectionLost(self.last_error) from None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self.connector is not None:
            try:
                _, made = await asyncio.wait_for(
                    self.connector(lambda: _Protocol(self)), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                self.last_error = _describe(exc)
                raise ConnectionLost(f"cannot connect to {self.host}: {self.last_error}") from None
            return made  # type: ignore[no-any-return]
        start = self._endpoint_index()
        errors = []
        for k in range(len(self.endpoints)):
            host, port = self.endpoints[(start + k) % len(self.endpoints)]
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Protocol(self),
                        host,
                        port,
                        ssl=self.ssl_context,
                        server_hostname=(self.server_hostname or host)
                        if self.ssl_context
                        else None,
                    ),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                self.last_error = _describe(exc)
                errors.append(f"{host}:{port}: {self.last_error}")
                continue
            if (host, port) != (self.host, self.port):
                log.info("connected to %s:%d (was %s:%d)", host, port, self.host, self.port)
                self.host, self.port = host, port
            return protocol
        raise ConnectionLost(f"cannot connect to {'; '.join(errors)}")

    def _endpoint_index(self) -> int:
        try:
            return self.endpoints.index((self.host, self.port))
        except ValueError:
            return 0

    def _next_endpoint(self) -> None:
        """The current endpoint failed: the next (re)connection tries the next one first."""
        if len(self.endpoints) > 1:
            i = (self._endpoint_index() + 1) % len(self.endpoints)
            self.host, self.port = self.endpoints[i]

    def _open_channels(self) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return
        for channel in self.channels.values():
            if channel.number:
                protocol.transport.write(
                    protocol.channel.open_channel(channel.number, channel.dn, channel.cert)
                )

    async def rotate(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Move to a new credential (*ssl_context*, else ``credentials``) before the old one
        ends, make before break: a new connection takes the next requests (its channels
        opened again), the old one answers those in flight, then closes. ConnectionLost
        when the new connection fails (the old one goes on then)."""
        async with self._connect_lock:
            if ssl_context is not None:
                self.ssl_context = ssl_context
            else:
                self._fresh_context()
            old = self._protocol
            if old is None:
                return  # the next (re)connection uses it
            self._protocol = await self._open()
            self.refusal = None
            self._connected.set()
            self._open_channels()
        old.retiring = True
        self._retiring.add(old)
        if old.calls == 0 and old.transport is not None:
            old.transport.close()

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        refusal = protocol.refusal
        if protocol is not self._protocol:  # a retired connection: what was still on it
            self._retiring.discard(protocol)
            for call in self._pending.values():
                if call.protocol is protocol:
                    call.fail(ConnectionLost(f"connection lost: {_describe(exc) or 'closed'}"))
            return
        self._protocol = None
        self._connected.clear()
        loop = asyncio.get_running_loop()
        if refusal is not None:
            self.refusal = refusal
            self.last_error = refusal.error or "refused by the server"
            quick = loop.time() - protocol.opened < 5.0
            self._refusals = self._refusals + 1 if quick else 1
            log.warning("%s:%d: %s", self.host, self.port, self.last_error)
        else:
            self._refusals = 0
            self.last_error = _describe(exc) if exc else "connection closed by the server"
            self._next_endpoint()
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if refusal is not None:
                call.fail(self._refused_error())
            else:
                call.fail(ConnectionLost(f"connection lost: {self.last_error}"))
        for channel in self.channels.values():
            channel.seqs = SequenceAllocator()
        if self.reconnect and not self._closing and self._reconnector is None:
            self._reconnector = loop.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay, limit = self.backoff
        if self._refusals > 1:  # refused again at once: do not knock in a tight loop
            delay = min(delay * 2 ** (self._refusals - 1), limit)
        try:
            while not self._closing and not self.connected:
                await asyncio.sleep(delay * (0.5 + random.random()))
                try:
                    await self.connect()
                except ConnectionLost as exc:
                    log.info("reconnect to %s:%d failed: %s", self.host, self.port, exc)
                    delay = min(delay * 2, limit)
                    continue
                log.info("reconnected to %s:%d", self.host, self.port)
                if self.on_reconnect is not None:
                    self.on_reconnect()
        finally:
            self._reconnector = None

    async def wait_connected(self, timeout: float) -> None:
        if self.connected:
            return
        # refused: the same credential would be refused again (a fresh one from
        # `credentials` may do better when it was only expired)
        if (
            self.refusal is not None
            and not self.reconnect
            and (self.refused != EXPIRED or self.credentials is None)
        ):
            raise self._refused_error()
        if self._reconnector is None and not self._closing:
            try:
                await self.connect()
                return
            except ConnectionLost:
                if not self.reconnect:
                    raise
                self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise ConnectionLost(
                f"no connection to {self.host}:{self.port}: {self.last_error or 'timed out'}"
            ) from None

    async def close(self) -> None:
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        for old in list(self._retiring):
            if old.transport is not None:
                old.transport.close()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(protocol.closed), 5)

    # -- channels
    async def open_channel(
        self, dn: str = "", timeout: float | None = None, *, cert: bytes = b""
    ) -> Channel:
        """A new session acting for *dn*, or for the holder of *cert* (DER: a level forwards
        its client's certificate, see OpenChannel); re-opened after every reconnection."""
        number = next((n for n in range(1, MAX_CHANNEL + 1) if n not in self.channels), None)
        if number is None:
            raise RequestError("all channels of the connection are in use")
        channel = Channel(self, number, dn, cert)
        self.channels[number] = channel
        protocol = self._protocol
        if self.connected and protocol is not None and protocol.transport is not None:
            protocol.transport.write(protocol.channel.open_channel(number, dn, cert))
        return channel

    def close_channel(self, channel: Channel) -> None:
        protocol = self._protocol
        known = self.channels.pop(channel.number, None) is not None
        if known and protocol is not None and protocol.transport is not None:
            protocol.transport.write(protocol.channel.close_channel(channel.number))

    # -- requests
    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply:
        return await self.main.call(command, *options, timeout=timeout)

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        return await self.main.request(request, timeout)

    def _send(self, sid: int, body: bytes, flags: int) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise ConnectionLost(f"not connected: {self.last_error}")
        protocol.transport.write(protocol.channel.request(sid, body, flags))

    async def _start(
        self, channel: Channel, body: bytes, flags: int, timeout: float, streaming: bool
    ) -> tuple[int, int, _Call]:
        wait = timeout if self.connect_wait is None else min(timeout, self.connect_wait)
        await self.wait_connected(wait)
        protocol = self._protocol
        if protocol is not None:
            await protocol.drain()
        seq = channel.seqs.allocate()
        sid = stream_id(channel.number, seq)
        call = _Call(streaming, self._protocol)
        self._pending[sid] = call
        try:
            self._send(sid, body, flags)
        except BaseException:
            self._pending.pop(sid, None)
            channel.seqs.release(seq)
            raise
        if call.protocol is not None:
            call.protocol.calls += 1
        return sid, seq, call

    def _done(self, sid: int, seq: int, channel: Channel, call: _Call) -> None:
        self._pending.pop(sid, None)
        channel.seqs.release(seq)
        protocol = call.protocol
        if protocol is None:
            return
        call.protocol = None
        protocol.calls -= 1
        if protocol.retiring and protocol.calls == 0 and protocol.transport is not None:
            protocol.transport.close()  # rotated away from, and nothing left on it

    async def _exchange(
        self, channel: Channel, body: bytes, flags: int, what: str, timeout: float | None
    ) -> list[RawReply]:
        timeout = self.request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sid, seq, call = await self._start(channel, body, flags, timeout, False)
        try:
            return await asyncio.wait_for(call.done, max(0.0, deadline - loop.time()))
        except TimeoutError:
            self._cancel(sid, call)
            raise RequestTimeout(what, timeout) from None
        except asyncio.CancelledError:
            self._cancel(sid, call)
            raise
        finally:
            self._done(sid, seq, channel, call)

    async def _exchange_stream(
        self, channel: Channel, body: bytes, flags: int, what: str, timeout: float | None
    ) -> AsyncIterator[RawReply]:
        """Frames as they come; *timeout* bounds the wait for each one."""
        timeout = self.request_timeout if timeout is None else timeout
        sid, seq, call = await self._start(channel, body, flags, timeout, True)
        assert call.queue is not None
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(call.queue.get(), timeout)
                except TimeoutError:
                    raise RequestTimeout(what, timeout) from None
                if isinstance(item, BaseException):
                    raise item
                yield item
                if not item[0] & framing.FLAG_MORE:
                    finished = True
                    return
        finally:
            if not finished:
                self._cancel(sid, call)
            self._done(sid, seq, channel, call)

    def _cancel(self, sid: int, call: _Call) -> None:
        protocol = call.protocol  # the connection the request went on
        transport = protocol.transport if protocol is not None else None
        if protocol is not None and transport is not None and not transport.is_closing():
            transport.write(protocol.channel.cancel(sid))

    def _control_reply(self, event: ControlReply, protocol: _Protocol) -> None:
        """A reply on a channel's sequence 0: OpenChannel's answer (a refusal is logged),
        or on channel 0 the server's refusal of the credential before it closes."""
        message = event.reply
        if not message.exitcode:
            return
        if event.channel == 0 and refusal_kind(message):
            protocol.refusal = message  # the connection ends: _lost says why
        else:
            log.warning("channel %d: %s", event.channel, message.error)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class SyncClient:
    """The Client for synchronous code: its own event loop in a daemon thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="jalien-client"
        )
        self._thread.start()
        self._client: Client = self._run(self._make(args, kwargs))

    async def _make(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Client:
        return Client(*args, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:  # Ctrl-C: cancel the request (the server gets Cancel)
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result(2)
            raise

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def last_error(self) -> str:
        return self._client.last_error

    def connect(self) -> None:
        self._run(self._client.connect())

    def call(self, command: str, *options: str, timeout: float | None = None) -> Reply:
        return self._run(self._client.call(command, *options, timeout=timeout))

    def close(self) -> None:
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
