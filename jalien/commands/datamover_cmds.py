"""The data movers' commands as JAliEn has them: ``mirror`` (queue copies of a file, a
directory or an XML collection to an SE), ``listTransfer`` (the transfer queue),
``deleteMirror`` (drop one replica: unregistered, then removed from its SE), and the
admin's ``listDeletions`` (what is left to remove from SEs and what could not be).
docs/datamovers.md."""

from __future__ import annotations

import time

from jalien.auth.policy import Action as A
from jalien.catalogue.service import Catalogue
from jalien.commands.errno import EINVAL, ENOENT, jalien_error
from jalien.commands.options import Options
from jalien.commands.session import Session
from jalien.commands.table import Args, CommandTable
from jalien.datamovers.deletion import DeletionService
from jalien.datamovers.model import DELETION_STATES, TRANSFER_STATES, Deletion, Transfer
from jalien.datamovers.transfer import TransferService
from jalien.wire.messages import Record

MIRROR_USAGE = "mirror [-try <attempts>] [-r <source SE to remove>] <lfn|dir|collection> <SE>"
LIST_USAGE = (
    "listTransfer [-status <status>] [-user <user>] [-id <id>] [-destination <SE>] "
    "[-list=<count>] [-desc] [-verbose]"
)


def _header(verbose: bool) -> str:
    return "TransferId\t   Status\t   User\t\tDestination      \tSize\t\tAttempts" + (
        "\t\tError reason" if verbose else ""
    )


def _line(t: Transfer, verbose: bool) -> str:
    line = f"{t.id}\t   {t.state}\t   {t.user}\t{t.destination}{t.size:14d}\t\t\t{t.attempts}"
    return line + (f"\t{t.reason}" if verbose and t.reason else "")


def _record(t: Transfer) -> Record:
    return {
        "transferId": str(t.id),
        "status": t.state,
        "user": t.user,
        "lfn": t.lfn,
        "destination": t.destination,
        "source": t.source,
        "size": str(t.size),
        "attempts": str(t.attempts),
        "maxAttempts": str(t.max_attempts),
        "reason": t.reason,
        "received": str(int(t.created)),
        "updated": str(int(t.updated)),
    }


def _deletion_record(d: Deletion) -> Record:
    return {
        "id": str(d.id),
        "status": d.state,
        "se": d.se,
        "pfn": d.pfn,
        "guid": d.guid,
        "attempts": str(d.attempts),
        "nextTry": str(int(d.next_try)),
        "error": d.error,
    }


class DataMoverCommands:
    def __init__(
        self,
        table: CommandTable,
        catalogue: Catalogue,
        transfers: TransferService,
        deletions: DeletionService,
    ) -> None:
        self.table = table
        self.cat = catalogue
        self.transfers = transfers
        self.deletions = deletions

    def register(self) -> None:
        add = self.table.add
        add(
            "mirror", self.mirror, "copy a file (or a directory's, a collection's) to an SE",
            action=A.WRITE, prepares=True,
            args=Args(valued=("try", "r"), min=2, max=2, usage=MIRROR_USAGE),
        )  # fmt: skip
        add(
            "listTransfer", self.list_transfer, "the transfer queue (mirror)", action=A.READ,
            args=Args(
                flags=("verbose", "desc", "summary", "all_status", "jdl", "master"),
                valued=("status", "user", "id", "list", "destination"), max=0, usage=LIST_USAGE,
            ),
        )  # fmt: skip
        add(
            "deleteMirror", self.delete_mirror, "remove one replica of a file: deleteMirror lfn SE",
            action=A.WRITE, prepares=True,
            args=Args(min=2, max=2, usage="deleteMirror <lfn> <SE>"),
        )  # fmt: skip
        add(
            "listDeletions", self.list_deletions,
            "PFNs still to remove from SEs, and those that could not be (admin)",
            action=A.ADMIN,
            args=Args(
                flags=("retry", "summary"), valued=("status", "se", "list"), max=0,
                usage="listDeletions [-status HELD|QUEUED|FAILED] [-se SE] [-list N] "
                "[-summary] [-retry]",
            ),
        )  # fmt: skip

    async def mirror(self, session: Session, opts: Options) -> list[Record]:
        raw, se = opts.args
        attempts = opts.number("try", 5)
        who = session.identity
        paths = await self.cat.expand(who, session.absolute(raw))
        if not paths:
            raise jalien_error(ENOENT, raw)
        lines: list[str] = []
        records: list[Record] = []
        for path in paths:
            for q in await self.transfers.mirror(
                who, path, se, attempts=attempts,
                remove_source=opts.value("r"),
            ):  # fmt: skip
                if q.id:
                    lines.append(f"{q.lfn}: queued transfer ID {q.id}")
                    records.append({"lfn": q.lfn, "se": se, "transferId": str(q.id)})
                else:
                    lines.append(f"{q.lfn}: {q.error}")
        return [{"message": "\n".join(lines)}, *records]

    async def list_transfer(self, session: Session, opts: Options) -> list[Record]:
        state = opts.value("status").upper()
        if state and state not in TRANSFER_STATES:
            raise jalien_error(EINVAL, f"unknown status {state} ({', '.join(TRANSFER_STATES)})")
        count = opts.number("list", -1)
        if count < -1:
            raise jalien_error(EINVAL, "Please provide a valid number for -list argument")
        verbose = "verbose" in opts
        lines = [_header(verbose)]
        found: list[Transfer] = []
        if count != 0:
            found = await self.transfers.listing(
                state=state, user=opts.value("user"), transfer_id=opts.number("id"),
                destination=opts.value("destination"), limit=max(count, 0),
                descending="desc" in opts,
            )  # fmt: skip
        lines.extend(_line(t, verbose) for t in found)
        lines += ["", f"Total: {len(found)} transfers"]
        return [{"message": "\n".join(lines)}, *(_record(t) for t in found)]

    async def delete_mirror(self, session: Session, opts: Options) -> list[Record]:
        raw, se = opts.args
        who = session.identity
        path = session.absolute(raw)
        dropped = await self.transfers.delete_mirror(who, path, se)
        names = ", ".join(sorted({r.se for r in dropped}))
        text = f"{path}: the replica on {names} was removed (its PFN is queued for deletion)"
        return [{"message": text}]

    async def list_deletions(self, session: Session, opts: Options) -> list[Record]:
        if "retry" in opts:
            moved = await self.deletions.retry()
            return [{"message": f"{moved} failed deletions queued again"}]
        state = opts.value("status").upper()
        if state and state not in DELETION_STATES:
            raise jalien_error(EINVAL, f"unknown status {state} ({', '.join(DELETION_STATES)})")
        counts = await self.deletions.counts()
        summary = (
            f"held: {counts.held}, queued: {counts.queued}, failed: {counts.failed}; "
            f"deleted since start: {counts.deleted}"
        )
        if "summary" in opts:
            return [{"message": summary}]
        rows = await self.deletions.pending(state, opts.value("se"), opts.number("list", 0))
        now = time.time()
        lines = [f"{'Id':>8}  {'Status':<7} {'SE':<24} {'Tries':>5}  {'Next':>6}  PFN / error"]
        for d in rows:
            wait = f"{max(d.next_try - now, 0):.0f}s" if d.state == "QUEUED" else "-"
            lines.append(f"{d.id:>8}  {d.state:<7} {d.se:<24} {d.attempts:>5}  {wait:>6}  {d.pfn}")
            if d.error:
                lines.append(f"{'':>8}  {d.error}")
        lines += ["", summary]
        return [{"message": "\n".join(lines)}, *(_deletion_record(d) for d in rows)]
