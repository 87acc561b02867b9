"""JAliEn's TextCache HTTP shape over a CacheStore, for the tools that use it today.

    GET|POST /TextCache?ns=N&key=K               the value and a newline, "ERR: null" or
                                                 "ERR: expired"
    GET|POST /TextCache?ns=N&key=K&value=V[&timeout=S][&ifnull=true]
                                                 set (timeout in seconds, default the
                                                 namespace's; ifnull: only if absent)
    GET|POST /TextCache?ns=N&key=K[&key=K2]&clear=true
                                                 remove keys, or regular expressions
                                                 matching whole keys: "OK: removed ..."
    GET /TextCache?clean[&ns=N]                  empty N (default: every namespace)
    GET /TextCache                               one line per namespace: size, hits
    GET /TextCache?ns=N[&values=1]               the keys of N (and their values)

``/cache`` is the same. ``ns`` defaults to ``default``. Answers are text/plain, status 200
(errors are "ERR: ..." lines, as JAliEn's servlet writes them). Service namespaces
(``Policy.private``: the catalogue's answers, accounts) are not reachable here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

from jalien.cache.store import CacheError, CacheStore, check_namespace
from jalien.net.http import HttpRequest, HttpResponse

PATHS = frozenset({"/TextCache", "/cache", "/TextCache/", "/cache/"})
_REGEX_HINT = re.compile(r"\.[+*]|[()|]")  # what makes JAliEn treat a key as a pattern
_TRUE = frozenset({"true", "1", "yes", "on"})


def _text(body: str) -> HttpResponse:
    return HttpResponse(200, body.encode("utf-8", "surrogateescape"))


class TextCache:
    """The HTTP handler (``jalien.net.http.HttpServer(TextCache(store))``)."""

    def __init__(self, store: CacheStore, *, listing_limit: int = 100_000) -> None:
        self.store = store
        self.listing_limit = listing_limit

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if request.path not in PATHS:
            return HttpResponse(404, b"not found\n")
        if request.method not in ("GET", "POST"):
            return HttpResponse(405, b"GET or POST\n")
        try:
            return self._serve(request)
        except CacheError as exc:
            return _text(f"ERR: {exc}\n")

    def _namespace(self, request: HttpRequest) -> str:
        ns = request.first("ns") or "default"
        check_namespace(ns)
        if self.store.policy(ns).private:
            raise CacheError(f"namespace {ns} is private")
        return ns

    def _serve(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        key = request.first("key", "") or ""
        if not key:
            if "clean" in request.params:
                ns = request.first("ns") or "default"
                return self._clean(None if ns == "default" else self._namespace(request))
            if not request.first("ns"):
                return self._summary()
            return self._listing(self._namespace(request), bool(request.first("values")))
        ns = self._namespace(request)
        value = request.first("value")
        if value is not None:
            return self._set(request, ns, key, value)
        if (request.first("clear") or "").lower() in _TRUE:
            return self._clear(ns, request.params.get("key", []))
        status, found = self.store.lookup(ns, key.encode("utf-8", "surrogateescape"))
        if found is not None:
            return HttpResponse(200, found + b"\n")
        return _text("ERR: expired\n" if status == "expired" else "ERR: null\n")

    def _set(self, request: HttpRequest, ns: str, key: str, value: str) -> HttpResponse:
        raw_key = key.encode("utf-8", "surrogateescape")
        ttl: float | None = None
        timeout = request.first("timeout")
        if timeout:
            try:
                ttl = float(int(timeout))
            except ValueError:
                ttl = None  # JAliEn falls back to the default on a bad number
        if ttl is not None and ttl <= 0:  # expires at once: JAliEn keeps it dead, we drop it
            self.store.delete(ns, raw_key)
            return _text("")
        if_absent = (request.first("ifnull") or "").lower() in _TRUE
        self.store.set(
            ns, raw_key, value.encode("utf-8", "surrogateescape"), ttl, if_absent=if_absent
        )
        return _text("")

    async def _clear(self, ns: str, keys: list[str]) -> HttpResponse:
        try:
            return await self._remove(ns, keys)
        except CacheError as exc:
            return _text(f"ERR: {exc}\n")

    async def _remove(self, ns: str, keys: list[str]) -> HttpResponse:
        removed = 0
        for key in keys:
            if not _REGEX_HINT.search(key):
                raw = key.encode("utf-8", "surrogateescape")
                if self.store.lookup(ns, raw)[1] is not None:
                    removed += 1
                self.store.delete(ns, raw)
                continue
            try:
                pattern = re.compile(key.encode("utf-8", "surrogateescape"))
            except re.error as exc:
                return _text(f"ERR: invalid pattern syntax: {key} : {exc}\n")
            removed += await asyncio.wrap_future(self.store.remove_matching(ns, pattern))
        return _text(f"OK: removed {removed} values from ns '{ns}' matching [{', '.join(keys)}]\n")

    async def _clean(self, ns: str | None) -> HttpResponse:
        await asyncio.wrap_future(self.store.clear(ns))
        return _text("")

    def _summary(self) -> HttpResponse:
        lines = []
        for ns in self.store.stats():
            if ns.policy.private:
                continue
            if not ns.entries:
                lines.append(f"{ns.name} : empty")
            else:
                lines.append(
                    f"{ns.name} : {ns.entries} keys (total: {ns.bytes} bytes) : {ns.hits} hits"
                )
        return _text("\n".join(lines) + "\n" if lines else "")

    async def _listing(self, ns: str, values: bool) -> HttpResponse:
        entries = await asyncio.to_thread(self.store.entries, ns, self.listing_limit, values)
        lines = []
        total = 0
        for key, size, _expires, value in entries:
            total += size
            line = f"{key.decode('utf-8', 'surrogateescape')} : size {size}"
            if value is not None:
                line += " : " + value.decode("utf-8", "surrogateescape")
            lines.append(line)
        if not entries:
            lines.append("\n\n----------------\n\n0 entries")
        else:
            lines.append(f"\n\n----------------\n\n{len(entries)} entries (total: {total})")
        return _text("\n".join(lines) + "\n")
