"""An SE's listing of the files it holds, both sides: what the embedded SE serves to a
``list`` envelope, and central's reading of it from the embedded SE (HTTPS) or an XRootD SE
(``xrdfs ls -l -R``). The dark-data crawl (``datamovers/darkdata.py``) consumes it.

A listing is a stream of PFN *paths* ("/se/04/12345/<guid>", always one leading '/', as
``key_of`` spells a catalogue PFN's path), in the SE's own order (unsorted): the crawl sorts
it on disk, so that neither side holds a listing of millions of files in memory. Names
starting with '.' (the embedded SE's uploads in progress) are left out.

- Embedded SE: ``GET <SE URL path>?authz=<list envelope>``, the envelope central's (signed
  with the envelope key the SE verifies, naming the path listed), answered as text lines
  streamed while a worker thread walks the directory.
- XRootD SE: ``xrdfs ls -l -R <path>``, read line by line as it comes (Debian's xrootd
  ignores envelopes; an ALICE SE checks the ``authz`` given as for transfers); directories
  (a 'd' mode) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from jalien.storage.envelope import EnvelopeSigner, is_xrootd

# xrdfs tries an unreachable server once; a lost DNS query is retried after 1 s
XRDFS_ENV = {"XRD_CONNECTIONRETRY": "1", "XRD_CONNECTIONWINDOW": "15", "RES_OPTIONS": "timeout:1"}


def xrdfs_path() -> str:
    """``$JALIEN_XRDFS``, else xrdfs on PATH; empty when there is none."""
    return os.environ.get("JALIEN_XRDFS") or shutil.which("xrdfs") or ""


BATCH = 4096  # paths per batch handed to the caller / per write of the SE's answer


def key_of(pfn: str) -> str:
    """The listing's spelling of a PFN (a URL or a path): its path with one leading '/'
    (root://host//a/b and https://host/a/b both give /a/b)."""
    path = urlsplit(pfn).path if "://" in pfn else pfn
    return "/" + path.lstrip("/")


# -- the embedded SE's side
def _walk(top: Path, prefix: str) -> Iterator[list[str]]:
    """Batches of the PFN paths of the files below *top* (*prefix*: top's PFN path)."""
    batch: list[str] = []
    for directory, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(directory, top)
        base = prefix if rel == "." else f"{prefix}/{rel}"
        for name in files:
            if not name.startswith("."):
                batch.append(f"{base}/{name}")
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
    if batch:
        yield batch


async def listing_response(request: web.Request, local: Path) -> web.StreamResponse:
    """Streams the PFN paths of every file below *local* (the directory of request.path),
    one per line; an SE that holds nothing yet has an empty listing."""
    if local.exists() and not local.is_dir():
        return web.Response(status=400, text=f"jalien SE: {request.path} is not a directory\n")
    response = web.StreamResponse()
    response.content_type = "text/plain"
    await response.prepare(request)
    if local.is_dir():
        loop = asyncio.get_running_loop()
        batches = _walk(local, "/" + request.path.strip("/"))
        while (batch := await loop.run_in_executor(None, next, batches, None)) is not None:
            await response.write(("\n".join(batch) + "\n").encode())
    await response.write_eof()
    return response


# -- central's side
class ListingError(Exception):
    """The SE could not be listed (unreachable, refused, no xrdfs)."""


class SeLister:
    """Reads SEs' listings with central's envelopes."""

    def __init__(self, signer: EnvelopeSigner, ca_dir: str = "") -> None:
        self.signer = signer
        self.ca_dir = ca_dir

    async def listing(self, se: str, url: str) -> AsyncIterator[list[str]]:
        """Batches of the PFN paths (``key_of``'s spelling) of every file of SE *se* at
        *url* (its registered URL); ListingError when it cannot be listed."""
        if is_xrootd(url):
            async for batch in self._xrootd(url):
                yield batch
        else:
            async for batch in self._https(se, url):
                yield batch

    async def _https(self, se: str, url: str) -> AsyncIterator[list[str]]:
        path = key_of(url).rstrip("/") or "/"
        envelope = self.signer.list_envelope(se, path)
        context = ssl.create_default_context(capath=self.ca_dir or None)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context), timeout=timeout
                ) as http,
                http.get(f"{url.rstrip('/')}?authz={envelope}") as resp,
            ):
                if resp.status != 200:
                    text = (await resp.content.read(1024)).decode(errors="replace").strip()
                    raise ListingError(f"{se} answered HTTP {resp.status}: {text[:200]}")
                batch: list[str] = []
                async for line in resp.content:
                    name = line.decode(errors="surrogateescape").rstrip("\n")
                    if name:
                        batch.append(key_of(name))
                        if len(batch) >= BATCH:
                            yield batch
                            batch = []
                if batch:
                    yield batch
        except (aiohttp.ClientError, OSError) as exc:
            raise ListingError(f"cannot list {se}: {exc}") from None

    async def _xrootd(self, url: str) -> AsyncIterator[list[str]]:
        binary = xrdfs_path()
        if not binary:
            raise ListingError("xrdfs not found (install xrootd-client or set JALIEN_XRDFS)")
        parts = urlsplit(url)
        server, top = f"{parts.scheme}://{parts.netloc}", key_of(url)
        try:
            proc = await asyncio.create_subprocess_exec(
                binary, server, "ls", "-l", "-R", top, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **XRDFS_ENV}, limit=1 << 20,
            )  # fmt: skip
        except OSError as exc:
            raise ListingError(f"cannot run xrdfs ({binary}): {exc.strerror or exc}") from None
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        try:
            batch: list[str] = []
            async for line in proc.stdout:
                # "-rw-r--r-- owner group size date time path" (path relative or absolute)
                fields = line.decode(errors="surrogateescape").rstrip("\n").split(None, 6)
                if len(fields) < 7 or fields[0].startswith("d"):
                    continue
                name = fields[6]
                if not name.startswith("/"):
                    name = f"{top.rstrip('/')}/{name}"
                if name.rsplit("/", 1)[-1].startswith("."):
                    continue
                batch.append(key_of(name))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
            await proc.wait()
            err = (await errors).decode(errors="replace").replace("\x00", "").strip()
            if proc.returncode != 0 and "[3011]" not in err:  # 3011: nothing there yet
                raise ListingError(f"xrdfs ls {server}{top}: {err or proc.returncode}")
            if batch:
                yield batch
        finally:
            errors.cancel()
            if proc.returncode is None:  # cancelled: no process is left behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
