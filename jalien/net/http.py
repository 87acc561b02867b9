"""A small HTTP/1.1 server for tools on loopback (JAliEn's TextCache shape): GET and POST
with query or form parameters, keep-alive, pipelined requests answered in order.

Not a web framework and not for the open network: no TLS, no chunked bodies, bounded
headers and bodies; whoever reaches the port is trusted, so it listens on loopback unless
told otherwise. ``HttpParser`` is sans-IO (bytes in, requests out); ``HttpServer`` is the
thin asyncio shell around it. A handler returns an ``HttpResponse`` at once (answered inline,
in one write per read) or an awaitable of one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("jalien.net.http")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
_FORM = "application/x-www-form-urlencoded"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    params: dict[str, list[str]]  # query and form parameters, in order of appearance
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    keep_alive: bool = True

    def first(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


HttpHandler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


def render(response: HttpResponse, keep_alive: bool) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


class HttpParser:
    """Requests out of a byte stream; HttpError on anything malformed or too big."""

    def __init__(self, max_header: int = 16 * 1024, max_body: int = 16 * 1024 * 1024) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[HttpRequest]:
        buffer = self._buffer
        buffer += data
        requests = []
        while buffer:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self.max_header:
                    raise HttpError(431, "request header too large")
                break
            if end > self.max_header:
                raise HttpError(431, "request header too large")
            method, target, version, headers = self._head(bytes(buffer[:end]))
            if "chunked" in headers.get("transfer-encoding", ""):
                raise HttpError(501, "chunked bodies are not supported")
            length = 0
            if "content-length" in headers:
                try:
                    length = int(headers["content-length"])
                except ValueError:
                    raise HttpError(400, "bad Content-Length") from None
                if length < 0:
                    raise HttpError(400, "bad Content-Length")
                if length > self.max_body:
                    raise HttpError(413, f"body of {length} bytes is too large")
            elif method == "POST":
                raise HttpError(411, "POST needs a Content-Length")
            start = end + 4
            if len(buffer) < start + length:
                break
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            requests.append(self._request(method, target, version, headers, body))
        return requests

    @staticmethod
    def _head(raw: bytes) -> tuple[str, str, str, dict[str, str]]:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise HttpError(400, "undecodable header") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, f"bad request line {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(400, f"bad header line {line[:80]!r}")
            headers[name.lower()] = value.strip()
        return parts[0].upper(), parts[1], parts[2], headers

    @staticmethod
    def _request(
        method: str, target: str, version: str, headers: dict[str, str], body: bytes
    ) -> HttpRequest:
        split = urlsplit(target)
        params = parse_qs(split.query, keep_blank_values=True)
        if body and headers.get("content-type", "").split(";")[0].strip() == _FORM:
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise HttpError(400, "form body is not UTF-8") from None
            for name, values in form.items():
                params.setdefault(name, []).extend(values)
        connection = headers.get("connection", "").lower()
        keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
        return HttpRequest(method, split.path or "/", params, headers, body, keep_alive)


class _HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = HttpParser(server.max_header, server.max_body)
        self.transport: asyncio.Transport | None = None
        # responses waiting for their turn: (bytes, keep_alive) when done, a Task while running
        self._queue: collections.deque[Any] = collections.deque()
        self._out: list[bytes] | None = None
        self._closing = False
        self._idle: asyncio.TimerHandle | None = None
        self._active = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        for item in self._queue:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._queue.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self._active = True
        if self._closing:
            return
        try:
            requests = self.parser.feed(data)
            error = None
        except HttpError as exc:
            requests, error = [], exc
        out: list[bytes] = []  # not `self._out = out = []`: Nuitka folds `if out` to False
        self._out = out
        try:
            for request in requests:
                self._handle(request)
            if error is not None:
                body = f"{error}\n".encode()
                self._push((render(HttpResponse(error.status, body), False), False))
        finally:
            self._out = None
            if out and self.transport is not None:
                self.transport.write(b"".join(out))

    def _handle(self, request: HttpRequest) -> None:
        try:
            result = self.server.handler(request)
        except Exception:
            log.exception("HTTP handler failed on %s", request.path)
            result = HttpResponse(500, b"internal error\n")
        if isinstance(result, HttpResponse):
            self._push((render(result, request.keep_alive), request.keep_alive))
        else:
            task = asyncio.ensure_future(self._finish(result, request.keep_alive))
            task.add_done_callback(lambda _t: self._drain())
            self._push(task)

    async def _finish(self, pending: Awaitable[HttpResponse], keep_alive: bool) -> Any:
        try:
            response = await pending
        except Exception:
            log.exception("HTTP handler failed")
            response = HttpResponse(500, b"internal error\n")
        return render(response, keep_alive), keep_alive

    def _push(self, item: Any) -> None:
        self._queue.append(item)
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue and not self._closing:
            head = queue[0]
            if isinstance(head, asyncio.Task):
                if not head.done():
                    return
                if head.cancelled():
                    queue.popleft()
                    continue
                head = head.result()
            queue.popleft()
            data, keep_alive = head
            self._write(data)
            if not keep_alive:
                self._closing = True
                if self.transport is not None:
                    if self._out:
                        self.transport.write(b"".join(self._out))
                        self._out.clear()
                    self.transport.close()

    def _write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _arm_idle(self) -> None:
        if self.server.idle_timeout > 0:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.server.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        if not self._active and not self._queue and self.transport is not None:
            self.transport.close()
            return
        self._active = False
        self._arm_idle()


class HttpServer:
    def __init__(
        self,
        handler: HttpHandler,
        *,
        max_header: int = 16 * 1024,
        max_body: int = 16 * 1024 * 1024,
        idle_timeout: float = 60.0,
    ) -> None:
        self.handler = handler
        self.max_header = max_header
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.connections: set[_HttpConnection] = set()
        self._servers: list[asyncio.Server] = []

    async def start(self, hosts: list[str], port: int, *, reuse_port: bool = False) -> None:
        """Listen on every host (port 0: the first host picks, the others follow);
        *reuse_port*: SO_REUSEPORT, the port shared with the other workers of a jcentral."""
        loop = asyncio.get_running_loop()
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            server = await loop.create_server(
                lambda: _HttpConnection(self),
                host,
                port,
                family=family,
                reuse_address=True,
                reuse_port=reuse_port or None,
            )
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        log.info("HTTP listening on %s", ", ".join(f"[{h}]:{port}" for h in hosts))

    def port(self) -> int:
        return self._servers[0].sockets[0].getsockname()[1] if self._servers else 0

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
