"""The storage service: who may read or write which replica, and what a finished upload
registers. The rules of data access live here; ``commands.storage_cmds`` only parses,
calls one method and renders JAliEn's records.

- ``access``: an ``AccessRequest`` (``wire.site_api``) answered with signed grants, one per
  replica: placement of a write (``storage.placement``, SEs being decommissioned left out),
  the read order of the replicas, the protocols the client speaks (``storage.endpoints``),
  the quota hook, and the envelope that books a write's size (``storage.envelope``).
- ``commit``: a write envelope checked against what the SE holds (``storage.replica_check``)
  before the file and its replica go into the catalogue; the placement rules' hook after.
- central's own reads and writes of small files (a JDL, an XML collection) and of ZIP
  archive members, through the same rules.

The catalogue is used through its service interface (``CatalogueAccess``, which
``catalogue.service.Catalogue`` implements; a service does not import another), the caller
through ``Caller`` (``commands.session.Session``: its identity, site and path resolution).
Errors are ``RequestError`` with JAliEn's errno texts (``wire.errors.jalien_error``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

import msgspec

from jalien.net.identity import Identity
from jalien.storage import endpoints, placement
from jalien.storage.archive import ArchiveError, Member, ReadAt, list_members, split_member
from jalien.storage.envelope import READ as ACCESS_READ
from jalien.storage.envelope import WRITE as ACCESS_WRITE
from jalien.storage.envelope import EnvelopeError, EnvelopeSigner, Grant, pfn_for, pfn_path
from jalien.storage.fetch import FetchError, fetch_range, fetch_small, put_small
from jalien.storage.quota import NoQuota, QuotaCheck, QuotaExceeded
from jalien.storage.replica_check import ReplicaChecker, ReplicaProblem, verdict
from jalien.wire.errors import (
    EBADFD,
    EBADR,
    EINVAL,
    EIO,
    ENOENT,
    EXIT_EXISTS,
    RequestError,
    jalien_error,
)
from jalien.wire.site_api import AccessGrant, AccessRequest

log = logging.getLogger("jalien.storage")

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DEFAULT_WRITE_SPECS = "disk:1"
COMMIT_GRACE = 24 * 3600.0  # a long upload may finish after its envelope expired


class StoredFile(Protocol):
    """A catalogue entry as storage reads it (``catalogue.model.Entry``)."""

    @property
    def path(self) -> str: ...
    @property
    def lfn(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def guid(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def md5(self) -> str: ...
    @property
    def is_dir(self) -> bool: ...


class ReplicaLike(Protocol):
    @property
    def se(self) -> str: ...
    @property
    def pfn(self) -> str: ...


class StorageElementLike(placement.SELike, endpoints.Endpoints, Protocol):
    """An SE as placement and endpoints read it (``catalogue.model.StorageElement``)."""


class CatalogueAccess(Protocol):
    """What storage asks the catalogue (``catalogue.service.Catalogue``); each call checks
    the caller's rights itself."""

    async def ensure_home(self, login: str) -> None: ...
    async def get(self, path: str) -> StoredFile | None: ...
    async def writable(self, caller: Identity, path: str) -> StoredFile | None: ...
    async def whereis(
        self, caller: Identity, path: str
    ) -> tuple[StoredFile, Sequence[ReplicaLike]]: ...
    async def by_guid(self, caller: Identity, guid: str) -> Sequence[StoredFile]: ...
    async def list_ses(self) -> Sequence[StorageElementLike]: ...
    async def mkdir(self, caller: Identity, path: str, parents: bool = False) -> StoredFile: ...
    async def register(
        self, caller: Identity, path: str, size: int, md5: str, guid: str = ""
    ) -> StoredFile: ...
    async def add_replica(self, caller: Identity, path: str, se: str, pfn: str) -> None: ...
    async def put_se(self, caller: Identity, se: Any) -> Any: ...
    def new_guid(self) -> str: ...


