"""Data access commands as JAliEn has them: ``access`` (signed envelopes per replica),
``commit`` (register an uploaded replica), ``addSE`` and ``listSEDistance``.

Central only authorizes: the bytes go between the client and the SEs. What alien.py 1.7.0
sends and reads is in /work/shared/JALIEN-PROTOCOL.md ("Data access (cp)").

Writes are bounded and verified: ``access write`` needs the file's size (``-s``, which every
client states: alien.py, jalien's cp and the JobAgent's uploads) and asks the quota hook; the
envelope books that size and the SE takes no more; ``commit`` asks the SE what it holds at
the PFN (``storage.replica_check``) and registers nothing unless the size is the booked one
and the md5 the booked or stated one (or, stated nowhere, the SE's).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import msgspec

from jalien.auth.policy import Action as A
from jalien.auth.policy import ByFirstWord
from jalien.catalogue.backend import Exists
from jalien.catalogue.model import StorageElement, new_guid
from jalien.catalogue.paths import split
from jalien.catalogue.service import Catalogue
from jalien.commands.dispatch import GLOBAL_FLAGS, HELP_FLAGS
from jalien.commands.errno import EBADFD, EBADR, EINVAL, EIO, ENOENT, jalien_error
from jalien.commands.options import parse
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.storage import endpoints, placement
from jalien.storage.archive import ArchiveError, Member, ReadAt, list_members, split_member
from jalien.storage.envelope import READ as ACCESS_READ
from jalien.storage.envelope import WRITE as ACCESS_WRITE
from jalien.storage.envelope import (
    EnvelopeError,
    EnvelopeSigner,
    Grant,
    pfn_for,
    pfn_path,
)
from jalien.storage.fetch import FetchError, fetch_range, fetch_small, put_small
from jalien.storage.quota import NoQuota, QuotaCheck, QuotaExceeded
from jalien.storage.replica_check import ReplicaChecker, ReplicaProblem, verdict
from jalien.wire import site_api
from jalien.wire.messages import Record, Reply, Request
from jalien.wire.site_api import AccessGrant, AccessRequest

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DEFAULT_WRITE_SPECS = "disk:1"
COMMIT_GRACE = 24 * 3600.0  # a long upload may finish after its envelope expired
ACCESS_ACTION = ByFirstWord(A.READ, write=A.WRITE)  # access read|write[-once|-version]
ACCESS_USAGE = "access [-s size -m md5 -j job -f -u] read|write lfn"


def _words(session: Session, options: list[str]) -> list[str]:
    """A raw command's words without the global options, ``-pwd=`` applied as the
    dispatcher does for the others."""
    words = []
    for word in options:
        if word.startswith("-pwd="):
            session.cwd = word[len("-pwd=") :].rstrip("/") + "/"
        elif word not in GLOBAL_FLAGS and not word.startswith("-debug="):
            words.append(word)
    return words


def _not_committed(lfn: str, why: str):
    return jalien_error(EBADR, f"Nothing was registered ({lfn}: {why})")


def _typed_access(request: Request) -> AccessRequest | None:
    """A typed access (wire.site_api) or None for JAliEn's words. Its kind is also its
    first option, which the policy reads (read or write): the two must agree."""
    if not request.data:
        return None
    try:
        typed = site_api.decode(request.data[0], AccessRequest)
    except site_api.SiteApiError as exc:
        raise jalien_error(EINVAL, f"access: {exc}") from None
    if list(request.options) != [typed.access]:
        raise jalien_error(
            EINVAL, f"a typed access names its kind as its one option, not {request.options[:3]}"
        )
    return typed


def _speaks(session: Session, typed: bool) -> frozenset[str]:
    """What the client of an access reads and writes with: the typed access comes from
    jalien's own clients (XRootD through the library, and HTTPS), and so do JAliEn's words
    on a direct binary connection (jalien-bin's shell and tools); words from a WebSocket
    (alien.py, ROOT) or through a level (the jBox, a JobAgent's payload) may come from JSON
    clients, which speak XRootD only."""
    if typed or session.personality == "binary":
        return endpoints.JALIEN_CLIENTS
    return endpoints.JSON_CLIENTS


class StorageCommands:
    def __init__(
        self,
        table: CommandTable,
        catalogue: Catalogue,
        signer: EnvelopeSigner,
        ca_dir: str = "",
        *,
        checker: ReplicaChecker | None = None,
        quota: QuotaCheck | None = None,
    ) -> None:
        self.table = table
        self.cat = catalogue
        self.signer = signer
        self.ca_dir = ca_dir
        self.checker = checker if checker is not None else ReplicaChecker(signer, ca_dir)
        self.quota: QuotaCheck = quota if quota is not None else NoQuota()
        # where addSE also writes an SE when central's configuration keeps them (LDAP)
        self.se_directory: Callable[[StorageElement], Awaitable[object]] | None = None
        # placement rules and decommissioning (roles/lifecycle_wiring.py): the SEs that take
        # no new file (upper case), and the rules' hook called with each committed LFN
        self.read_only: Callable[[], Collection[str]] = frozenset
        self.committed: Callable[[str], Awaitable[object]] | None = None

    async def close(self) -> None:
        """Ends the connections kept to SEs (also done when the event loop ends)."""
        await self.checker.close()

    async def read_small_file(self, session: Session, lfn: str, limit: int = 1 << 20) -> bytes:
        """A small catalogue file's content, read by central itself from the closest
        replica that answers (a JDL given to submit); the session's read rights apply."""
        replicas = await self._access_read(session, lfn, placement.parse_specs([]), False)
        try:
            return await fetch_small(
                ((g.url, g.envelope, g.se) for g in replicas), self.ca_dir, limit
            )
        except FetchError as exc:
            raise jalien_error(EIO, f"cannot read {lfn}: {exc}") from None

    async def write_small_file(self, session: Session, lfn: str, data: bytes) -> str:
        """Central writing a small file (an XML collection) as any client does: access
        write with its size, the PUT to the chosen SE, commit (which checks what the SE
        holds). The session's write rights apply; returns the LFN written."""
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        wanted = AccessRequest(access="write", lfn=lfn, size=len(data), md5=md5)
        grants = await self._access_write(
            session, lfn, placement.parse_specs(DEFAULT_WRITE_SPECS), wanted
        )
        errors: list[str] = []
        for grant in grants:
            try:
                await put_small(grant.url, grant.envelope, data, self.ca_dir)
            except FetchError as exc:
                errors.append(f"{grant.se}: {exc}")
                continue
            await self.commit(session, [grant.envelope, str(len(data)), grant.lfn, *[""] * 5, md5])
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

    async def archive_members(
        self, session: Session, name: str
    ) -> tuple[AccessGrant, list[Member]]:
        """The files in the ZIP archive *name* (an OutputArchive), from its central
        directory (ranged reads of the closest replica); ArchiveError if it is not one."""
        grants = await self._access_read(session, name, placement.parse_specs([]), False)
        return grants[0], await list_members(self.ranged(grants), grants[0].size)

    async def _member_grants(
        self,
        session: Session,
        name: str,
        specs: Any,
        strict: bool,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        """``access read archive.zip#member``: the archive's replicas with ``#member`` on
        their URLs, as JAliEn answers for an archive member (alien.py strips it and has
        xrootd unzip the member; jalien's cp reads it out with ranged reads), and the
        member's size (no md5: a ZIP member has its CRC, checked when it is read out)."""
        archive, member = split_member(name)
        grants = await self._access_read(session, archive, specs, strict, speaks)
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

    def _add(self, name: str, fn: Any, summary: str, **how: Any) -> None:
        """The table's add; access is raw: it reads a typed AccessRequest in Request.data."""
        if name == "access":
            how["raw"] = True
        self.table.add(name, fn, summary, **how)

    def register(self) -> None:
        add = self._add
        add(
            "access",
            self.access,
            "envelopes: access [-s size -m md5 -j job -f -u] read|write lfn",
            action=ACCESS_ACTION,
        )
        add("commit", self.commit, "register an uploaded replica (API command)", action=A.WRITE)
        add(
            "listSEDistance",
            self.list_se_distance,
            "SEs by distance: listSEDistance [-site S]",
            action=A.READ,
        )
        add(
            "addSE",
            self.add_se,
            "add or update an SE: addSE [-site S] [-qos a,b] [-capacity B] name url",
            action=A.ADMIN,
        )

    # -- access
    async def access(self, session: Session, request: Request) -> Reply:
        """A raw command: a typed AccessRequest is answered with typed grants (Reply.data),
        JAliEn's words (alien.py, ROOT, previous versions) with JAliEn's records."""
        typed = _typed_access(request)
        if typed is None:
            words = _words(session, request.options)
            if any(w in HELP_FLAGS for w in words):
                return Reply(results=[{"message": f"usage: access: {ACCESS_USAGE}"}])
            wanted = self._access_words(words)
        else:
            wanted = typed
        await self.cat.ensure_home(session.identity.login)
        try:
            specs = placement.parse_specs(wanted.specs)
        except placement.SpecError as exc:
            raise jalien_error(EINVAL, str(exc)) from None
        speaks = _speaks(session, typed is not None)
        if wanted.access.startswith("write"):
            grants = await self._access_write(session, wanted.lfn, specs, wanted, speaks)
        elif wanted.access == "read":
            grants = await self._access_read(session, wanted.lfn, specs, wanted.strict, speaks)
        else:
            raise jalien_error(EINVAL, f"Invalid access type requested: {wanted.access}")
        if typed is not None:
            return Reply(data=[site_api.encode(g) for g in grants])
        return Reply(results=[g.record() for g in grants])

    @staticmethod
    def _access_words(words: list[str]) -> AccessRequest:
        opts = parse(words, flags="fu", valued=("s", "m", "j"))
        if len(opts.args) < 2:
            raise jalien_error(EINVAL, "Command requires an argument")
        return AccessRequest(
            access=opts.args[0],
            lfn=opts.args[1],
            size=opts.number("s", -1),
            md5=opts.value("m"),
            specs=opts.args[2:],
            strict="f" in opts,
        )

    async def _access_write(
        self,
        session: Session,
        name: str,
        specs: Any,
        wanted: AccessRequest,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        path = session.absolute(name)
        size = wanted.size
        if size < 0:  # the envelope books the size: the SE takes no byte beyond it
            raise jalien_error(
                EINVAL, "access write needs the size of the file: -s SIZE (bytes, >= 0)"
            )
        md5 = wanted.md5.lower()
        entry = await self.cat.writable(session.identity, path)
        if entry is not None:
            if entry.is_dir:
                raise jalien_error(EINVAL, f"Cannot write to a directory: {entry.lfn}")
            if entry.size != size or (md5 and entry.md5 and md5 != entry.md5):
                raise jalien_error(
                    EINVAL, "You seem to want to write a different file from the existing one"
                )
            guid, size, md5 = entry.guid, entry.size, entry.md5 or md5
        else:
            guid = new_guid()
        try:  # the per-user file quota (a no-op until it is implemented)
            await self.quota.check_write(session.identity.login, size, 1)
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
        chosen = placement.choose_write(ses, specs, session.site, size, key=guid)
        if entry is not None:  # never a second replica on an SE that has one
            _, existing = await self.cat.whereis(session.identity, path)
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
        grants: list[AccessGrant] = []
        for se in chosen:
            url = pfn_for(endpoints.write_base(se, speaks) or se.url, guid)
            grant = Grant(
                access=ACCESS_WRITE,
                pfn=pfn_path(url),
                turl=url,
                lfn=path,
                guid=guid,
                size=size,
                md5=md5,
                se=se.name,
                user=session.identity.login,
            )
            grants.append(self._grant(grant, se, len(chosen)))
        return grants

    async def _access_read(
        self,
        session: Session,
        name: str,
        specs: Any,
        strict: bool,
        speaks: frozenset[str] = endpoints.JALIEN_CLIENTS,
    ) -> list[AccessGrant]:
        if "#" in name:
            return await self._member_grants(session, name, specs, strict, speaks)
        path = session.absolute(name)
        entry = await self.cat.get(path)
        if entry is None and UUID_RE.fullmatch(name):
            found = await self.cat.by_guid(session.identity, name)
            entry = found[0] if found else None
        if entry is None or entry.type != "f":
            raise jalien_error(ENOENT, name)
        _, replicas = await self.cat.whereis(session.identity, entry.path)  # needs read
        ses = await self.cat.list_ses()
        by_name = {se.name.upper(): se for se in ses}
        pairs = placement.order_read(
            [(r.se, r.pfn) for r in replicas], ses, session.site, specs, strict
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
        grants: list[AccessGrant] = []
        for se_name, url in usable:
            se = by_name[se_name.upper()]
            grant = Grant(
                access=ACCESS_READ,
                pfn=pfn_path(url),
                turl=url,
                lfn=entry.path,
                guid=entry.guid,
                size=entry.size,
                md5=entry.md5,
                se=se.name,
                user=session.identity.login,
            )
            grants.append(self._grant(grant, se, len(usable)))
        return grants

    def _grant(self, grant: Grant, se: StorageElement, count: int) -> AccessGrant:
        return AccessGrant(
            url=grant.turl,
            envelope=self.signer.sign(grant),
            se=se.name,
            guid=grant.guid,
            lfn=grant.lfn,
            size=grant.size,
            md5=grant.md5,
            tags=list(se.qos),
            n_ses=count,
        )

    # -- commit
    async def commit(self, session: Session, args: list[str]) -> list[Record]:
        """``commit envelope [size lfn perm expire pfn se guid md5]``, as alien.py sends it."""
        if not args:
            raise jalien_error(EINVAL, "Command requires an argument")
        fields = [*args, *[""] * 9][:9]
        envelope, size_text, lfn = fields[0], fields[1], fields[2]
        md5 = fields[8].lower()
        try:
            grant = self.signer.verifier.open(envelope, time.time() - COMMIT_GRACE)
        except EnvelopeError as exc:
            raise _not_committed(lfn, str(exc)) from None
        problem = ""
        size = int(size_text) if size_text.lstrip("-").isdigit() else -1
        if grant.access != ACCESS_WRITE:
            problem = f"the envelope grants {grant.access}, not write"
        elif grant.user != session.identity.login:
            problem = "the envelope was issued to another user"
        elif lfn and session.absolute(lfn) != grant.lfn:
            problem = f"the envelope is for {grant.lfn}"
        elif grant.size < 0:  # an envelope of an older central, booking no size
            problem = "the envelope books no size"
        elif size >= 0 and size != grant.size:
            problem = f"size {size} differs from the booked {grant.size}"
        elif grant.md5 and md5 and md5 != grant.md5:
            problem = f"md5 {md5} differs from the booked {grant.md5}"
        if problem:
            raise _not_committed(lfn or grant.lfn, problem)
        size = grant.size
        try:  # what the SE holds there, in bounded time
            md5 = verdict(grant, md5, await self.checker.stored(grant))
        except ReplicaProblem as exc:
            raise _not_committed(grant.lfn, str(exc)) from None
        await self.cat.ensure_home(session.identity.login)
        entry = await self.cat.get(grant.lfn)
        if entry is None:  # commits run concurrently (alien.py pipelines 64): races are fine
            parent = split(grant.lfn)[0].rstrip("/") or "/"
            if await self.cat.get(parent) is None:
                with contextlib.suppress(Exists):
                    await self.cat.mkdir(session.identity, parent, parents=True)
            try:
                entry = await self.cat.register(
                    session.identity, grant.lfn, size, md5, guid=grant.guid
                )
            except Exists:
                entry = await self.cat.get(grant.lfn)
        if entry is None:
            raise _not_committed(grant.lfn, "the LFN vanished while committing")
        if entry.guid != grant.guid:
            raise _not_committed(grant.lfn, "the LFN exists with another GUID")
        _, existing = await self.cat.whereis(session.identity, grant.lfn)
        if not any(r.se.upper() == grant.se.upper() for r in existing):
            await self.cat.add_replica(session.identity, grant.lfn, grant.se, grant.turl)
        if self.committed is not None:  # the placement rules; their checker repairs a miss
            try:
                await self.committed(grant.lfn)
            except Exception:
                logging.getLogger("jalien.commands").exception("rules at commit of %s", grant.lfn)
        return [{"path": grant.lfn, "lfn": "1", "pfn": grant.turl, "message": f"{grant.lfn} 1"}]

    # -- SEs
    async def list_se_distance(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(args, flags="", valued=("site", "qos"))
        site = opts.value("site") or session.site
        tag = opts.value("qos").lower()
        ses = [se for se in await self.cat.list_ses() if not tag or tag in se.qos]
        records: list[Record] = []
        for se in placement.rank(ses, site):
            d = placement.distance(site, se)
            records.append(
                {
                    "seName": se.name,
                    "distance": f"{d:.4f}",
                    "site": placement.site_of(se),
                    "qos": ",".join(sorted(se.qos)),
                    "message": f"{se.name:<40} (distance {d:.4f})",
                }
            )
        return records

    async def add_se(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(args, flags="", valued=("site", "qos", "capacity", "used", "number"))
        if len(opts.args) != 2:
            raise jalien_error(EINVAL, "usage: addSE [-site S] [-qos a,b] [-capacity B] name url")
        name, url = opts.args
        if name.count("::") != 2:
            raise jalien_error(EINVAL, f"an SE name is VO::SITE::NAME, not {name}")
        if "://" not in url:
            raise jalien_error(EINVAL, f"the SE URL needs a protocol (https://, root://): {url}")
        known = {se.name.upper(): se for se in await self.cat.list_ses()}
        old = known.get(name.upper())
        qos = [q.strip().lower() for q in opts.value("qos").split(",") if q.strip()]
        se = StorageElement(
            name=name,
            url=url.rstrip("/"),
            site=opts.value("site") or (old.site if old else name.split("::")[1]),
            qos=qos or (old.qos if old else ["disk"]),
            capacity=opts.number("capacity", old.capacity if old else 0),
            used=opts.number("used", old.used if old else 0),
            protocols=[url.split("://")[0]],
            number=opts.number("number", 0),
        )
        se = await self.cat.put_se(session.identity, se)
        if self.se_directory is not None:  # the central configuration's copy (LDAP)
            await self.se_directory(se)
        verb = "updated" if old else "added"
        return [
            {
                "seName": se.name,
                "seNumber": str(se.number),
                "endpointUrl": se.url,
                "message": f"{verb} {se.name} ({se.number}) at {se.url}",
            }
        ]
