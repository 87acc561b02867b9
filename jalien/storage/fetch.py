"""Central reading a small file from storage itself (a JDL named to submit): the first
replica that answers, over HTTPS with its read envelope."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import aiohttp


class FetchError(Exception):
    """No replica could be read; the message lists why, per SE."""


async def fetch_small(
    replicas: Iterable[tuple[str, str, str]], ca_dir: str = "", limit: int = 1 << 20
) -> bytes:
    """*replicas* are (url, envelope, SE name), closest first; at most *limit* bytes."""
    context = ssl.create_default_context(capath=ca_dir or None)
    errors: list[str] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        for url, envelope, se in replicas:
            try:
                async with http.get(f"{url}?authz={envelope}") as resp:
                    if resp.status != 200:
                        errors.append(f"{se}: HTTP {resp.status}")
                        continue
                    data = await resp.content.read(limit + 1)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                errors.append(f"{se}: {type(exc).__name__}")
                continue
            if len(data) > limit:
                raise FetchError(f"larger than {limit} bytes")
            return data
    raise FetchError("; ".join(errors) or "no replica")


async def put_small(url: str, envelope: str, data: bytes, ca_dir: str = "") -> None:
    """Central writing a small file (an XML collection) to one SE with its write envelope
    (the SE takes exactly the booked size); FetchError naming the SE's answer if refused."""
    context = ssl.create_default_context(capath=ca_dir or None)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        try:
            async with http.put(
                f"{url}?authz={envelope}", data=data, headers={"Content-Length": str(len(data))}
            ) as resp:
                if resp.status != 201:
                    text = (await resp.text())[:200].strip()
                    raise FetchError(f"HTTP {resp.status}: {text}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise FetchError(type(exc).__name__) from None


async def fetch_range(url: str, envelope: str, start: int, length: int, ca_dir: str = "") -> bytes:
    """*length* bytes from *start* of a replica (an archive's central directory or one of
    its members), read with its read envelope; FetchError if the SE refuses."""
    context = ssl.create_default_context(capath=ca_dir or None)
    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        try:
            async with http.get(f"{url}?authz={envelope}", headers=headers) as resp:
                if resp.status != 206 and not (resp.status == 200 and start == 0):
                    raise FetchError(f"HTTP {resp.status}")
                chunks, got = [], 0
                while got < length and (block := await resp.content.read(length - got)):
                    chunks.append(block)
                    got += len(block)
                return b"".join(chunks)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise FetchError(type(exc).__name__) from None
