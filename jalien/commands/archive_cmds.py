"""``archiveList ARCHIVE...``: the members of ZIP archives (a job's OutputArchive) as
JAliEn lists them. JAliEn registers each member as a GUID of its own whose replica points
into the archive; here members are not registered, so the archive's central directory is
read (ranged reads, storage.archive) and a member's GUID is a name-based UUID derived from
the archive's GUID and the member's name (stable, never stored)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from jalien.auth.policy import Action
from jalien.commands.errno import ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.storage.archive import ArchiveError, Member
from jalien.wire.errors import RequestError
from jalien.wire.listing_views import human_size
from jalien.wire.messages import Record, Reply
from jalien.wire.site_api import AccessGrant

MembersOf = Callable[[Session, str], Awaitable[tuple[AccessGrant, list[Member]]]]
USAGE = "usage: archiveList <filename1> [<or uuid>] ..."
NOT_AN_ARCHIVE = "  there are no files pointing to this entry, looks like this is not a ZIP archive"


def member_guid(archive_guid: str, name: str) -> str:
    try:
        space = uuid.UUID(archive_guid)
    except ValueError:
        space = uuid.NAMESPACE_URL
    return str(uuid.uuid5(space, name))


class ArchiveCommands:
    def __init__(self, table: CommandTable, members_of: MembersOf) -> None:
        self.table = table
        self.members_of = members_of

    def register(self) -> None:
        self.table.add(
            "archiveList",
            self.archive_list,
            "the members of ZIP archives: archiveList <lfn|guid>...",
            action=Action.READ,
            args=Args(flags="v", min=1, usage=USAGE),
            prepares=True,
        )

    async def archive_list(self, session: Session, opts: Options) -> Reply | list[Record]:
        records: list[Record] = []
        error: RequestError | None = None
        for name in opts.args:
            try:
                grant, members = await self.members_of(session, name)
            except RequestError as exc:
                if exc.exitcode == ENOENT:
                    exc = jalien_error(ENOENT, f"{name} does not exist in the catalogue")
                error = exc
                continue
            except ArchiveError:
                members = []
                grant = None
            if grant is None or not members:
                records.append({"message": f"Content of: {name}\n{NOT_AN_ARCHIVE}"})
                continue
            head = f"Content of: {grant.lfn} ({grant.size} bytes = {human_size(grant.size)})"
            for i, m in enumerate(members):
                guid = member_guid(grant.guid, m.name)
                share = m.size * 100.0 / grant.size if grant.size else 0.0
                line = (
                    f"  {m.name}\t , guid {guid} ({m.size} bytes = {human_size(m.size)} = "
                    f"{share:.2f}% of the archive)"
                )
                records.append(
                    {
                        "archive_guid": grant.guid,
                        "archive_name": grant.lfn,
                        "member_guid": guid,
                        "member_size": str(m.size),
                        "message": f"{head}\n{line}" if i == 0 else line,
                    }
                )
        if error is not None:
            if not records:
                raise error
            return Reply(results=records, exitcode=error.exitcode, error=str(error))
        return records


__all__ = ["ArchiveCommands", "member_guid"]
