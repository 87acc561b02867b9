"""The catalogue's operations with AliEn semantics: paths, permissions, homes, cache.

Commands call this; it calls a backend. Every operation takes the caller (login + roles)
and checks permissions before touching anything.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Protocol

import msgspec

from jalien.catalogue.backend import (
    ALL_FIELDS,
    NAME_AND_TYPE,
    PAGE,
    CatalogueBackend,
    DiskUsage,
    FindQuery,
    NotFound,
    PackedEntries,
)
from jalien.catalogue.cache import CatalogueCache, NoCache
from jalien.catalogue.change_log import PENDING, Pending
from jalien.catalogue.model import (
    DIRECTORY,
    FILE,
    Entry,
    Replica,
    StorageElement,
    new_guid,
    now_ms,
)
from jalien.catalogue.paths import as_dir, split
from jalien.catalogue.permissions import (
    READ,
    WRITE,
    Caller,
    PermissionDenied,
    allowed,
    is_admin,
    require,
    valid_mode,
)
from jalien.catalogue.removals import Held, NoRemovals, RemovalQueue
from jalien.wire.errors import EXIT_INVALID, RequestError
from jalien.wire.messages import DirEntry

# The owner of "/" and of the directories above the homes: AliEn's "admin", a login no account
# may have (jalien.auth.accounts.RESERVED_LOGINS refuses it), so only the admin role writes there.
ROOT_OWNER = "admin"
ROOT = Entry("", "/", DIRECTORY, "755", ROOT_OWNER, ROOT_OWNER)
ADMIN = ROOT_OWNER


class ChangeNotes(Protocol):
    """Where the catalogue's writes leave their changes for the other hosts."""

    def pending(self, paths: Iterable[str]) -> Pending | None: ...
    def note(self, pending: Pending) -> Awaitable[None]: ...


class NotADirectory(RequestError):
    def __init__(self, lfn: str) -> None:
        super().__init__(f"{lfn}: Not a directory", 20)


