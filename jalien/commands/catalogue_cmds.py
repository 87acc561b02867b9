"""The file catalogue commands with JAliEn's names, options, result keys, messages and
exit codes (docs/catalogue-commands.md), so alien.py prints what it printed before."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jalien.auth.policy import Action
from jalien.catalogue.backend import FindQuery, NotFound
from jalien.catalogue.model import DIRECTORY, Entry
from jalien.catalogue.paths import as_dir
from jalien.catalogue.permissions import PermissionDenied
from jalien.catalogue.service import Catalogue, NotADirectory
from jalien.commands.collection_cmds import SaveCollection, WritesWith, entry_file
from jalien.commands.errno import (
    EINVAL,
    EIO,
    EISDIR,
    ENODATA,
    ENOENT,
    ENOLINK,
    ENOTDIR,
    EPERM,
    EREMOTEIO,
    jalien_error,
)
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.wire.errors import RequestError
from jalien.wire.listing_views import human_size, long_line, ls_fields, permissions
from jalien.wire.messages import DirEntry, Record, Reply

TYPE_WORD = {"f": "file", "d": "directory", "c": "collection", "l": "link"}
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def guid_time_ms(guid: str) -> int:
    """The creation time in a version-1 UUID, in milliseconds since the epoch."""
    if len(guid) == 36 and guid[14] == "1" and UUID_RE.fullmatch(guid):
        # the canonical form, read directly (several times cheaper than uuid.UUID): the
        # 60-bit time is time_hi (12 bits), time_mid (16), time_low (32), in one int()
        stamp = int(guid[15:18] + guid[9:13] + guid[:8], 16)
        return (stamp - 0x01B21DD213814000) // 10_000
    try:
        value = uuid.UUID(guid)
    except ValueError:
        return 0
    if value.version != 1:
        return 0
    return (value.time - 0x01B21DD213814000) // 10_000


def java_date(ms: int) -> str:
    return _java_second(ms // 1000)


@functools.lru_cache(maxsize=4096)  # files of a directory tend to share seconds
def _java_second(second: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(second))


def home_preparer(catalogue: Catalogue) -> Callable[[Session], Awaitable[None] | None]:
    """The dispatcher's session preparation: a session's home exists before its first
    catalogue command (made once per login and process; None when it is already known)."""

    def prepare(session: Session) -> Awaitable[None] | None:
        login = session.identity.login
        return None if catalogue.home_ready(login) else catalogue.ensure_home(login)

    return prepare


class CatalogueCommands:
    """Binds the catalogue service to the command table; holds no state of its own."""

    def __init__(self, table: CommandTable, catalogue: Catalogue) -> None:
        self.table = table
        self.cat = catalogue
        # find -x: writes the XML collection (commands.collection_cmds, set by the role)
        self.save_collection: SaveCollection | None = None

    def register(self) -> None:
        add = self.table.add

        def read(name: str, fn: Any, summary: str, args: Args | None = None) -> None:
            add(name, fn, summary, action=Action.READ, args=args, prepares=True)

        def write(name: str, fn: Any, summary: str, args: Args | None = None) -> None:
            add(name, fn, summary, action=Action.WRITE, args=args, prepares=True)

        read(
            "ls",
            self.ls,
            "list a directory: ls [-l -a -F -b -c -H] [path...]",
            Args(flags=("l", "a", "F", "b", "c", "H", "bulk")),
        )
        read("cd", self.cd, "change directory: cd [dir]")
        write("mkdir", self.mkdir, "make directories: mkdir [-p] dir...", Args(flags="ps", min=1))
        write(
            "rmdir", self.rmdir, "remove empty directories: rmdir dir...", Args(flags="pvs", min=1)
        )
        write("rm", self.rm, "remove entries: rm [-r] [-f] lfn...", Args(flags="frRiv", min=1))
        write("mv", self.mv, "move or rename: mv src... target", Args(min=2))
        write(
            "touch",
            self.touch,
            "create an empty file or update its time: touch lfn...",
            Args(min=1, words=True),
        )
        read("stat", self.stat, "an entry's metadata: stat lfn|guid...", Args(flags="v", min=1))
        read(
            "type",
            self.type,
            "file, directory or collection: type lfn",
            Args(flags="sz", min=1, max=1),
        )
        add(
            "find",
            self.find,
            "search below a directory: find [-d -w -f -r -l N -o N -x coll.xml] dir pat",
            action=WritesWith("x"),  # -x writes the XML collection
            args=Args(flags="asdwhfrcyz", valued=("j", "l", "o", "x"), min=1),
            prepares=True,
        )
        read(
            "whereis",
            self.whereis,
            "replicas of a file: whereis [-g] [-r] lfn|guid",
            Args(flags="grl", min=1),
        )
        read(
            "lfn2guid",
            self.lfn2guid,
            "the GUID of a file: lfn2guid lfn",
            Args(min=1, max=1, words=True, usage="Command requires exactly one argument"),
        )
        read(
            "guid2lfn",
            self.guid2lfn,
            "the LFN of a GUID: guid2lfn guid...",
            Args(min=1, words=True),
        )
        read("du", self.du, "disk usage: du [-n] [-s] path...", Args(flags="ncs"))
        write(
            "chown",
            self.chown,
            "change owner: chown [-R] user[.group] path...",
            Args(flags="R", min=2, usage="No user or file entered"),
        )
        write(
            "chmod",
            self.chmod,
            "change permissions: chmod [-R] octal path...",
            Args(flags="R", min=2, usage="No permissions or file entered"),
        )
        read(
            "md5sum", self.md5sum, "checksums of files: md5sum lfn|guid...", Args(min=1, words=True)
        )
        read("size", self.size, "the size of files: size lfn...", Args(min=1, words=True))
        read(
            "listSEs",
            self.list_ses,
            "storage elements: listSEs [-qos a,b] [name...]",
            Args(flags="s", valued=("qos",)),
        )

    # -- helpers

    async def _expand(self, session: Session, path: str) -> list[str]:
        return await self.cat.expand(session.identity, session.absolute(path))

    # -- navigation
    async def cd(self, session: Session, args: list[str]) -> Reply:
        words = args
        target = session.absolute(words[0]) if words else session.identity.home.rstrip("/")
        entry = await self.cat.get(target or "/")
        if entry is None:
            raise jalien_error(ENOENT)
        if not entry.is_dir:
            raise jalien_error(ENOTDIR, words[0])
        session.previous_cwd, session.cwd = session.cwd, as_dir(target)
        return Reply()

    async def ls(self, session: Session, opts: Options) -> AsyncIterator[Reply]:
        flags = "".join(sorted(opts.flags - {"bulk"}))
        view = "ls:" + flags
        fields = ls_fields(flags)
        hide_dot, skip_type = "a" not in opts, DIRECTORY if "b" in opts else ""
        paths = opts.args or [session.cwd]
        missing: list[str] = []
        for raw in paths:
            expanded = await self._expand(session, raw)
            if not expanded:
                missing.append(raw)
                continue
            for path in expanded:
                entry = await self.cat.get(path)
                if entry is None:
                    missing.append(raw)
                    continue
                if not entry.is_dir:
                    row = _row(entry)
                    yield Reply(entries=[row], view=view, metadata={"_listing": entry.dir})
                    continue
                metadata = {"_listing": as_dir(path)}
                # pages from SQLite encoded already: the binary channel sends them as they
                # are, the JSON edge writes ls -l's records from them (listing_views)
                try:
                    pages = self.cat.packed_listing(
                        session.identity, path, entry, fields, hide_dot, skip_type
                    )
                    async for page in pages:
                        yield Reply(entries=page.rows, view=view, metadata=metadata)
                except PermissionDenied as exc:
                    raise jalien_error(EPERM, str(exc)) from None
        if missing:
            raise jalien_error(ENOENT, ", ".join(missing))

    # -- changes
    async def mkdir(self, session: Session, opts: Options) -> Reply:
        for raw in opts.args:
            path = session.absolute(raw)
            existing = await self.cat.get(path)
            if existing is not None and existing.is_dir:
                continue
            try:
                await self.cat.mkdir(session.identity, path, parents="p" in opts)
            except RequestError:
                what = "(or non-existing parents)" if "p" in opts else ""
                raise jalien_error(
                    ENOENT, f"Could not create directory {what}: {raw}".replace("  ", " ")
                ) from None
        return Reply()

    async def rmdir(self, session: Session, opts: Options) -> Reply:
        for raw in opts.args:
            path = session.absolute(raw)
            entry = await self.cat.get(path)
            if entry is None:
                raise jalien_error(ENOENT, raw)
            if not entry.is_dir:
                raise jalien_error(ENOTDIR, raw)
            self._not_cwd_or_home(session, path)
            try:
                await self.cat.rmdir(session.identity, path)
            except PermissionDenied:
                raise jalien_error(EPERM, raw) from None
            except RequestError:
                raise jalien_error(EIO, f"Could not remove directory: {raw}") from None
        return Reply()

    def _not_cwd_or_home(self, session: Session, path: str) -> None:
        if session.cwd.startswith(as_dir(path)):
            raise jalien_error(EINVAL, "Cannot delete the directory you are in")
        if session.identity.home.startswith(as_dir(path)):
            raise jalien_error(EINVAL, "Cannot delete your home dir")

    async def rm(self, session: Session, opts: Options) -> Reply:
        recursive = "r" in opts or "R" in opts
        error: RequestError | None = None
        for raw in opts.args:
            paths = await self._expand(session, raw)
            if not paths:
                error = jalien_error(ENOENT, raw)
                continue
            for path in paths:
                try:
                    self._not_cwd_or_home(session, path)
                except RequestError as exc:
                    error = exc
                    continue
                try:
                    await self.cat.rm(session.identity, path, recursive=recursive)
                except NotFound:
                    error = jalien_error(ENOENT, path)
                except RequestError:
                    error = jalien_error(EIO, f"Failed to remove [{path}]")
        if error is not None:
            raise error
        return Reply()

    async def mv(self, session: Session, opts: Options) -> Reply:
        *sources, target_raw = opts.args
        target = session.absolute(target_raw)
        target_entry = await self.cat.get(target)
        if len(sources) > 1 or target_raw.endswith("/"):
            if target_entry is None:
                await self.cat.mkdir(session.identity, target, parents=True)
            elif not target_entry.is_dir:
                raise jalien_error(EINVAL, f"Target must be a directory: {target}")
        for raw in sources:
            src = session.absolute(raw)
            entry = await self.cat.get(src)
            if entry is None:
                raise jalien_error(EINVAL, f"Source cannot be found: {src}")
            dest = target
            current = await self.cat.get(target)
            if current is not None and current.is_dir:
                dest = target.rstrip("/") + "/" + entry.name
            elif current is not None and entry.is_dir:
                raise jalien_error(
                    EINVAL, f"Cannot move the directory {src} onto the file {target}"
                )
            elif current is not None:
                raise jalien_error(EIO, f"Failed to move {src} to {target}: target exists")
            try:
                await self.cat.mv(session.identity, src, dest)
            except RequestError:
                raise jalien_error(EIO, f"Failed to move {src} to {dest}") from None
        return Reply()

    async def touch(self, session: Session, opts: Options) -> Reply:
        args = opts.args
        for raw in args:
            path = session.absolute(raw)
            try:
                entry = await self.cat.get(path)
                if entry is None:
                    await self.cat.register(session.identity, path, 0, EMPTY_MD5)
                else:
                    await self.cat.touch(session.identity, path)
            except RequestError:
                raise jalien_error(EREMOTEIO, f"Failed to touch the LFN: {path}") from None
        return Reply()

    async def chown(self, session: Session, opts: Options) -> Reply:
        async def change(path: str, spec: str) -> None:
            owner, _, group = spec.partition(".")
            await self.cat.chown(session.identity, path, owner, group)

        return await self._change_all(session, opts, "chown", change)

    async def chmod(self, session: Session, opts: Options) -> Reply:
        async def change(path: str, mode: str) -> None:
            await self.cat.chmod(session.identity, path, mode)

        return await self._change_all(session, opts, "chmod", change)

    async def _change_all(
        self,
        session: Session,
        opts: Options,
        verb: str,
        change: Callable[[str, str], Awaitable[None]],
    ) -> Reply:
        """chown/chmod: SPEC path... [-R], JAliEn's EIO '<path>: unable to <verb>' on failure."""
        spec = opts.args[0]
        for raw in opts.args[1:]:
            for path in await self._targets(session, raw, "R" in opts):
                try:
                    await change(path, spec)
                except RequestError as exc:
                    if exc.exitcode == EINVAL:
                        raise jalien_error(EINVAL, str(exc)) from None
                    raise jalien_error(EIO, f"{path}: unable to {verb}") from None
        return Reply()

    async def _targets(self, session: Session, raw: str, recursive: bool) -> list[str]:
        paths = await self._expand(session, raw)
        if not paths:
            raise jalien_error(ENOENT, raw)
        out = list(paths)
        if recursive:
            for path in paths:
                entry = await self.cat.get(path)
                if entry is not None and entry.is_dir:
                    query = FindQuery(base=as_dir(path), types=frozenset("fdcl"))
                    async for page in self.cat.find(session.identity, query):
                        out.extend(e.path for e in page)
        return out

    # -- information
    async def stat(self, session: Session, opts: Options) -> list[Record] | Reply:
        records: list[Record] = []
        error: RequestError | None = None
        paths = [session.absolute(a) for a in opts.args]
        entries = await self.cat.stat_many(session.identity, paths)
        for raw, entry in zip(opts.args, entries, strict=True):
            if entry is None and UUID_RE.fullmatch(raw):
                by_guid = await self.cat.by_guid(session.identity, raw)
                entry = by_guid[0] if by_guid else None
            if entry is None:
                error = jalien_error(ENOENT, raw)
                continue
            records.append(_stat_record(entry))
        if error is not None and not records:
            raise error
        if error is not None:
            return Reply(results=records, exitcode=error.exitcode, error=str(error))
        return records

    async def type(self, session: Session, opts: Options) -> list[Record]:
        entry = await self.cat.get(session.absolute(opts.args[0]))
        if entry is None:
            raise jalien_error(ENOENT, opts.args[0])
        word = TYPE_WORD.get(entry.type, "file")
        return [{"lfn": entry.lfn, "type": word, "message": word}]

    async def find(self, session: Session, opts: Options) -> AsyncIterator[list[Record]]:
        words = opts.args
        if not words:
            raise jalien_error(EINVAL, "Command requires an argument")
        if len(words) == 1:
            if "*" not in words[0]:
                raise jalien_error(
                    EINVAL,
                    f"I can't infer the search pattern from `{words[0]}`, please pass the base "
                    "directory and the search pattern separately",
                )
            head, _, _ = words[0][: words[0].index("*")].rpartition("/")
            words = [head or "/", words[0][len(head) + 1 :]]
        base_raw, pattern = words[0], words[1]
        base = session.absolute(base_raw)
        entry = await self.cat.get(base)
        if entry is None or not entry.is_dir:
            raise jalien_error(ENOTDIR, base_raw)
        base_dir = as_dir(base)
        types = frozenset("fdcl") if "d" in opts else frozenset("fcl")
        limit, offset = opts.number("l"), opts.number("o")
        if "r" in opts:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise jalien_error(EINVAL, f"bad regular expression: {exc}") from None
            query = FindQuery(
                base=base_dir,
                lfn_regex="^" + re.escape(base_dir) + pattern,
                types=types,
                limit=limit + offset if limit > 0 else 0,
                jobid=opts.number("j"),
            )
        else:
            like = pattern.replace("*", "%")
            if pattern.startswith("/"):
                like = like.lstrip("/")
            like = base_dir + ("" if like.startswith("%") else "%") + like
            like += "" if like.endswith("%") else "%"
            query = FindQuery(
                base=base_dir,
                lfn_like=like,
                types=types,
                limit=limit + offset if limit > 0 else 0,
                jobid=opts.number("j"),
            )
        # JAliEn: -y searches OCDB metadata tag tables ("tag:condition" after the pattern)
        # for the biggest version of each file; this catalogue has no tag tables, so like
        # JAliEn for a path without them, nothing matches
        if "y" in opts and ":" not in " ".join(words[2:]):
            raise jalien_error(EINVAL, "-y needs a metadata query: find -y dir pat tag:cond")
        if "x" in opts:
            await self._find_to_collection(session, opts, query, base_dir, pattern)
            return
        if "y" in opts:
            if "c" in opts:
                yield [{"message": "Found 0 maching entries"}]
            return
        wide, full, human = "w" in opts, "f" in opts, "h" in opts
        skipped = 0
        count = 0
        async for page in self.cat.find(session.identity, query):
            if skipped < offset:
                drop = min(offset - skipped, len(page))
                page = page[drop:]
                skipped += drop
            if page:
                count += len(page)
                yield [_find_record(e, wide, full, human) for e in page]
        if "c" in opts:
            yield [{"message": f"Found {count} maching entries"}]

    async def _find_to_collection(
        self, session: Session, opts: Options, query: FindQuery, base_dir: str, pattern: str
    ) -> None:
        """find -x NAME: the matches (at most -l of them; -o applies to printed results
        only, as in JAliEn) written as the XML collection NAME; find answers nothing."""
        if self.save_collection is None:
            raise jalien_error(EIO, "find -x: no storage to write the collection to")
        target = session.absolute(opts.value("x"))
        limit = opts.number("l")
        found: list[Entry] = []
        if "y" not in opts:
            async for page in self.cat.find(session.identity, query):
                found.extend(page)
        if limit > 0:
            found = found[:limit]
        command = f"find {base_dir} {pattern} -x {target}"
        await self.save_collection(session, target, [entry_file(e) for e in found], command)

    async def whereis(self, session: Session, opts: Options) -> list[Record]:
        raw = opts.args[0]
        entry: Entry | None = None
        if "g" in opts:
            if not UUID_RE.fullmatch(raw):
                raise jalien_error(EINVAL, f"This is not a valid GUID: {raw}")
            found = await self.cat.by_guid(session.identity, raw)
            if not found:
                raise jalien_error(ENOENT, f"GUID {raw} does not exist in the catalogue")
            entry = found[0]
        else:
            entry = await self.cat.get(session.absolute(raw))
            if entry is None and UUID_RE.fullmatch(raw):
                found = await self.cat.by_guid(session.identity, raw)
                entry = found[0] if found else None
            if entry is None:
                raise jalien_error(ENOENT, raw)
        if entry.type != "f":
            raise jalien_error(EINVAL, f"The path you indicated is not a file: {raw}")
        _, replicas = await self.cat.whereis(session.identity, entry.path)
        if not replicas:
            raise jalien_error(ENOLINK, f"GUID {entry.guid} has no replicas, this is a lost file")
        numbers = {se.name.upper(): se.number for se in await self.cat.list_ses()}
        header = f"the file {entry.name} is in\n\n"
        records: list[Record] = []
        for i, replica in enumerate(replicas):
            line = f"\t SE => {replica.se:<30} pfn => {replica.pfn}\n"
            record: Record = {
                "seName": replica.se,
                "pfn": replica.pfn,
                "message": (header if i == 0 else "") + line,
            }
            number = numbers.get(replica.se.upper(), 0)
            if number > 0:
                record["seNumber"] = str(number)
            records.append(record)
        return records

    async def lfn2guid(self, session: Session, opts: Options) -> list[Record]:
        args = opts.args
        entry = await self.cat.get(session.absolute(args[0]))
        if entry is None:
            raise jalien_error(ENOENT, args[0])
        if entry.is_dir:
            raise jalien_error(EISDIR, entry.lfn)
        if not entry.guid:
            raise jalien_error(ENODATA, f"Could not get the GUID for [{entry.lfn}].")
        return [
            {
                "lfn": entry.lfn,
                "type": entry.type,
                "guid": entry.guid,
                "message": f"{entry.lfn:<80}{entry.guid}",
            }
        ]

    async def guid2lfn(self, session: Session, opts: Options) -> list[Record] | Reply:
        args = opts.args
        records: list[Record] = []
        error: RequestError | None = None
        for raw in args:
            guids = UUID_RE.findall(raw)
            if not guids:
                raise jalien_error(EINVAL, f"No GUID in this string: {raw}")
            for guid in guids:
                found = await self.cat.by_guid(session.identity, guid)
                if not found:
                    records.append({"guid": guid, "error": "No GUID"})
                    error = jalien_error(ENOENT, f"GUID cannot be found in the database: {guid}")
                    continue
                lfn = found[0].lfn
                records.append({"guid": guid, "lfn": lfn, "message": f"{guid:<40}{lfn}"})
        if error is not None:
            return Reply(results=records, exitcode=error.exitcode, error=str(error))
        return records

    async def du(self, session: Session, opts: Options) -> list[Record]:
        records: list[Record] = []
        for raw in opts.args or [session.cwd]:
            paths = await self._expand(session, raw)
            if not paths:
                raise jalien_error(ENOENT, raw)
            for path in dict.fromkeys(paths):
                entry = await self.cat.get(path)
                if entry is None:
                    raise jalien_error(ENOENT, raw)
                if entry.is_dir:
                    usage = await self.cat.du(session.identity, path)
                    files, folders, size = usage.files, usage.directories, usage.size
                else:
                    files, folders, size = 1, 0, entry.size
                shown = f"{size} bytes" if "n" in opts else human_size(size)
                lines = [entry.lfn]
                if folders:
                    lines.append(f"  Folders: {folders}")
                lines.append(f"  Files: {files} of an apparent size of {shown}")
                records.append(
                    {
                        "entry": entry.lfn,
                        "folders": str(folders),
                        "logical_files_count": str(files),
                        "logical_files_size": str(size),
                        "message": "\n".join(lines),
                    }
                )
        return records

    async def md5sum(self, session: Session, opts: Options) -> list[Record]:
        args = opts.args
        lines, records = [], []
        for raw in args:
            entry = await self.cat.get(session.absolute(raw))
            if entry is None and UUID_RE.fullmatch(raw):
                found = await self.cat.by_guid(session.identity, raw)
                entry = found[0] if found else None
            if entry is None:
                raise jalien_error(ENOENT, raw)
            if entry.type != "f":
                raise jalien_error(EINVAL, f"This entry is not a file: {raw}")
            if not entry.md5:
                raise jalien_error(
                    ENODATA, f"This file doesn't have a valid associated MD5 checksum: {raw}"
                )
            lines.append(f"{entry.md5}\t{raw}")
            records.append({"lfn": entry.lfn, "md5": entry.md5})
        records[0]["message"] = "\n".join(lines)
        return records

    async def size(self, session: Session, opts: Options) -> list[Record]:
        """Not a JAliEn command: the size of files (and of directories' contents)."""
        args = opts.args
        records: list[Record] = []
        for raw in args:
            path = session.absolute(raw)
            entry = await self.cat.get(path)
            if entry is None:
                raise jalien_error(ENOENT, raw)
            size = (await self.cat.du(session.identity, path)).size if entry.is_dir else entry.size
            records.append(
                {
                    "lfn": entry.lfn,
                    "size": str(size),
                    "message": f"{entry.lfn}: {size} bytes ({human_size(size)})",
                }
            )
        return records

    async def list_ses(self, session: Session, opts: Options) -> list[Record]:
        wanted = {n.upper() for n in opts.args}
        groups = [set(v.lower().split(",")) for v in opts.values.get("qos", [])]
        records: list[Record] = []
        ses = sorted(await self.cat.list_ses(), key=lambda se: se.name.upper())
        for se in ses:
            if "::" not in se.name or (wanted and se.name.upper() not in wanted):
                continue
            qos = {q.lower() for q in se.qos}
            if groups and not any(g <= qos for g in groups):
                continue
            free = max(se.capacity - se.used, 0)
            records.append(
                {
                    "seName": se.name,
                    "seNumber": str(se.number),
                    "totalSpace": str(se.capacity),
                    "usedSpace": str(se.used),
                    "freeSpace": str(free),
                    "fileCount": "0",
                    "demoteRead": "0.0",
                    "demoteWrite": "0.0",
                    "qos": ",".join(sorted(qos)),
                    "endpointUrl": se.url,
                    "message": f"{se.name:>30} {se.number:3d}   {human_size(se.capacity):>8}  "
                    f"{human_size(se.used):>8}  {human_size(free):>8}   "
                    f"{', '.join(sorted(qos))}\t{se.url}",
                }
            )
        if records:
            header = "SE name\t ID\t   Total  \t    Used  \t    Free  \tQoS\t  Endpoint URL\n"
            records[0]["message"] = header + records[0]["message"]
        return records