class Caller(Protocol):
    """Who asks (``commands.session.Session``): the identity the rights are checked for,
    the client's site (placement is by distance) and its paths made absolute."""

    @property
    def identity(self) -> Identity: ...
    @property
    def site(self) -> str: ...
    def absolute(self, path: str) -> str: ...


class Commit(msgspec.Struct, kw_only=True, frozen=True):
    """``commit envelope [size lfn perm expire pfn se guid md5]``: what commit reads of it."""

    envelope: str
    size: int = -1  # -1: not stated
    lfn: str = ""
    md5: str = ""


class Committed(msgspec.Struct, kw_only=True, frozen=True):
    lfn: str
    url: str


def clients_of(personality: str, typed: bool) -> frozenset[str]:
    """What the client of an access reads and writes with: the typed access comes from
    jalien's own clients (XRootD through the library, and HTTPS), and so do JAliEn's words
    on a direct binary connection (jalien-bin's shell and tools); words from a WebSocket
    (alien.py, ROOT) or through a level (the jBox, a JobAgent's payload) may come from JSON
    clients, which speak XRootD only."""
    if typed or personality == "binary":
        return endpoints.JALIEN_CLIENTS
    return endpoints.JSON_CLIENTS


def _not_committed(lfn: str, why: str) -> RequestError:
    return jalien_error(EBADR, f"Nothing was registered ({lfn}: {why})")


