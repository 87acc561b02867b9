"""Data access commands as JAliEn has them: ``access`` (signed envelopes per replica),
``commit`` (register an uploaded replica), ``addSE`` and ``listSEDistance``: each parses its
arguments, calls one method of the storage service (``jalien.storage.service``, where the
rules of placement, envelopes, access and commit live) and renders JAliEn's records.

Central only authorizes: the bytes go between the client and the SEs. What alien.py 1.7.0
sends and reads is in /work/shared/JALIEN-PROTOCOL.md ("Data access (cp)").
"""

from __future__ import annotations

from typing import Any

from jalien.auth.policy import Action as A
from jalien.auth.policy import ByFirstWord
from jalien.catalogue.model import StorageElement
from jalien.catalogue.service import Catalogue
from jalien.commands.dispatch import GLOBAL_FLAGS, HELP_FLAGS
from jalien.commands.errno import EINVAL, jalien_error
from jalien.commands.options import parse
from jalien.commands.session import Session
from jalien.commands.table import CommandTable
from jalien.storage import placement
from jalien.storage.envelope import EnvelopeSigner
from jalien.storage.quota import QuotaCheck
from jalien.storage.replica_check import ReplicaChecker
from jalien.storage.service import CatalogueAccess, Commit, StorageService, clients_of
from jalien.wire import site_api
from jalien.wire.messages import Record, Reply, Request
from jalien.wire.site_api import AccessRequest

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


class StorageCommands:
    def __init__(
        self,
        table: CommandTable,
        storage: StorageService | Catalogue,
        signer: EnvelopeSigner | None = None,
        ca_dir: str = "",
        *,
        checker: ReplicaChecker | None = None,
        quota: QuotaCheck | None = None,
    ) -> None:
        """*storage*: the storage service (jcentral wires one), or a catalogue that a
        service is made on with *signer* (tests and tools)."""
        self.table = table
        if isinstance(storage, StorageService):
            self.service = storage
        else:
            assert signer is not None, "a storage service needs the envelope signer"
            self.service = StorageService(storage, signer, ca_dir, checker=checker, quota=quota)

    @property
    def checker(self) -> ReplicaChecker:
        return self.service.checker

    @property
    def quota(self) -> QuotaCheck:
        return self.service.quota

    @quota.setter
    def quota(self, quota: QuotaCheck) -> None:
        self.service.quota = quota

    async def close(self) -> None:
        await self.service.close()

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
        speaks = clients_of(session.personality, typed is not None)
        grants = await self.service.access(session, wanted, speaks)
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

    # -- commit
    async def commit(self, session: Session, args: list[str]) -> list[Record]:
        """``commit envelope [size lfn perm expire pfn se guid md5]``, as alien.py sends it."""
        if not args:
            raise jalien_error(EINVAL, "Command requires an argument")
        fields = [*args, *[""] * 9][:9]
        size = fields[1]
        done = Commit(
            envelope=fields[0],
            size=int(size) if size.lstrip("-").isdigit() else -1,
            lfn=fields[2],
            md5=fields[8],
        )
        committed = await self.service.commit(session, done)
        lfn = committed.lfn
        return [{"path": lfn, "lfn": "1", "pfn": committed.url, "message": f"{lfn} 1"}]

    # -- SEs
    async def list_se_distance(self, session: Session, args: list[str]) -> list[Record]:
        opts = parse(args, flags="", valued=("site", "qos"))
        site = opts.value("site") or session.site
        records: list[Record] = []
        for se, d in await self.service.by_distance(site, opts.value("qos").lower()):
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
        qos = [q.strip().lower() for q in opts.value("qos").split(",") if q.strip()]

        def make(old: StorageElement | None) -> StorageElement:  # what was not said stays
            return StorageElement(
                name=name,
                url=url.rstrip("/"),
                site=opts.value("site") or (old.site if old else name.split("::")[1]),
                qos=qos or (old.qos if old else ["disk"]),
                capacity=opts.number("capacity", old.capacity if old else 0),
                used=opts.number("used", old.used if old else 0),
                protocols=[url.split("://")[0]],
                number=opts.number("number", 0),
            )

        se, known = await self.service.add_se(session, name, url, make)
        verb = "updated" if known else "added"
        return [
            {
                "seName": se.name,
                "seNumber": str(se.number),
                "endpointUrl": se.url,
                "message": f"{verb} {se.name} ({se.number}) at {se.url}",
            }
        ]


# mypy checks here that the catalogue service is what the storage service asks of it
_implements: type[CatalogueAccess] = Catalogue
