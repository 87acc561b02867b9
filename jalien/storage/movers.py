"""Central moving and removing replicas itself, with its own envelopes: what the data movers
(jalien/datamovers) ask of the storage through the role.

- **delete**: the embedded SE (``https://``) gets ``DELETE <PFN>?authz=<delete envelope>``;
  an XRootD SE ``xrdfs <host> rm <path>?authz=...``. A file that is not there is no error
  (a retry after a lost answer, or a replica that never arrived).
- **copy**: between two XRootD SEs a third-party copy (``xrdcp --tpc first``: the SEs move
  the bytes, xrdcp falls back to streaming through itself if they cannot); otherwise the
  bytes stream through central, never to its disk: HTTPS -> HTTPS as a GET fed into a PUT,
  HTTPS <-> XRootD through an ``xrdcp`` reading its standard input or writing its standard
  output. The md5 is checked end to end: xrdcp's ``--cksum md5:<md5>`` on XRootD targets,
  the embedded SE's own check of the write envelope's md5 on HTTPS targets, and central's
  hash of the stream when it passes through. A target that already holds exactly the file
  (a copy whose commit was cut short by a restart) is a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

try:  # the XRootD client library (PyPI xrootd): removals in process, one connection per SE
    from XRootD import client as xrootd_client
except ImportError:  # xrdfs then
    xrootd_client = None  # type: ignore[assignment]  # the module or None, on purpose

from jalien.storage.envelope import DELETE, READ, WRITE, EnvelopeSigner, Grant, is_xrootd, pfn_path
from jalien.storage.replica_check import ReplicaChecker, ReplicaProblem, StoredReplica, verdict

CHUNK = 1 << 20
DELETE_TIMEOUT = 60.0
# the XRootD command-line clients try a server once (we retry, with backoff) and retry a lost
# DNS query after 1 s rather than glibc's 5 s
XRD_ENV = {"XRD_CONNECTIONRETRY": "1", "XRD_CONNECTIONWINDOW": "15"}
RESOLVER_ENV = {"RES_OPTIONS": "timeout:1 attempts:2"}


def _env() -> dict[str, str]:
    return {**RESOLVER_ENV, **os.environ, **XRD_ENV}


def _binary(name: str) -> str:
    """``$JALIEN_XRDCP``/``$JALIEN_XRDFS``, else the tool on PATH."""
    found = os.environ.get(f"JALIEN_{name.upper()}") or shutil.which(name) or ""
    if not found:
        raise MoveError(f"{name} not found (install xrootd-client or set JALIEN_{name.upper()})")
    return found


def transfer_url(url: str, envelope: str) -> str:
    """An XRootD URL with the envelope in ``authz``, as alien.py sends it."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}xrd.wantprot=unix&authz={envelope}"


def _last_line(err: bytes, rc: int | None) -> str:
    text = err.decode(errors="replace").replace("\x00", "").strip()
    return text.splitlines()[-1] if text else f"exit code {rc}"


