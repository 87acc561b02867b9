"""The embedded storage element: a local directory served over HTTPS, every request
checked against its envelope (``?authz=<envelope>``: signature, expiry, PFN, access type).

- ``GET``/``HEAD`` need a read envelope (``HEAD`` also takes a write one: a client's last
  look at what it uploaded); byte ranges (``Range: bytes=N-``) let a download resume.
- ``PUT`` needs a write envelope, which books the file's size: a stated length other than
  the booked size is refused before a byte is read (413 when larger, 422 when smaller; a
  client sending ``Expect: 100-continue`` gets the refusal instead of "100 Continue"), and
  a chunked body is cut at the first byte beyond it (413). The body streams to a temporary
  name while its md5 is computed (on a worker thread); size and md5 are checked against the
  envelope, the md5 is recorded with the file (extended attribute ``user.jalien.md5``), and
  only then is the file linked under its final name (write-once: an existing file is kept).
  A refused upload leaves nothing, temporary name included; the rest of a refused body is
  read and dropped by aiohttp for at most 10 s so that the client reads the answer.
- ``GET`` with a ``stat`` envelope (central's, never a client's) answers the SE's own record
  as JSON, ``{"size": N, "md5": "..."}`` (``replica_check.StoredReplica``): what ``commit``
  checks before it registers a replica. A file without a recorded md5 (stored before
  records, or on a filesystem without user extended attributes) is hashed then.
- ``DELETE`` needs a delete envelope.
- ``GET`` with a ``list`` envelope (central's) on a directory streams the PFN paths of every
  file below it, one per line, unsorted (``se_listing.py``): the SE side of the dark-data
  crawl.

Refusals are plain text ``jalien SE: <reason>`` with 401 (no or malformed envelope), 403
(forged, expired, out of scope, a write booking no size), 404, 409 (exists), 413 (more than
booked) or 422 (fewer bytes than booked, or another md5).

aiohttp is the HTTP engine: it streams request and response bodies, parses ranges and is
well kept (C parser with a pure-Python twin, as our own _fast modules).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import ssl
from pathlib import Path

from aiohttp import web

from jalien.storage.envelope import (
    LIST,
    READ,
    STAT,
    WRITE,
    EnvelopeError,
    EnvelopeVerifier,
    Grant,
)
from jalien.storage.replica_check import encode_stored
from jalien.storage.se_access import CHUNK, grant_for, local_path, record_md5, stored_replica
from jalien.storage.se_listing import listing_response

log = logging.getLogger("jalien.se")


def _fail(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=f"jalien SE: {reason}\n")


class _TooLarge(ValueError):
    """More bytes than the envelope books (413)."""


class _Upload:
    """A temporary file and its running md5, written on a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "xb")  # noqa: SIM115 - closed in finish/abort
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.md5.update(data)
        self.size += len(data)

    def finish(self) -> str:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return self.md5.hexdigest()

    def record(self, md5: str) -> None:
        if not record_md5(self.path, md5):
            log.warning("cannot record md5s on %s: commit will hash the file", self.path.parent)

    def abort(self) -> None:
        self.fh.close()
        self.path.unlink(missing_ok=True)


