"""The monitoring web page of jcentral (docs/monitoring.md): HTTPS with the browser's grid
certificate (the same TLS context and accounts as the binary and WebSocket ports: a
certificate without an account gets 401), on ``monitor_web_port``.

    GET /monitor               the page (HTML; its script and style are served here too:
                               no external CDN)
    GET /monitor/app.js        the page's script: tables, counters, SVG plots
    GET /monitor/state.json    the state the page shows, as the caller may see it
    GET /monitor/events        server-sent events: that state every ``interval`` seconds
    GET /metrics               the Prometheus exposition (admins only)

What a caller sees is decided by the role's ``state`` function: admins everything, users
their own jobs (sites and SEs are shown to everyone). picows answers only WebSocket
upgrades (its other answers must be errors), so the page has a port of its own, served by
aiohttp as the embedded SE is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jalien.auth import policy
from jalien.auth.errors import AuthError
from jalien.monitor import assets
from jalien.net.identity import Identity

log = logging.getLogger("jalien.monitor.page")

StateFn = Callable[[Identity], Awaitable[dict[str, Any]]]
MetricsFn = Callable[[], Awaitable[bytes]]
MAX_STREAMS = 200  # event streams open at once


class MonitorPage:
    def __init__(
        self,
        authenticate: Callable[[Any], Identity],
        state: StateFn,
        *,
        metrics: MetricsFn | None = None,
        interval: float = 1.0,
    ) -> None:
        self.authenticate = authenticate
        self.state = state
        self.metrics = metrics
        self.interval = interval
        self.streams = 0
        self.runner: web.AppRunner | None = None
        self._assets = {  # Python strings: nothing to find on disk (the Nuitka binary)
            "/monitor": (assets.INDEX.encode(), "text/html"),
            "/monitor/app.js": (assets.APP_JS.encode(), "application/javascript"),
            "/monitor/style.css": (assets.STYLE.encode(), "text/css"),
        }
        app = web.Application()
        app.router.add_get("/", self.home)
        app.router.add_get("/monitor", self.asset)
        app.router.add_get("/monitor/app.js", self.asset)
        app.router.add_get("/monitor/style.css", self.asset)
        app.router.add_get("/monitor/state.json", self.state_json)
        app.router.add_get("/monitor/events", self.events)
        app.router.add_get("/metrics", self.prometheus)
        self.app = app

    async def start(
        self, hosts: list[str], port: int, context: ssl.SSLContext, *, reuse_port: bool = False
    ) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        bound = port
        for host in hosts:
            site = web.TCPSite(
                self.runner,
                host,
                bound,
                ssl_context=context,
                reuse_address=True,
                reuse_port=reuse_port or None,
            )
            await site.start()
            if not bound:
                bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("monitoring page on https://%s:%d/monitor", hosts[0], bound)
        return bound

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _who(self, request: web.Request) -> Identity:
        try:
            return self.authenticate(request.transport.get_extra_info("ssl_object"))  # type: ignore[union-attr]
        except AuthError as exc:
            raise web.HTTPUnauthorized(text=f"{exc}\n") from None

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/monitor")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        self._who(request)
        body, kind = self._assets[request.path]
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})

    async def state_json(self, request: web.Request) -> web.StreamResponse:
        state = await self.state(self._who(request))
        return web.Response(text=json.dumps(state), content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``state`` event every interval while the page is open."""
        identity = self._who(request)
        if self.streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text="too many open monitoring pages\n")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        self.streams += 1
        try:
            while True:
                state = await self.state(identity)
                await response.write(f"event: state\ndata: {json.dumps(state)}\n\n".encode())
                await asyncio.sleep(self.interval)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams -= 1
        return response

    async def prometheus(self, request: web.Request) -> web.StreamResponse:
        identity = self._who(request)
        if not policy.is_admin(identity) or self.metrics is None:
            raise web.HTTPForbidden(text="the metrics are for admins\n")
        body = await self.metrics()
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )
