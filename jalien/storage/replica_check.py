"""What an SE holds where a write envelope allowed an upload: the question ``commit`` asks
before it registers a replica, and its verdict.

- The embedded SE (``https://``): ``GET <PFN>?authz=<stat envelope>`` answers the SE's own
  record as JSON (``StoredReplica``: the file's size now, the md5 the SE computed while the
  upload arrived). The stat envelope is signed with central's envelope key, the one SEs
  already verify, so an SE answers central only; it names the one PFN and lives two minutes
  (``envelope.STAT_LIFETIME``).
- An XRootD SE (``root://``): ``kXR_stat`` and ``kXR_query`` checksum through the XRootD
  client library in process (``jalien.storage.xrd.stat``), the stat envelope in ``authz``
  as for transfers.

Each question is bounded by ``timeout`` seconds, plus one per ``HASH_RATE`` bytes of the
file (an SE without a recorded md5 hashes the file to answer): an SE that is silent or
unreachable is a ``ReplicaProblem`` saying so. The event loop never waits: HTTP on aiohttp
(one pooled session, closed by ``close()`` or when the loop ends), XRootD through the
library's callbacks (at most ``xrd_parallel`` questions at once: alien.py pipelines 64
commits).

Cost: a question to the embedded SE is one pooled HTTPS request; one to an XRootD SE two
requests on the library's one connection to that SE (it was two xrdfs processes, ~8 ms of
CPU each, before).
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import msgspec

from jalien.storage.envelope import EnvelopeSigner, Grant, is_xrootd
from jalien.storage.xrd import XrdfsError, transfer_url, xrd_stat

DEFAULT_TIMEOUT = 30.0  # seconds for one question, plus a second per HASH_RATE bytes
HASH_RATE = 50_000_000  # bytes/s: an SE that has no md5 yet reads the whole file for it
XRD_PARALLEL = 8  # XRootD questions at once (an SE computing md5s on demand queues more)


class StoredReplica(msgspec.Struct, frozen=True, kw_only=True):
    """An SE's answer: the size of the file it holds and its md5 ("": the SE keeps none)."""

    size: int
    md5: str = ""


class ReplicaProblem(Exception):
    """The replica must not be registered; the message says why."""


_decode = msgspec.json.Decoder(StoredReplica).decode
encode_stored = msgspec.json.Encoder().encode


def verdict(grant: Grant, md5: str, stored: StoredReplica) -> str:
    """The md5 to register for what *stored* says the SE holds under a write *grant*, given
    the *md5* the client states; ReplicaProblem when size or md5 differ. Without a booked
    md5 the client's is compared with the SE's; with neither, the SE's is registered."""
    if stored.size != grant.size:
        raise ReplicaProblem(
            f"{grant.se} holds {stored.size} bytes, the envelope booked {grant.size}"
        )
    expected = (grant.md5 or md5).lower()
    if stored.md5 and expected and stored.md5.lower() != expected:
        raise ReplicaProblem(f"md5 differs: the SE computed {stored.md5.lower()}, not {expected}")
    return expected or stored.md5.lower()


class ReplicaChecker:
    def __init__(
        self,
        signer: EnvelopeSigner,
        ca_dir: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        xrd_parallel: int = XRD_PARALLEL,
    ) -> None:
        self.signer = signer
        self.ca_dir = ca_dir
        self.timeout = timeout
        self._xrd_slots = asyncio.Semaphore(xrd_parallel)
        self._http: aiohttp.ClientSession | None = None
        self._keeper: asyncio.Future | None = None

    async def stored(self, grant: Grant) -> StoredReplica:
        """What the SE of a write *grant* holds at its PFN; ReplicaProblem when it holds
        nothing there or cannot say in time."""
        if not grant.turl:
            raise ReplicaProblem("the envelope names no replica URL")
        question = self.signer.stat_envelope(grant)
        limit = self.timeout + max(grant.size, 0) / HASH_RATE
        try:
            async with asyncio.timeout(limit):
                if is_xrootd(grant.turl):
                    return await self._ask_xrootd(grant, question)
                return await self._ask_https(grant, question)
        except TimeoutError:
            raise ReplicaProblem(f"{grant.se} did not answer within {limit:.1f} s") from None

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait({keeper})

    # -- the embedded SE
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            context = ssl.create_default_context(capath=self.ca_dir or None)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
            self._keeper = asyncio.ensure_future(self._keep(self._http))
        return self._http

    @staticmethod
    async def _keep(http: aiohttp.ClientSession) -> None:
        """Holds the pooled session until close(), or until the loop ends (which cancels
        this task): then closes it, so that no connection outlives its loop."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await http.close()

    async def _ask_https(self, grant: Grant, question: str) -> StoredReplica:
        try:
            async with self._session().get(f"{grant.turl}?authz={question}") as resp:
                status, body = resp.status, await resp.content.read(4096)
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise ReplicaProblem(f"cannot reach {grant.se}: {exc}") from None
        if status == 404:
            raise ReplicaProblem(f"no file at {grant.turl} on {grant.se} (was it uploaded?)")
        if status != 200:
            text = body.decode(errors="replace").strip()[:200]
            raise ReplicaProblem(f"{grant.se} answered HTTP {status}: {text}")
        try:
            return _decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ReplicaProblem(f"{grant.se} gave no replica record (a jalien SE?)") from None

    # -- XRootD SEs
    async def _ask_xrootd(self, grant: Grant, question: str) -> StoredReplica:
        async with self._xrd_slots:
            try:
                size, md5 = await xrd_stat(transfer_url(grant.turl, question))
            except XrdfsError as exc:
                if exc.missing:
                    raise ReplicaProblem(
                        f"no file at {grant.turl} on {grant.se} (was it uploaded?)"
                    ) from None
                raise ReplicaProblem(f"{grant.se}: {exc}") from None
        return StoredReplica(size=size, md5=md5)