class StorageServer:
    def __init__(self, root: Path, verifier: EnvelopeVerifier, max_rate: int = 0) -> None:
        self.root = Path(root).resolve()
        self.verifier = verifier
        self.max_rate = max_rate  # bytes/s per download, 0: unlimited
        self.runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=0)
        self.app.router.add_route("GET", "/{path:.*}", self.get)
        self.app.router.add_route("HEAD", "/{path:.*}", self.get)
        self.app.router.add_route("PUT", "/{path:.*}", self.put, expect_handler=self.expect)
        self.app.router.add_route("DELETE", "/{path:.*}", self.delete)

    # -- serving
    async def start(
        self,
        hosts: list[str],
        port: int,
        context: ssl.SSLContext | None,
        *,
        reuse_port: bool = False,
    ) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
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
        return bound

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # -- checks
    def _local(self, request: web.Request) -> Path:
        return local_path(self.root, request.path)  # refuses our .<name>.part names too

    def _grant(self, request: web.Request, access: tuple[str, ...]) -> Grant:
        return grant_for(self.verifier, request.query.get("authz", ""), request.path, access)

    # -- handlers
    async def get(self, request: web.Request) -> web.StreamResponse:
        allowed = (READ, WRITE) if request.method == "HEAD" else (READ, STAT, LIST)
        try:
            grant = self._grant(request, allowed)
            local = self._local(request)
        except EnvelopeError as exc:
            log.info("refused %s %s: %s", request.method, request.path, exc)
            return _fail(exc.status, str(exc))
        if grant.access == LIST:  # central's listing of the files below (dark data)
            return await listing_response(request, local)
        if not local.is_file():
            return _fail(404, f"no such file {request.path}")
        if grant.access == STAT:
            loop = asyncio.get_running_loop()
            try:
                stored = await loop.run_in_executor(None, stored_replica, local)
            except FileNotFoundError:
                return _fail(404, f"no such file {request.path}")
            return web.Response(body=encode_stored(stored), content_type="application/json")
        if request.http_range.start:
            log.info("resuming %s at byte %d", request.path, request.http_range.start)
        if not self.max_rate:
            return web.FileResponse(local, chunk_size=CHUNK)
        return await self._throttled(request, local)

    async def _throttled(self, request: web.Request, local: Path) -> web.StreamResponse:
        size = local.stat().st_size
        start = request.http_range.start or 0
        stop = request.http_range.stop or size
        if start < 0 or start > size:
            return _fail(416, f"range starts beyond the end ({size} bytes)")
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = stop - start
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        response.headers["Accept-Ranges"] = "bytes"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        step = max(self.max_rate // 20, 4096)
        loop = asyncio.get_running_loop()
        with open(local, "rb") as fh:
            fh.seek(start)
            left = stop - start
            while left > 0:
                data = await loop.run_in_executor(None, fh.read, min(step, left))
                if not data:
                    break
                await response.write(data)
                left -= len(data)
                await asyncio.sleep(len(data) / self.max_rate)
        await response.write_eof()
        return response

    def _admit(self, request: web.Request) -> tuple[Grant, Path] | web.Response:
        """What a PUT can be told before its body is read: the grant and the local path, or
        the refusal."""
        try:
            grant = self._grant(request, (WRITE,))
            local = self._local(request)
            if grant.size < 0:
                raise EnvelopeError("the envelope books no size: ask central for a new one")
        except EnvelopeError as exc:
            log.info("refused PUT %s: %s", request.path, exc)
            return _fail(exc.status, str(exc))
        if local.exists():
            return _fail(409, f"{request.path} exists (write-once)")
        length = request.content_length
        if length is not None and length != grant.size:
            log.info("refused PUT %s: %s bytes, %d booked", request.path, length, grant.size)
            return _fail(
                413 if length > grant.size else 422,
                f"the envelope books {grant.size} bytes, not {length}",
            )
        return grant, local

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: a PUT to refuse is refused before its body is sent."""
        admitted = self._admit(request)
        if isinstance(admitted, web.Response):
            admitted.force_close()
            return admitted
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers['Expect']}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None

    async def put(self, request: web.Request) -> web.Response:
        admitted = self._admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        grant, local = admitted
        local.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        upload = _Upload(local.with_name(f".{local.name}.{secrets.token_hex(4)}.part"))
        try:
            pending = bytearray()
            async for data in request.content.iter_chunked(CHUNK):
                pending += data
                if len(pending) >= CHUNK:
                    await loop.run_in_executor(None, upload.write, bytes(pending))
                    pending.clear()
                if upload.size + len(pending) > grant.size:  # stop reading: not one more
                    raise _TooLarge(f"more than the {grant.size} bytes the envelope books")
            if pending:
                await loop.run_in_executor(None, upload.write, bytes(pending))
            md5 = await loop.run_in_executor(None, upload.finish)
            if upload.size != grant.size:
                raise ValueError(f"got {upload.size} bytes, the envelope books {grant.size}")
            if grant.md5 and md5 != grant.md5.lower():
                raise ValueError(f"md5 {md5} differs from the envelope's {grant.md5}")
            await loop.run_in_executor(None, upload.record, md5)
            try:
                os.link(upload.path, local)  # never replaces an existing file
            except FileExistsError:
                return _fail(409, f"{request.path} exists (write-once)")
        except _TooLarge as exc:
            log.info("refused PUT %s: %s", request.path, exc)
            refusal = _fail(413, str(exc))
            refusal.force_close()
            return refusal
        except ValueError as exc:
            log.info("refused PUT %s: %s", request.path, exc)
            return _fail(422, str(exc))
        finally:
            upload.abort()  # the temporary name goes in every case
        log.info("stored %s (%d bytes, md5 %s)", request.path, upload.size, md5)
        return web.Response(status=201, text=f"{md5}\n", headers={"X-Md5": md5})

    async def delete(self, request: web.Request) -> web.Response:
        try:
            self._grant(request, ("delete",))
            local = self._local(request)
        except EnvelopeError as exc:
            return _fail(exc.status, str(exc))
        try:
            local.unlink()
        except FileNotFoundError:
            return _fail(404, f"no such file {request.path}")
        return web.Response(status=204)


def se_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS with the host certificate; no client certificate (the envelope authorizes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