class Catalogue:
    def __init__(
        self,
        backend: CatalogueBackend,
        *,
        home_template: str = "/alice/cern.ch/user/{initial}/{login}/",
        cache: CatalogueCache | None = None,
    ) -> None:
        self.backend = backend
        self.home_template = home_template
        self.cache = cache or NoCache()
        self._homes_done: set[str] = set()
        # where the replicas of removed files go (the role wires the data movers' queue)
        self.removals: RemovalQueue = NoRemovals()
        # several hosts sharing this catalogue: each write's paths go to the change log the
        # others follow to drop them from their caches (catalogue.change_log); None: one host
        self.changes: ChangeNotes | None = None

    # -- lookups
    def new_guid(self) -> str:
        """The GUID of a file about to be written (model.new_guid: time-based, as AliEn's)."""
        return new_guid()

    def home_of(self, login: str) -> str:
        return self.home_template.format(initial=login[0], login=login)

    async def get(self, path: str) -> Entry | None:
        if path == "/":
            return ROOT
        return await self.backend.get(path)

    async def stat(self, caller: Caller, path: str) -> Entry:
        entry = await self.get(path)
        if entry is None:
            raise NotFound(path)
        return entry

    async def stat_many(self, caller: Caller, paths: list[str]) -> list[Entry | None]:
        """Entries by path; one the caller may not read is as absent (None)."""
        found = await self.backend.get_many([p for p in paths if p != "/"])
        entries = [ROOT if p == "/" else found.get(p) for p in paths]
        return [e if e is not None and allowed(caller, e, READ) else None for e in entries]

    async def directory(self, caller: Caller, path: str, bit: int, action: str) -> Entry:
        entry = await self.stat(caller, path)
        _check_directory(caller, entry, bit, action)
        return entry

    def listing(
        self,
        caller: Caller,
        path: str,
        entry: Entry | None = None,
        fields: int = ALL_FIELDS,
    ) -> AsyncIterator[list[DirEntry]]:
        """Pages of a directory (never the whole of it in memory), the first *fields*
        fields of each entry read (``backend.listing_fields``). *entry*: the directory's
        entry when the caller has just looked it up (one lookup less; the permission is then
        checked at once, and the pages are the backend's own: no generator in between)."""
        if entry is None:
            return self._listing(caller, path, fields)
        _check_directory(caller, entry, READ, "list")
        return self.backend.list_dir(as_dir(path), fields=fields)

    def packed_listing(
        self,
        caller: Caller,
        path: str,
        entry: Entry,
        fields: int = ALL_FIELDS,
        hide_dot: bool = False,
        skip_type: str = "",
    ) -> AsyncIterator[PackedEntries]:
        """``listing``'s pages of the entries ``backend.is_shown``, encoded as the binary channel
        carries them (``backend.list_dir_packed``), for a caller who has just looked up the
        directory's *entry*."""
        _check_directory(caller, entry, READ, "list")
        return self.backend.list_dir_packed(as_dir(path), PAGE, fields, hide_dot, skip_type)

    async def _listing(
        self, caller: Caller, path: str, fields: int
    ) -> AsyncIterator[list[DirEntry]]:
        await self.directory(caller, path, READ, "list")
        async for page in self.backend.list_dir(as_dir(path), fields=fields):
            yield page

    async def expand(self, caller: Caller, path: str) -> list[str]:
        """JAliEn's wildcard expansion of an absolute path: '*' and '?' in any component,
        through the directories the caller may list; a path without them is itself."""
        if "*" not in path and "?" not in path:
            return [path]
        parts = path.strip("/").split("/")
        found = ["/"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if "*" not in part and "?" not in part:
                found = [f.rstrip("/") + "/" + part for f in found]
                continue
            regex = re.compile("^" + re.escape(part).replace(r"\*", ".*").replace(r"\?", ".") + "$")
            matches = []
            for base in found:
                entry = await self.get(base)
                if entry is None or not entry.is_dir:
                    continue
                async for page in self.listing(caller, base, fields=NAME_AND_TYPE):
                    for row in page:
                        if regex.match(row.name) and (last or row.type == DIRECTORY):
                            matches.append(base.rstrip("/") + "/" + row.name)
            found = matches
        return found

    async def find(self, caller: Caller, query: FindQuery) -> AsyncIterator[list[Entry]]:
        base = query.base.rstrip("/") or "/"
        await self.directory(caller, base, READ, "search")
        # every field of the query (lfn_like too), in an order that is the same in every
        # process: the cache may be shared by several
        fields = msgspec.structs.asdict(query)
        fields["types"] = sorted(query.types)
        key = json.dumps(fields, sort_keys=True)
        cached = self.cache.get("find", key)
        if cached is not None:
            for page in cached:
                yield page
            return
        pages: list[list[Entry]] = []
        total = 0
        async for page in self.backend.find(query):
            total += len(page)
            if total <= 10_000:
                pages.append(page)
            yield page
        if total <= 10_000:
            self.cache.put("find", key, pages, query.base)

    async def du(self, caller: Caller, path: str) -> DiskUsage:
        await self.directory(caller, path, READ, "read")
        return await self.backend.du(as_dir(path))

    async def entry_for(self, caller: Caller, path: str, bit: int, action: str) -> Entry | None:
        """The entry at *path* if the caller has *bit* on it (PermissionDenied saying the
        *action* otherwise); None when there is none."""
        entry = await self.get(path)
        if entry is not None:
            require(caller, entry, bit, action)
        return entry

    async def writable(self, caller: Caller, path: str) -> Entry | None:
        """Where a file is to be written: its entry, when it exists (a directory is returned
        as it is, a file only if the caller may add a replica to it), else None once the
        caller may write into its parent (a parent still to be made is the commit's)."""
        entry = await self.get(path)
        if entry is not None:
            if not entry.is_dir:
                require(caller, entry, WRITE, "add a replica to")
            return entry
        await self.entry_for(caller, split(path)[0].rstrip("/") or "/", WRITE, "write into")
        return None

    async def whereis(self, caller: Caller, path: str) -> tuple[Entry, list[Replica]]:
        entry = await self.stat(caller, path)
        require(caller, entry, READ, "read")
        cached = self.cache.get("whereis", path)
        if cached is not None:
            return entry, cached
        replicas = await self.backend.replicas(entry.guid) if entry.guid else []
        self.cache.put("whereis", path, replicas, path)
        return entry, replicas

    async def by_guid(self, caller: Caller, guid: str) -> list[Entry]:
        """The entries of a GUID that the caller may read."""
        found = await self.backend.by_guid(guid.lower())
        return [e for e in found if allowed(caller, e, READ)]

    async def list_ses(self) -> list[StorageElement]:
        return await self.backend.list_ses()

    def replicas_on(self, se: str) -> AsyncIterator[list[Replica]]:
        """Pages of every replica on SE *se*, in no promised order (central's own use: the
        dark-data crawl, decommissioning; no caller's permissions apply)."""
        return self.backend.replicas_on(se)

    async def put_se(self, caller: Caller, se: StorageElement) -> StorageElement:
        """Add or update a storage element (admins only); a new one gets the next number."""
        if not is_admin(caller):
            raise PermissionDenied("Permission denied: only an admin may add or change SEs")
        known = await self.backend.list_ses()
        same = [s for s in known if s.name.upper() == se.name.upper()]
        if same:
            se.name = same[0].name
            se.number = se.number or same[0].number
        if not se.number:
            se.number = max((s.number for s in known), default=0) + 1
        await self.backend.put_se(se)
        return se

    # -- writes
    @contextlib.asynccontextmanager
    async def _writing(self, *paths: str) -> AsyncIterator[None]:
        """Around each backend call that commits a write: the cache's invalidation of
        *paths* is durable before the commit and repeated after it (crash-consistent); with
        other hosts, the paths are in the change log before the write is acknowledged."""
        pending = self.changes.pending(paths) if self.changes is not None and paths else None
        token = PENDING.set(pending) if pending is not None else None
        try:
            async with self.cache.writing(*paths):
                yield
        finally:
            if token is not None:
                PENDING.reset(token)
            if pending is not None and not pending.logged and self.changes is not None:
                await self.changes.note(pending)  # not in the write's own transaction

    async def _parent_for_write(self, caller: Caller, path: str) -> Entry:
        parent = split(path)[0].rstrip("/") or "/"
        entry = await self.get(parent)
        if entry is None:
            raise NotFound(parent)
        if not entry.is_dir:
            raise NotADirectory(entry.lfn)
        require(caller, entry, WRITE, "write into")
        return entry

    async def mkdir(
        self, caller: Caller, path: str, parents: bool = False, owner: str = ""
    ) -> Entry:
        if path == "/":
            raise RequestError("/: file exists", 17)
        if parents:
            missing = []
            probe = path
            while probe != "/":
                found = await self.get(probe)
                if found is not None:
                    if not found.is_dir:
                        raise NotADirectory(found.lfn)
                    break
                missing.append(probe)
                probe = split(probe)[0].rstrip("/") or "/"
            if not missing:
                existing = await self.get(path)
                assert existing is not None
                return existing
            top = missing[-1]
            await self._parent_for_write(caller, top)
            entries = [self._new(caller, p, DIRECTORY, owner) for p in reversed(missing)]
            async with self._writing(path):
                await self.backend.insert(entries)
            return entries[-1]
        await self._parent_for_write(caller, path)
        entry = self._new(caller, path, DIRECTORY, owner)
        async with self._writing(path):
            await self.backend.insert([entry])
        return entry

    def _new(self, caller: Caller, path: str, kind: str, owner: str = "", **fields) -> Entry:
        d, n = split(path)
        who = owner or caller.login
        return Entry(d, n, kind, "755", who, who, ctime=now_ms(), **fields)

    async def touch(self, caller: Caller, path: str) -> Entry:
        entry = await self.get(path)
        if entry is not None:
            require(caller, entry, WRITE, "touch")
            async with self._writing(path):
                await self.backend.update(path, {"ctime": now_ms()})
            return entry
        await self._parent_for_write(caller, path)
        entry = self._new(caller, path, FILE, guid=new_guid())
        async with self._writing(path):
            await self.backend.insert([entry])
        return entry

    async def register(
        self, caller: Caller, path: str, size: int, md5: str, guid: str = "", jobid: int = 0
    ) -> Entry:
        """A new file's metadata (the commit of an upload, the output of a job)."""
        await self._parent_for_write(caller, path)
        entry = self._new(
            caller, path, FILE, size=size, md5=md5, guid=guid or new_guid(), jobid=jobid
        )
        async with self._writing(path):
            await self.backend.insert([entry])
        return entry

    async def rmdir(self, caller: Caller, path: str) -> None:
        entry = await self.directory(caller, path, READ, "read")
        if path == "/":
            raise PermissionDenied("Permission denied: cannot remove /")
        await self._parent_for_write(caller, path)
        if await self.backend.has_children(as_dir(path)):
            raise RequestError(f"{entry.lfn}: Directory not empty", 39)
        async with self._writing(path):
            await self.backend.delete([path])

    async def rm(self, caller: Caller, path: str, recursive: bool = False) -> int:
        entry = await self.stat(caller, path)
        if path == "/":
            raise PermissionDenied("Permission denied: cannot remove /")
        await self._parent_for_write(caller, path)
        if entry.is_dir:
            if not recursive:
                raise RequestError(f"{entry.lfn}: is a directory, use rm -r", 21)
            require(caller, entry, WRITE, "remove from")
            guids = await self._guids_under(as_dir(path))
        else:
            guids = [entry.guid] if entry.guid else []
        held = await self._hold(guids)
        try:
            async with self._writing(path):
                if entry.is_dir:
                    count = await self.backend.delete_tree(as_dir(path))
                else:
                    count = await self.backend.delete([path])
                orphans = await self._unreferenced(guids)
                for guid in orphans:  # their replica rows go inside the removal's write
                    await self.backend.delete_replicas(guid)
        except BaseException:
            self.removals.abandon(held.ids)
            raise
        release, drop = held.split(orphans)
        await self.removals.release(release)
        await self.removals.drop(drop)
        return count

    async def _guids_under(self, directory: str) -> list[str]:
        guids: set[str] = set()
        async for page in self.backend.find(FindQuery(base=directory, types=frozenset("fc"))):
            guids.update(e.guid for e in page if e.guid)
        return sorted(guids)

    async def _hold(self, guids: list[str]) -> Held:
        """The replicas of *guids*, held in the removal queue before a removal commits."""
        replicas = [r for g in guids for r in await self.backend.replicas(g)]
        ids = await self.removals.hold(replicas) if replicas else []
        return Held(ids, [r.guid for r in replicas] if ids else [])

    async def _unreferenced(self, guids: list[str]) -> set[str]:
        """Of *guids* (their LFNs just removed), those no LFN points to any more."""
        return {guid for guid in guids if not await self.backend.by_guid(guid)}

    # -- replicas (central's own: the data movers; no caller's permissions apply)
    async def _paths_of(self, guid: str) -> list[str]:
        return [e.path for e in await self.backend.by_guid(guid)]

    async def commit_replica(self, replica: Replica) -> bool:
        """Register a replica made by central (a transfer); once only (a replica the
        catalogue has is not added again). False when no LFN has the GUID any more."""
        paths = await self._paths_of(replica.guid)
        if not paths:
            return False
        if replica in await self.backend.replicas(replica.guid):
            return True
        async with self._writing(*paths):
            await self.backend.add_replicas([replica])
        return True

    async def drop_replica(self, guid: str, se: str) -> list[Replica]:
        """Unregister the replicas of *guid* on *se*; the ones dropped."""
        gone = [r for r in await self.backend.replicas(guid) if r.se == se]
        if gone:
            async with self._writing(*await self._paths_of(guid)):
                await self.backend.delete_replicas(guid, se)
        return gone

    async def forget_orphan(self, guid: str) -> None:
        """Drop the replica rows of a GUID no LFN points to (a removal cut short)."""
        if not await self.backend.by_guid(guid):
            async with self._writing():
                await self.backend.delete_replicas(guid)

    async def mv(self, caller: Caller, src: str, dst: str) -> Entry:
        entry = await self.stat(caller, src)
        target = await self.get(dst)
        if target is not None and target.is_dir:
            dst = dst.rstrip("/") + "/" + entry.name
        if dst == src or (entry.is_dir and dst.startswith(as_dir(src))):
            raise RequestError(f"cannot move {entry.lfn} into itself", EXIT_INVALID)
        await self._parent_for_write(caller, src)
        await self._parent_for_write(caller, dst)
        async with self._writing(src, dst):
            await self.backend.move(src, dst)
        moved = await self.get(dst)
        assert moved is not None
        return moved

    async def chmod(self, caller: Caller, path: str, mode: str) -> None:
        entry = await self.stat(caller, path)
        if not (is_admin(caller) or entry.owner == caller.login):
            raise PermissionDenied(f"Permission denied: {caller.login} does not own {entry.lfn}")
        async with self._writing(path):
            await self.backend.update(path, {"perm": valid_mode(mode)})

    async def chown(self, caller: Caller, path: str, owner: str, group: str = "") -> None:
        entry = await self.stat(caller, path)
        if not is_admin(caller):
            raise PermissionDenied(f"Permission denied: only an admin may chown {entry.lfn}")
        fields: dict[str, object] = {"owner": owner}
        if group:
            fields["gowner"] = group
        async with self._writing(path):
            await self.backend.update(path, fields)

    async def add_replica(self, caller: Caller, path: str, se: str, pfn: str) -> None:
        entry = await self.stat(caller, path)
        require(caller, entry, WRITE, "add a replica to")
        async with self._writing(path):
            await self.backend.add_replicas([Replica(guid=entry.guid, se=se, pfn=pfn)])

    # -- homes
    def home_ready(self, login: str) -> bool:
        """Whether this process has made (or found) *login*'s home already."""
        return login in self._homes_done

    async def ensure_home(self, login: str) -> None:
        """Create the user's home (and the directories above it, owned by admin)."""
        if login in self._homes_done:
            return
        home = self.home_of(login).rstrip("/")
        if await self.get(home) is None:
            missing = []
            probe = home
            while probe != "/" and await self.get(probe) is None:
                missing.append(probe)
                probe = split(probe)[0].rstrip("/") or "/"
            entries = []
            for p in reversed(missing):
                d, n = split(p)
                who = login if p == home else ADMIN
                entries.append(Entry(d, n, DIRECTORY, "755", who, who, ctime=now_ms()))
            with contextlib.suppress(RequestError):  # created meanwhile by another session
                async with self._writing(home):
                    await self.backend.insert(entries)
        self._homes_done.add(login)


def _check_directory(caller: Caller, entry: Entry, bit: int, action: str) -> None:
    if not entry.is_dir:
        raise NotADirectory(entry.lfn)
    require(caller, entry, bit, action)