class StorageService:
    def __init__(
        self,
        catalogue: CatalogueAccess,
        signer: EnvelopeSigner,
        ca_dir: str = "",
        *,
        checker: ReplicaChecker | None = None,
        quota: QuotaCheck | None = None,
    ) -> None:
        self.cat = catalogue
        self.signer = signer
        self.ca_dir = ca_dir
        self.checker = checker if checker is not None else ReplicaChecker(signer, ca_dir)
        self.quota: QuotaCheck = quota if quota is not None else NoQuota()
        # where add_se also writes an SE when central's configuration keeps them (LDAP)
        self.se_directory: Callable[[Any], Awaitable[object]] | None = None
        # placement rules and decommissioning (roles/lifecycle_wiring.py): the SEs that take
        # no new file (upper case), and the rules' hook called with each committed LFN
        self.read_only: Callable[[], Collection[str]] = frozenset
        self.committed: Callable[[str], Awaitable[object]] | None = None

    async def close(self) -> None:
        """Ends the connections kept to SEs (also done when the event loop ends)."""
        await self.checker.close()

    # -- access
    async def access(
        self,
        caller: Caller,
        wanted: AccessRequest,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        """Signed grants for *wanted*, one per replica, for a client speaking *speaks*."""
        await self.cat.ensure_home(caller.identity.login)
        try:
            specs = placement.parse_specs(wanted.specs)
        except placement.SpecError as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        if wanted.access.startswith("write"):
            return await self._write(caller, wanted.lfn, specs, wanted, speaks)
        if wanted.access == "read":
            return await self._read(caller, wanted.lfn, specs, wanted.strict, speaks)
        raise jalien_error(EINVAL, f"Invalid access type requested: {wanted.access}")

    async def _write(
        self,
        caller: Caller,
        name: str,
        specs: placement.Specs,
        wanted: AccessRequest,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        path = caller.absolute(name)
        size = wanted.size
        if size < 0:  # the envelope books the size: the SE takes no byte beyond it
            raise jalien_error(
                EINVAL, "access write needs the size of the file: -s SIZE (bytes, >= 0)"
            )
        md5 = wanted.md5.lower()
        identity = caller.identity
        entry = await self.cat.writable(identity, path)
        if entry is not None:
            if entry.is_dir:
                raise jalien_error(EINVAL, f"Cannot write to a directory: {entry.lfn}")
            if entry.size != size or (md5 and entry.md5 and md5 != entry.md5):
                raise jalien_error(
                    EINVAL, "You seem to want to write a different file from the existing one"
                )
            guid, size, md5 = entry.guid, entry.size, entry.md5 or md5
        else:
            guid = self.cat.new_guid()
        try:  # the per-user file quota
            await self.quota.check_write(identity.login, size, 1)
        except QuotaExceeded as exc:
            raise jalien_error(QuotaExceeded.exitcode, str(exc)) from None
        if not specs.replicas:
            specs = placement.parse_specs(DEFAULT_WRITE_SPECS)
        every = await self.cat.list_ses()
        read_only = self.read_only()  # SEs being decommissioned
        ses = [
            se
            for se in every
            if endpoints.write_base(se, speaks) is not None and se.name.upper() not in read_only
        ]
        chosen = placement.choose_write(ses, specs, caller.site, size, key=guid)
        if entry is not None:  # never a second replica on an SE that has one
            _, existing = await self.cat.whereis(identity, path)
            have = {r.se.upper() for r in existing}
            chosen = [se for se in chosen if se.name.upper() not in have]
        if not chosen:
            named = [se for se in every if se.name.upper() in specs.ses and se not in ses]
            if named or (every and not ses):
                which = named or every
                raise jalien_error(
                    EBADFD,
                    f"No write PFNs: {', '.join(se.name for se in which)} speak "
                    f"{endpoints.spoken(which)}, this client {', '.join(sorted(speaks))}",
                )
            raise jalien_error(EBADFD, "No write PFNs")
        return [
            self._grant(
                ACCESS_WRITE,
                se,
                pfn_for(endpoints.write_base(se, speaks) or se.url, guid),
                (path, guid, size, md5),
                identity.login,
                len(chosen),
            )
            for se in chosen
        ]

    async def _read(
        self,
        caller: Caller,
        name: str,
        specs: placement.Specs,
        strict: bool,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        if "#" in name:
            return await self._member_grants(caller, name, specs, strict, speaks)
        identity = caller.identity
        path = caller.absolute(name)
        entry = await self.cat.get(path)
        if entry is None and UUID_RE.fullmatch(name):
            found = await self.cat.by_guid(identity, name)
            entry = found[0] if found else None
        if entry is None or entry.type != "f":
            raise jalien_error(ENOENT, name)
        _, replicas = await self.cat.whereis(identity, entry.path)  # needs read
        ses = await self.cat.list_ses()
        by_name = {se.name.upper(): se for se in ses}
        pairs = placement.order_read(
            [(r.se, r.pfn) for r in replicas], ses, caller.site, specs, strict
        )
        known = [p for p in pairs if p[0].upper() in by_name]
        usable = [
            (se_name, url)
            for se_name, pfn in known
            if (url := endpoints.usable_url(pfn, by_name[se_name.upper()], speaks)) is not None
        ]
        if not usable:
            if known:  # replicas there are, but none this client can read: say so
                where = [by_name[n.upper()] for n, _ in known]
                raise jalien_error(
                    EBADFD,
                    f"No read PFNs: the replicas of {entry.path} are on SEs that speak "
                    f"{endpoints.spoken(where)}, not {', '.join(sorted(speaks))} "
                    f"({', '.join(n for n, _ in known)})",
                )
            raise jalien_error(EBADFD, "No read PFNs")
        file = (entry.path, entry.guid, entry.size, entry.md5)
        return [
            self._grant(ACCESS_READ, by_name[n.upper()], url, file, identity.login, len(usable))
            for n, url in usable
        ]

    async def _member_grants(
        self,
        caller: Caller,
        name: str,
        specs: placement.Specs,
        strict: bool,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        """``access read archive.zip#member``: the archive's replicas with ``#member`` on
        their URLs, as JAliEn answers for an archive member (alien.py strips it and has
        xrootd unzip the member; jalien's cp reads it out with ranged reads), and the
        member's size (no md5: a ZIP member has its CRC, checked when it is read out)."""
        archive, member = split_member(name)
        grants = await self._read(caller, archive, specs, strict, speaks)
        try:
            members = await list_members(self.ranged(grants), grants[0].size)
        except ArchiveError as exc:
            raise jalien_error(EINVAL, f"{grants[0].lfn}: {exc}") from None
        found = next((m for m in members if m.name == member), None)
        if found is None:
            raise jalien_error(ENOENT, f"{name}: no member {member} in {grants[0].lfn}")
        return [
            msgspec.structs.replace(
                g, url=f"{g.url}#{member}", lfn=f"{g.lfn}#{member}", size=found.size, md5=""
            )
            for g in grants
        ]

    def _grant(
        self,
        access: str,
        se: StorageElementLike,
        url: str,
        file: tuple[str, str, int, str],
        user: str,
        count: int,
    ) -> AccessGrant:
        """The signed envelope for *url* on *se* (*file*: lfn, guid, size, md5) of *count*."""
        lfn, guid, size, md5 = file
        grant = Grant(
            access=access,
            pfn=pfn_path(url),
            turl=url,
            lfn=lfn,
            guid=guid,
            size=size,
            md5=md5,
            se=se.name,
            user=user,
        )
        return AccessGrant(
            url=url,
            envelope=self.signer.sign(grant),
            se=se.name,
            guid=guid,
            lfn=lfn,
            size=size,
            md5=md5,
            tags=list(se.qos),
            n_ses=count,
        )

    # -- commit
    async def commit(self, caller: Caller, done: Commit) -> Committed:
        """Registers the upload a write envelope allowed, once the SE holds it as booked."""
        lfn, md5 = done.lfn, done.md5.lower()
        try:
            grant = self.signer.verifier.open(done.envelope, time.time() - COMMIT_GRACE)
        except EnvelopeError as exc:
            raise _not_committed(lfn, str(exc)) from None
        problem = ""
        identity = caller.identity
        if grant.access != ACCESS_WRITE:
            problem = f"the envelope grants {grant.access}, not write"
        elif grant.user != identity.login:
            problem = "the envelope was issued to another user"
        elif lfn and caller.absolute(lfn) != grant.lfn:
            problem = f"the envelope is for {grant.lfn}"
        elif grant.size < 0:  # an envelope of an older central, booking no size
            problem = "the envelope books no size"
        elif done.size >= 0 and done.size != grant.size:
            problem = f"size {done.size} differs from the booked {grant.size}"
        elif grant.md5 and md5 and md5 != grant.md5:
            problem = f"md5 {md5} differs from the booked {grant.md5}"
        if problem:
            raise _not_committed(lfn or grant.lfn, problem)
        try:  # what the SE holds there, in bounded time
            md5 = verdict(grant, md5, await self.checker.stored(grant))
        except ReplicaProblem as exc:
            raise _not_committed(grant.lfn, str(exc)) from None
        await self.cat.ensure_home(identity.login)
        entry = await self.cat.get(grant.lfn)
        if entry is None:  # commits run concurrently (alien.py pipelines 64): races are fine
            parent = grant.lfn.rpartition("/")[0].rstrip("/") or "/"
            try:
                if await self.cat.get(parent) is None:
                    await self.cat.mkdir(identity, parent, parents=True)
            except RequestError as exc:
                _raise_unless_exists(exc)
            try:
                entry = await self.cat.register(
                    identity, grant.lfn, grant.size, md5, guid=grant.guid
                )
            except RequestError as exc:
                _raise_unless_exists(exc)
                entry = await self.cat.get(grant.lfn)
        if entry is None:
            raise _not_committed(grant.lfn, "the LFN vanished while committing")
        if entry.guid != grant.guid:
            raise _not_committed(grant.lfn, "the LFN exists with another GUID")
        _, existing = await self.cat.whereis(identity, grant.lfn)
        if not any(r.se.upper() == grant.se.upper() for r in existing):
            await self.cat.add_replica(identity, grant.lfn, grant.se, grant.turl)
        if self.committed is not None:  # the placement rules; their checker repairs a miss
            try:
                await self.committed(grant.lfn)
            except Exception:
                log.exception("rules at commit of %s", grant.lfn)
        return Committed(lfn=grant.lfn, url=grant.turl)

    # -- central's own reads and writes
    async def read_small_file(self, caller: Caller, lfn: str, limit: int = 1 << 20) -> bytes:
        """A small catalogue file's content, read by central itself from the closest
        replica that answers (a JDL given to submit); the caller's read rights apply."""
        replicas = await self._read(caller, lfn, placement.parse_specs([]), False)
        try:
            return await fetch_small(
                ((g.url, g.envelope, g.se) for g in replicas), self.ca_dir, limit
            )
        except FetchError as exc:
            raise jalien_error(EIO, f"cannot read {lfn}: {exc}") from None

    async def write_small_file(self, caller: Caller, lfn: str, data: bytes) -> str:
        """Central writing a small file (an XML collection) as any client does: access
        write with its size, the PUT to the chosen SE, commit (which checks what the SE
        holds). The caller's write rights apply; returns the LFN written."""
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        wanted = AccessRequest(access="write", lfn=lfn, size=len(data), md5=md5)
        grants = await self._write(caller, lfn, placement.parse_specs(DEFAULT_WRITE_SPECS), wanted)
        errors: list[str] = []
        for grant in grants:
            try:
                await put_small(grant.url, grant.envelope, data, self.ca_dir)
            except FetchError as exc:
                errors.append(f"{grant.se}: {exc}")
                continue
            done = Commit(envelope=grant.envelope, size=len(data), lfn=grant.lfn, md5=md5)
            await self.commit(caller, done)
            return grant.lfn
        raise jalien_error(EIO, f"cannot write {lfn}: {'; '.join(errors) or 'no SE'}")

    def ranged(self, grants: list[AccessGrant]) -> ReadAt:
        """Ranged reads of a replica (the first of *grants* that answers)."""

        async def read_at(offset: int, length: int) -> bytes:
            errors = []
            for g in grants:
                try:
                    return await fetch_range(g.url, g.envelope, offset, length, self.ca_dir)
                except FetchError as exc:
                    errors.append(f"{g.se}: {exc}")
            raise jalien_error(EIO, f"cannot read {grants[0].lfn}: {'; '.join(errors)}")

        return read_at

    async def archive_members(self, caller: Caller, name: str) -> tuple[AccessGrant, list[Member]]:
        """The files in the ZIP archive *name* (an OutputArchive), from its central
        directory (ranged reads of the closest replica); ArchiveError if it is not one."""
        grants = await self._read(caller, name, placement.parse_specs([]), False)
        return grants[0], await list_members(self.ranged(grants), grants[0].size)

    # -- storage elements
    async def by_distance(self, site: str, tag: str = "") -> list[tuple[Any, float]]:
        """The SEs (with QoS *tag*, if given), closest to *site* first, with their distance."""
        ses = [se for se in await self.cat.list_ses() if not tag or tag in se.qos]
        return [(se, placement.distance(site, se)) for se in placement.rank(ses, site)]

    async def add_se(
        self, caller: Caller, name: str, url: str, make: Callable[[Any], Any]
    ) -> tuple[Any, bool]:
        """Adds or updates SE *name* (admins only): *make* builds it from the one known under
        that name (None: a new SE); written to central's configuration too when it keeps
        SEs. Returns the SE and whether it was known."""
        if name.count("::") != 2:
            raise jalien_error(EINVAL, f"an SE name is VO::SITE::NAME, not {name}")
        if "://" not in url:
            raise jalien_error(EINVAL, f"the SE URL needs a protocol (https://, root://): {url}")
        known = {se.name.upper(): se for se in await self.cat.list_ses()}
        old = known.get(name.upper())
        se = await self.cat.put_se(caller.identity, make(old))
        if self.se_directory is not None:  # the central configuration's copy (LDAP)
            await self.se_directory(se)
        return se, old is not None


def _raise_unless_exists(exc: RequestError) -> None:
    """A concurrent commit made it first (the catalogue's EXIT_EXISTS) is fine."""
    if exc.exitcode != EXIT_EXISTS:
        raise exc
