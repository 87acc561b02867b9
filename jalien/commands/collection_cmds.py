"""XML collections as JAliEn has them: ``toXml`` (LFNs -> AliEn's XML collection, printed
or written to the catalogue), ``listFilesFromCollection`` (a collection's LFNs), the
writer behind ``find -x`` and the reader behind a JDL's ``InputDataCollection``.

A collection is an ordinary catalogue file holding the XML (JAliEn uploads it like any file:
IOUtils.upload); central reads and writes it through the storage service's own paths
(access, the SE, commit), with the session's rights. The format is catalogue.collections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from jalien.auth.policy import Action
from jalien.catalogue import collections as xml
from jalien.catalogue.backend import NotFound
from jalien.catalogue.model import Entry
from jalien.catalogue.permissions import PermissionDenied
from jalien.catalogue.service import Catalogue
from jalien.commands.errno import EINVAL, EIO, ENODATA, ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.wire.errors import RequestError
from jalien.wire.messages import Record, Reply

ReadFile = Callable[[Session, str, int], Awaitable[bytes]]
WriteFile = Callable[[Session, str, bytes], Awaitable[str]]
SaveCollection = Callable[[Session, str, list[xml.CollectionFile], str], Awaitable[str]]
READ_LIMIT = xml.MAX_BYTES
TOXML_USAGE = "usage: toXml [-i] [-x xml_file_name] [-a] [-l list_from] [lfns]"
LIST_USAGE = "usage: listFilesFromCollection [-options] collection"


class WritesWith:
    """READ, or WRITE when one of *options* is given (``find -x``, ``toXml -x``): the
    policy's action for a command that writes only when asked to."""

    def __init__(self, *options: str) -> None:
        self.options = frozenset(options)
        self.actions = (Action.READ, Action.WRITE)

    def __call__(self, args: list[str]) -> Action:
        for arg in args:
            if arg == "--":
                break
            if arg.startswith("-") and arg.lstrip("-").partition("=")[0] in self.options:
                return Action.WRITE
        return Action.READ


def entry_file(entry: Entry) -> xml.CollectionFile:
    return xml.file_of(
        entry.path,
        guid=entry.guid,
        size=entry.size,
        md5=entry.md5,
        owner=entry.owner,
        gowner=entry.gowner,
        perm=entry.perm,
        type=entry.type,
        ctime_ms=entry.ctime,
        jobid=entry.jobid,
    )


def collection_path(spec: str) -> str:
    """An InputDataCollection value ('LF:/a/b.xml,nodownload') as an LFN."""
    spec = spec.strip()
    if spec.upper().startswith("LF:"):
        spec = spec[3:]
    return spec.split(",", 1)[0].strip()