def _row(entry: Entry) -> DirEntry:
    return DirEntry(
        entry.name,
        entry.type,
        entry.perm,
        entry.owner,
        entry.gowner,
        entry.size,
        entry.ctime,
        entry.md5,
        entry.guid,
        entry.jobid,
    )


def _stat_record(entry: Entry) -> Record:
    lfn, ctime = entry.lfn, str(entry.ctime)
    record: Record = {
        "lfn": lfn,
        "type": entry.type,
        "owner": entry.owner,
        "gowner": entry.gowner,
        "perm": entry.perm,
        "ctime": ctime,
    }
    message = (
        f"File: {lfn}\nType: {entry.type}\nOwner: {entry.owner}:{entry.gowner}\n"
        f"Permissions: {entry.perm}\nLast change: {java_date(entry.ctime)} ({ctime})"
    )
    if entry.jobid > 0:
        record["jobid"] = str(entry.jobid)
        message += f"\nJob ID: {entry.jobid}"
    if not entry.is_dir:
        size = str(entry.size)
        record["size"] = size
        record["md5"] = entry.md5
        message += f"\nSize: {size} ({human_size(entry.size)})\nMD5: {entry.md5}"
        if entry.guid:
            mtime = guid_time_ms(entry.guid)
            record["guid"] = entry.guid
            record["mtime"] = str(mtime)
            message += f"\nGUID: {entry.guid}\n\tGUID created on {java_date(mtime)} ({mtime})"
    record["message"] = message
    return record


def _find_record(entry: Entry, wide: bool, full: bool, human: bool) -> Record:
    lfn = entry.lfn
    record: Record = {"lfn": lfn}
    if wide or full:
        record.update(
            perm=entry.perm,
            owner=entry.owner,
            gowner=entry.gowner,
            size=str(entry.size),
            ctime=str(entry.ctime),
            guid=entry.guid,
        )
    if full:
        record.update(
            name=entry.name,
            dir=entry.dir,
            md5=entry.md5,
            jobid=str(entry.jobid),
            type=entry.type,
            broken="0",
            replicated="0",
            expiretime="",
            aclId="",
            entryId="",
            guidtime="",
        )
    if wide:
        record["message"] = long_line(_row(entry), lfn, human)
    else:
        record["message"] = lfn
    return record


__all__ = ["CatalogueCommands", "NotADirectory", "permissions"]