class MoveError(Exception):
    """A delete or copy failed; *permanent*: the same attempt would fail again."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SEMover:
    def __init__(
        self,
        signer: EnvelopeSigner,
        ca_dir: str = "",
        *,
        checker: ReplicaChecker | None = None,
        timeout: float = 3600.0,
    ) -> None:
        self.signer = signer
        self.ca_dir = ca_dir
        self.checker = checker if checker is not None else ReplicaChecker(signer, ca_dir)
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None
        self._filesystems: dict[str, Any] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            context = ssl.create_default_context(capath=self.ca_dir or None)
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=64),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _envelope(self, access: str, se: str, pfn: str, guid: str, size: int = -1, md5: str = ""):
        grant = Grant(
            access=access, pfn=pfn_path(pfn), turl=pfn, guid=guid, se=se, size=size, md5=md5
        )
        return grant, self.signer.sign(grant)

    # -- removal
    async def delete(self, se: str, pfn: str, guid: str = "") -> None:
        _, envelope = self._envelope(DELETE, se, pfn, guid)
        try:
            async with asyncio.timeout(DELETE_TIMEOUT):
                if is_xrootd(pfn) and xrootd_client is not None:
                    await self._library_rm(transfer_url(pfn, envelope))
                elif is_xrootd(pfn):
                    await self._xrdfs_rm(transfer_url(pfn, envelope))
                else:
                    await self._https_delete(pfn, envelope)
        except TimeoutError:
            raise MoveError(f"{se} did not answer within {DELETE_TIMEOUT:.0f} s") from None

    async def _https_delete(self, pfn: str, envelope: str) -> None:
        try:
            async with self._session().delete(f"{pfn}?authz={envelope}") as resp:
                if resp.status in (200, 204, 404):
                    return
                text = (await resp.text())[:200].strip()
        except (aiohttp.ClientError, OSError) as exc:
            raise MoveError(f"cannot reach the SE: {type(exc).__name__}: {exc}") from None
        raise MoveError(f"HTTP {resp.status}: {text}", permanent=resp.status in (401, 403))

    async def _library_rm(self, url: str) -> None:
        """``kXR_rm`` through the library: its callback (on a library thread) resolves a
        future of this loop; the loop never waits on the network."""
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        server = f"{scheme}://{host}"
        fs = self._filesystems.get(server)
        if fs is None:
            fs = self._filesystems[server] = xrootd_client.FileSystem(server)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def done(status: Any, _response: Any, _hosts: Any) -> None:
            loop.call_soon_threadsafe(_settle, answer, status)

        sent = fs.rm("/" + path.lstrip("/"), timeout=int(DELETE_TIMEOUT), callback=done)
        if not sent.ok:
            raise MoveError(f"xrootd rm: {sent.message.strip()}")
        status = await answer
        if status.ok or status.errno == 3011:  # kXR_NotFound: nothing to remove
            return
        raise MoveError(f"xrootd rm: {status.message.strip()}")

    async def _xrdfs_rm(self, url: str) -> None:
        binary = _binary("xrdfs")
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        proc = await asyncio.create_subprocess_exec(
            binary, f"{scheme}://{host}", "rm", "/" + path.lstrip("/"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=_env(),
        )  # fmt: skip
        try:
            _, err = await proc.communicate()
        finally:
            await _reap(proc)
        if proc.returncode == 0:
            return
        text = err.decode(errors="replace")
        if "[3011]" in text or "No such file" in text:
            return  # not there: nothing to remove
        raise MoveError(f"xrdfs rm: {_last_line(err, proc.returncode)}")

    # -- copies
    async def copy(
        self,
        src_se: str,
        src: str,
        dst_se: str,
        dst: str,
        guid: str,
        size: int,
        md5: str,
        *,
        check_first: bool = True,
    ) -> None:
        """Copy src -> dst; *check_first*: the target may hold it already (an attempt after
        a restart), asked before copying."""
        _, read_env = self._envelope(READ, src_se, src, guid, size, md5)
        write_grant, write_env = self._envelope(WRITE, dst_se, dst, guid, max(size, 0), md5)
        try:
            async with asyncio.timeout(self.timeout):
                if check_first and await self._already_there(write_grant, md5):
                    return
                if is_xrootd(src) and is_xrootd(dst):
                    await self._tpc(transfer_url(src, read_env), transfer_url(dst, write_env), md5)
                elif is_xrootd(dst):
                    await self._https_to_xrootd(src, read_env, transfer_url(dst, write_env), md5)
                elif is_xrootd(src):
                    await self._xrootd_to_https(transfer_url(src, read_env), dst, write_env, size)
                else:
                    await self._https_to_https(src, read_env, dst, write_env, size, md5)
        except TimeoutError:
            raise MoveError(f"no copy within {self.timeout:.0f} s") from None

    async def _already_there(self, grant: Grant, md5: str) -> bool:
        """Whether the target already holds exactly this file (an earlier attempt's copy)."""
        try:
            stored: StoredReplica = await self.checker.stored(grant)
        except ReplicaProblem:
            return False
        try:
            verdict(grant, md5, stored)
        except ReplicaProblem:
            return False
        return True

    async def _tpc(self, src: str, dst: str, md5: str) -> None:
        """Third-party copy (``--tpc first``: streamed through xrdcp if the SEs cannot)."""
        args = [_binary("xrdcp"), "--nopbar", "--force", "--posc", "--tpc", "first"]
        if md5:
            args += ["--cksum", f"md5:{md5.lower()}"]
        proc = await asyncio.create_subprocess_exec(
            *args, src, dst, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_env(),
        )  # fmt: skip
        try:
            await self._ended(proc, "xrdcp --tpc")
        finally:
            await _reap(proc)

    async def _https_to_https(
        self, src: str, read_env: str, dst: str, write_env: str, size: int, md5: str
    ) -> None:
        http = self._session()
        digest = hashlib.md5(usedforsecurity=False)
        try:
            async with http.get(f"{src}?authz={read_env}") as got:
                if got.status != 200:
                    raise MoveError(f"source answered HTTP {got.status}", got.status in (403, 404))

                async def body() -> AsyncIterator[bytes]:
                    async for block in got.content.iter_chunked(CHUNK):
                        digest.update(block)
                        yield block

                headers = {"Content-Length": str(size)}
                async with http.put(
                    f"{dst}?authz={write_env}", data=body(), headers=headers
                ) as put:
                    if put.status != 201:
                        text = (await put.text())[:200].strip()
                        raise MoveError(f"target answered HTTP {put.status}: {text}")
        except (aiohttp.ClientError, OSError) as exc:
            raise MoveError(f"{type(exc).__name__}: {exc}") from None
        if md5 and digest.hexdigest() != md5.lower():
            raise MoveError(f"the source sent md5 {digest.hexdigest()}, not {md5}")

    async def _xrdcp_pipe(self, src: str, dst: str, md5: str):
        args = [_binary("xrdcp"), "--nopbar", "--force"]
        if dst != "-":
            args.append("--posc")  # a broken upload leaves nothing on the SE
        if md5 and dst != "-":
            args += ["--cksum", f"md5:{md5.lower()}"]
        return await asyncio.create_subprocess_exec(
            *args, src, dst, stdin=asyncio.subprocess.PIPE if src == "-" else None,
            stdout=asyncio.subprocess.PIPE if dst == "-" else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=_env(),
        )  # fmt: skip

    @staticmethod
    async def _ended(proc: asyncio.subprocess.Process, what: str) -> None:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        if await proc.wait() != 0:
            raise MoveError(f"{what}: {_last_line(err, proc.returncode)}")

    async def _https_to_xrootd(self, src: str, read_env: str, dst: str, md5: str) -> None:
        proc = await self._xrdcp_pipe("-", dst, md5)
        assert proc.stdin is not None
        try:
            try:
                async with self._session().get(f"{src}?authz={read_env}") as got:
                    if got.status != 200:
                        raise MoveError(f"source answered HTTP {got.status}")
                    async for block in got.content.iter_chunked(CHUNK):
                        proc.stdin.write(block)
                        await proc.stdin.drain()
            except (aiohttp.ClientError, OSError) as exc:
                raise MoveError(f"{type(exc).__name__}: {exc}") from None
            proc.stdin.close()
            await self._ended(proc, "xrdcp")
        finally:
            await _reap(proc)

    async def _xrootd_to_https(self, src: str, dst: str, write_env: str, size: int) -> None:
        proc = await self._xrdcp_pipe(src, "-", "")
        assert proc.stdout is not None
        stdout = proc.stdout

        async def body() -> AsyncIterator[bytes]:
            while block := await stdout.read(CHUNK):
                yield block

        try:
            headers = {"Content-Length": str(size)}
            try:
                async with self._session().put(
                    f"{dst}?authz={write_env}", data=body(), headers=headers
                ) as put:
                    if put.status != 201:
                        text = (await put.text())[:200].strip()
                        raise MoveError(f"target answered HTTP {put.status}: {text}")
            except (aiohttp.ClientError, OSError) as exc:
                raise MoveError(f"{type(exc).__name__}: {exc}") from None
            await self._ended(proc, "xrdcp")
        finally:
            await _reap(proc)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """No child outlives its copy (a timeout or a cancel kills it)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
