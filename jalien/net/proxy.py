"""The upstream proxy building block: a level (jBox, VoBox, JobAgent) that serves local
clients on either personality and forwards their requests over one upstream binary
connection, one channel (session) per client.

Request bodies from binary clients are forwarded as they arrived and replies come back
raw (still compressed, never decoded) - only the frame header is rewritten (by the
level's ``wire.channel.ServerChannel``, which also ends a stream upstream left without
its last frame). A WebSocket
client's request is encoded once and its reply decoded once to render JAliEn's JSON.
A per-level cache (``ReplyCache``) may answer repeated read-only requests locally.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from jalien.net.client import Channel, Client, ConnectionLost
from jalien.net.handler import Pusher
from jalien.net.identity import Identity
from jalien.wire import codec, framing
from jalien.wire.channel import decode_reply
from jalien.wire.errors import RequestError
from jalien.wire.messages import Event, Reply, Request

log = logging.getLogger("jalien.net.proxy")


class ReplyCache(Protocol):
    """Raw replies by (identity, request) key; implementations decide what to keep."""

    def get(self, key: bytes) -> tuple[int, bytes] | None: ...
    def put(self, key: bytes, value: tuple[int, bytes], command: str) -> None: ...


class TTLReplyCache:
    """A small in-memory LRU with a TTL per command; only the commands named are kept."""

    def __init__(self, ttl_by_command: dict[str, float], max_entries: int = 10_000) -> None:
        self.ttl_by_command = ttl_by_command
        self.max_entries = max_entries
        self._data: OrderedDict[bytes, tuple[float, tuple[int, bytes]]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: bytes) -> tuple[int, bytes] | None:
        item = self._data.get(key)
        if item is None or item[0] < time.monotonic():
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: bytes, value: tuple[int, bytes], command: str) -> None:
        ttl = self.ttl_by_command.get(command)
        if not ttl:
            return
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)


@dataclass(eq=False)
class ProxySession:
    identity: Identity
    personality: str
    push: Pusher
    channel: Channel | None = None
    metadata: dict[str, str] = field(default_factory=dict)


async def _once(item: tuple[int, bytes]) -> AsyncIterator[tuple[int, bytes]]:
    yield item


def _cache_key(session: ProxySession, request: Request, body: bytes | None) -> bytes | None:
    """Only requests whose meaning does not depend on the session's cwd are cached."""
    if any(arg and not arg.startswith(("-", "/")) for arg in request.options):
        return None
    return session.identity.dn.encode() + b"\0" + (body or codec.encode_msgpack(request))


class UpstreamProxy:
    """A net.Handler that forwards to an upstream Client (jcentral or another level)."""

    def __init__(self, upstream: Client, cache: ReplyCache | None = None) -> None:
        self.upstream = upstream
        self.cache = cache
        self.sessions: set[ProxySession] = set()
        upstream.on_event = self._event
        self._by_channel: dict[int, ProxySession] = {}

    # -- net.Handler
    def open_session(self, identity: Identity, push: Pusher, *, personality: str) -> ProxySession:
        session = ProxySession(identity, personality, push)
        session.metadata = {"user": identity.login, "currentdir": identity.home or "/"}
        self.sessions.add(session)
        return session

    def close_session(self, session: ProxySession) -> None:
        self.sessions.discard(session)
        channel = session.channel
        if channel is not None:
            self._by_channel.pop(channel.number, None)
            self.upstream.close_channel(channel)

    def describe_session(self, session: ProxySession) -> dict[str, str]:
        return session.metadata

    def dispatch(self, session: ProxySession, request: Request) -> AsyncIterator[Reply]:
        """For WebSocket clients: the upstream answer, decoded page by page."""
        return self._pages(session, request)

    def dispatch_raw(
        self, session: ProxySession, request: Request, flags: int, body: bytes
    ) -> AsyncIterator[tuple[int, bytes]] | tuple[int, bytes]:
        """For binary clients: the body goes upstream untouched and the answer's frames
        come back raw, one by one (FLAG_MORE as upstream set it)."""
        key = _cache_key(session, request, body) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)  # type: ignore[union-attr]
            if hit is not None:
                return hit
        return self._forward(session, request, flags, body, key)

    async def _channel(self, session: ProxySession) -> Channel:
        if session.channel is None:
            identity = session.identity  # its certificate, when the level's gate kept it
            session.channel = await self.upstream.open_channel(identity.dn, cert=identity.cert)
            self._by_channel[session.channel.number] = session
        return session.channel

    async def _forward(
        self, session: ProxySession, request: Request, flags: int, body: bytes, key: bytes | None
    ) -> AsyncIterator[tuple[int, bytes]]:
        channel = await self._channel(session)
        frames = 0
        async for raw in channel.forward_stream(flags, body):
            frames += 1
            if (
                key is not None
                and self.cache is not None
                and frames == 1
                and not (raw[0] & framing.FLAG_MORE)
            ):
                self.cache.put(key, raw, request.command)
            yield raw

    async def _pages(self, session: ProxySession, request: Request) -> AsyncIterator[Reply]:
        body = codec.encode_msgpack(request)
        key = _cache_key(session, request, body) if self.cache is not None else None
        hit = self.cache.get(key) if key is not None else None  # type: ignore[union-attr]
        try:
            if hit is not None:
                frames: Any = _once(hit)
            else:
                frames = self._forward(session, request, 0, body, key)
            async for flags, raw in frames:
                reply = decode_reply(flags, raw)
                if reply.metadata:
                    session.metadata = dict(reply.metadata)
                yield reply
        except ConnectionLost as exc:
            yield Reply(exitcode=exc.exitcode, error=str(exc), metadata=session.metadata)
        except (RequestError, framing.ProtocolError, codec.DecodeError) as exc:
            code = exc.exitcode if isinstance(exc, RequestError) else 1
            yield Reply(exitcode=code, error=str(exc), metadata=session.metadata)

    def _event(self, channel: int, event: Event) -> None:
        session = self._by_channel.get(channel)
        if session is not None:
            session.push(event)
        else:
            for each in list(self.sessions):  # events of the level's own channel: everyone
                each.push(event)


LocalAnswer = Callable[[ProxySession, Request], Reply | Awaitable[Reply]]


class WithLocalCommands:
    """A level's proxy with a few commands answered by the level itself (a JobAgent's
    ``spy``, a VoBox's ``vobox.status``); every other command goes upstream as it is."""

    def __init__(self, proxy: UpstreamProxy, local: dict[str, LocalAnswer]) -> None:
        self.proxy = proxy
        self.local = local

    def open_session(self, identity: Identity, push: Pusher, *, personality: str) -> ProxySession:
        return self.proxy.open_session(identity, push, personality=personality)

    def close_session(self, session: ProxySession) -> None:
        self.proxy.close_session(session)

    def describe_session(self, session: ProxySession) -> dict[str, str]:
        return self.proxy.describe_session(session)

    def dispatch(self, session: ProxySession, request: Request) -> Any:
        answer = self.local.get(request.command)
        if answer is not None:
            return answer(session, request)
        return self.proxy.dispatch(session, request)

    def dispatch_raw(self, session: ProxySession, request: Request, flags: int, body: bytes) -> Any:
        answer = self.local.get(request.command)
        if answer is not None:
            return answer(session, request)
        return self.proxy.dispatch_raw(session, request, flags, body)
