"""Central reading a small file from storage itself (a JDL named to submit, an archive's
central directory) or writing one (an XML collection), with its own envelopes, from any
protocol an SE speaks: HTTPS through aiohttp, XRootD (``root://``) through the XRootD client
library in process (jalien.storage.xrd)."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import aiohttp

from jalien.storage import xrd
from jalien.storage.envelope import is_xrootd


class FetchError(Exception):
    """No replica could be read; the message lists why, per SE."""


async def fetch_small(
    replicas: Iterable[tuple[str, str, str]], ca_dir: str = "", limit: int = 1 << 20
) -> bytes:
    """*replicas* are (url, envelope, SE name), closest first; at most *limit* bytes."""
    errors: list[str] = []
    http: aiohttp.ClientSession | None = None
    try:
        for url, envelope, se in replicas:
            if is_xrootd(url):
                try:
                    data = await xrd.read_range(xrd.transfer_url(url, envelope), 0, limit + 1, 30)
                except xrd.XrdError as exc:
                    errors.append(f"{se}: {exc}")
                    continue
            else:
                if http is None:
                    http = _session(ca_dir, 30)
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
    finally:
        if http is not None:
            await http.close()
    raise FetchError("; ".join(errors) or "no replica")


def _session(ca_dir: str, total: float) -> aiohttp.ClientSession:
    context = ssl.create_default_context(capath=ca_dir or None)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=total)
    )


async def put_small(url: str, envelope: str, data: bytes, ca_dir: str = "") -> None:
    """Central writing a small file (an XML collection) to one SE with its write envelope
    (the SE takes exactly the booked size); FetchError naming the SE's answer if refused."""
    if is_xrootd(url):
        try:
            await xrd.write_small(xrd.transfer_url(url, envelope), data, 60)
        except xrd.XrdError as exc:
            raise FetchError(str(exc)) from None
        return
    async with _session(ca_dir, 60) as http:
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
    if is_xrootd(url):
        try:
            return await xrd.read_range(xrd.transfer_url(url, envelope), start, length, 60)
        except xrd.XrdError as exc:
            raise FetchError(str(exc)) from None
    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    async with _session(ca_dir, 60) as http:
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
