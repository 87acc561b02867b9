"""The cache service's binary-channel commands, from another process: keys and values as
bytes, one request per call (several calls in flight on a connection are pipelined).

    cache = RemoteCache(client)             # a connected jalien.net.client.Client (or Channel)
    await cache.set("jobs.tokens", b"42", token, ttl=600)
    values = await cache.get_many("jobs.tokens", [b"42", b"43"])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from jalien.wire.errors import RequestError
from jalien.wire.messages import Reply, Request


class Requester(Protocol):
    async def request(self, request: Request, timeout: float | None = None) -> Reply: ...


class RemoteCache:
    def __init__(self, client: Requester, timeout: float | None = None) -> None:
        self.client = client
        self.timeout = timeout

    async def _call(self, command: str, options: list[str], data: list[bytes]) -> Reply:
        reply = await self.client.request(
            Request(command=command, options=options, data=data), self.timeout
        )
        if reply.exitcode:
            raise RequestError(reply.error or f"{command} failed", reply.exitcode)
        return reply

    async def get(self, ns: str, key: bytes) -> bytes | None:
        return (await self._call("cache.get", [ns], [key])).data[0]

    async def get_many(self, ns: str, keys: Iterable[bytes]) -> list[bytes | None]:
        keys = list(keys)
        if not keys:
            return []
        return (await self._call("cache.get", [ns], keys)).data

    async def set(
        self,
        ns: str,
        key: bytes,
        value: bytes,
        ttl: float | None = None,
        scope: str = "",
        *,
        if_absent: bool = False,
        sync: bool = False,
    ) -> None:
        await self.set_many(ns, [(key, value)], ttl, scope, if_absent=if_absent, sync=sync)

    async def set_many(
        self,
        ns: str,
        items: Iterable[tuple[bytes, bytes]],
        ttl: float | None = None,
        scope: str = "",
        *,
        if_absent: bool = False,
        sync: bool = False,
    ) -> None:
        options = [ns]
        if ttl is not None:
            options += ["-ttl", repr(float(ttl))]
        if scope:
            options += ["-scope", scope]
        if if_absent:
            options.append("-nx")
        if sync:
            options.append("-sync")
        data: list[Any] = []
        for key, value in items:
            data += (key, value)
        await self._call("cache.set", options, data)

    async def delete(self, ns: str, *keys: bytes) -> None:
        await self._call("cache.delete", [ns], list(keys))

    async def invalidate(self, *paths: str) -> None:
        await self._call("cache.invalidate", list(paths), [])