class CollectionCommands:
    def __init__(
        self,
        table: CommandTable,
        catalogue: Catalogue,
        read_file: ReadFile | None = None,
        write_file: WriteFile | None = None,
    ) -> None:
        self.table = table
        self.cat = catalogue
        self.read_file = read_file
        self.write_file = write_file

    def register(self) -> None:
        self.table.add(
            "toXml",
            self.to_xml,
            "LFNs as an XML collection: toXml [-i] [-x xml_file_name] [-a] [-l list_from] [lfns]",
            action=WritesWith("x"),
            args=Args(flags="ia", valued=("x", "l")),
            prepares=True,
        )
        self.table.add(
            "listFilesFromCollection",
            self.list_files,
            "the files of a collection: listFilesFromCollection [-z] [-s] [-v] collection",
            action=Action.READ,
            args=Args(flags="zsv", min=1, max=1, usage=LIST_USAGE),
            prepares=True,
        )

    # -- helpers

    async def _read(self, session: Session, lfn: str) -> bytes:
        if self.read_file is None:
            raise jalien_error(EIO, f"cannot read {lfn}: no storage here")
        return await self.read_file(session, lfn, READ_LIMIT)

    async def load(self, session: Session, path: str, only_alien: bool = False) -> xml.Collection:
        """The collection at *path* (absolute): RequestError 1 if there is no such LFN or it
        is not a collection, EINVAL (22) if its content is not an AliEn XML collection."""
        entry = await self.cat.get(path)
        if entry is None:
            raise RequestError(f'No such LFN "{path}"', 1)
        if only_alien or entry.type != "f":
            # JAliEn keeps the members of a type 'c' entry in tables this catalogue has not
            if only_alien or entry.type == "c":
                raise RequestError(f'This entry is not an AliEn collection: "{path}"', 1)
            raise RequestError(f'Illegal entry type for "{path}": {entry.type}', 1)
        data = await self._read(session, path)
        try:
            return xml.parse(data)
        except xml.CollectionError as exc:
            raise jalien_error(EINVAL, f"{exc} ({path})") from None

    async def lfns_of(self, identity: Any, spec: str) -> list[str]:
        """The LFNs of the collection a JDL's InputDataCollection names, read with the
        submitter's rights (the job service calls this at submit)."""
        session = Session(identity=identity, cwd=identity.home or "/", site="", personality="")
        path = session.absolute(collection_path(spec))
        return (await self.load(session, path)).lfns

    async def ses_of(self, identity: Any, lfns: list[str]) -> dict[str, tuple[str, ...]]:
        """The SEs holding each LFN (Split=se at submit); an LFN not found or of no replica
        is left out."""
        found: dict[str, tuple[str, ...]] = {}

        async def one(lfn: str) -> None:
            try:
                _, replicas = await self.cat.whereis(identity, lfn)
            except (NotFound, PermissionDenied, RequestError, ValueError):
                return
            if replicas:
                found[lfn] = tuple(sorted({r.se for r in replicas}))

        for start in range(0, len(lfns), 64):
            await asyncio.gather(*(one(lfn) for lfn in lfns[start : start + 64]))
        return found

    async def save(
        self, session: Session, path: str, files: list[xml.CollectionFile], command: str
    ) -> str:
        """Write *files* as the XML collection *path* (absolute), replacing a file there."""
        if self.write_file is None:
            raise jalien_error(EIO, f"cannot write {path}: no storage here")
        text = xml.render(
            xml.Collection(name=path, files=files, command=command, creator=session.identity.login)
        )
        old = await self.cat.get(path)
        if old is not None:
            if old.is_dir:
                raise jalien_error(EINVAL, f"Cannot write to a directory: {old.lfn}")
            try:
                await self.cat.rm(session.identity, path)
            except PermissionDenied as exc:
                raise jalien_error(EIO, f"Upload failed: {exc}") from None
            except NotFound:
                pass
        return await self.write_file(session, path, text.encode())

    # -- commands
    async def list_files(self, session: Session, opts: Options) -> list[Record]:
        path = opts.args[0]
        if not path.startswith("/"):
            path = session.cwd + path
        coll = await self.load(session, path, only_alien="v" in opts)
        details = "z" in opts
        records: list[Record] = []
        lines: list[str] = []
        for f in coll.files:
            record: Record = {"guid": f.guid, "lfn": f.lfn}
            line = f"{f.guid} (from the file {f.lfn})"
            if details:
                record.update(size=f" {f.size}", md5=f" {f.md5}")
                line += f" (size = {f.size}) (md5 = {f.md5})"
            records.append(record)
            lines.append(line)
        if "s" in opts or not records:
            return records
        records[-1]["message"] = "\n".join(lines)
        return records

    async def to_xml(self, session: Session, opts: Options) -> Reply | list[Record]:
        target = session.absolute(opts.value("x")) if "x" in opts else ""
        append = "a" in opts
        if append and not target:
            raise jalien_error(
                EINVAL,
                "You have to pass -x as well if you want to append to an existing collection",
            )
        wanted: dict[str, None] = {}
        for listed in opts.values.get("l", []):
            list_path = session.absolute(listed)
            try:
                content = (await self._read(session, list_path)).decode()
            except (RequestError, UnicodeDecodeError):
                raise jalien_error(EIO, f"Could not get the contents of {listed}") from None
            for line in content.splitlines():
                if line.strip():
                    wanted[session.absolute(line.strip())] = None
        for arg in opts.args:
            wanted[session.absolute(arg)] = None
        if not wanted:
            raise jalien_error(ENODATA, "Empty content")
        old = xml.Collection()
        if append:
            try:
                old = await self.load(session, target)
            except RequestError as exc:
                if exc.exitcode == EINVAL:
                    raise jalien_error(EIO, f"Cannot read the content of {target}") from None
                raise jalien_error(
                    EIO, f"Could not load the content of {target} to append to"
                ) from None
        found = [e for e in await self.cat.stat_many(session.identity, list(wanted)) if e]
        note = ""
        if len(found) != len(wanted):
            note = f"Only {len(found)} out of {len(wanted)} files could be resolved"
            if "i" not in opts:
                raise jalien_error(ENOENT, note)
        if not found:
            raise jalien_error(ENODATA, "Empty collection")
        have = {f.lfn for f in old.files}
        added = [entry_file(e) for e in found if e.path not in have]
        if not added:
            message = (
                f"Collection was not modified, all {len(found)} entries were already included in it"
            )
            return [{"message": message}]
        files = [*old.files, *added]
        command = " ".join(_words(opts))
        results: list[Record] = []
        if not target:
            text = xml.render(
                xml.Collection(files=files, command=command, creator=session.identity.login)
            )
            results = [{"message": text}]
        else:
            if append:
                backup = target + "~"
                if await self.cat.get(backup) is not None:
                    await self.cat.rm(session.identity, backup)
                await self.cat.mv(session.identity, target, backup)
            try:
                await self.save(session, target, files, command)
            except RequestError as exc:
                raise jalien_error(EIO, f"Upload failed: {exc}") from None
        return Reply(results=results, error=note) if note else results


def _words(opts: Options) -> list[str]:
    """The command's words again (the <info command=...> of the collection)."""
    words = [f"-{flag}" for flag in sorted(opts.flags)]
    for name, values in opts.values.items():
        for value in values:
            words += [f"-{name}", value]
    return [*words, *opts.args]


__all__ = ["CollectionCommands", "SaveCollection", "WritesWith", "collection_path", "entry_file"]
