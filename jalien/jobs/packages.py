"""What the grid's nodes offer in packages, as central learns it from their offers.

A JobAgent (or a VoBox) with a package tree sends the digest of its list with every
``getMatchJob``/``getNumberWaitingJobs`` (``wire.packages``) and the list itself only when
central does not know that digest yet: central asks with ``PackagesWanted``. ``PackageOffers``
keeps the lists by digest (bounded, least recently seen dropped first), the keys the broker
compares, and who offered which list lately: what ``packages`` lists and what a job's
missing packages are measured against (``ps -trace``, ``jobListMatch``).

The jcentral processes of a host (``--workers``) share what they learn through a
``PackageShare`` the role gives (the host's shared cache): a list one worker was sent is
found by the others under its digest, and who offered what is seen by all; without one
(tests, tools) each process knows what it was told. Jcentrals on other hosts learn the
lists from the offers they get themselves (``PackagesWanted`` costs one more request).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from jalien.wire import packages as names
from jalien.wire.site_api import JobOffer

log = logging.getLogger("jalien.jobs")

MAX_LISTS = 256  # distinct package lists remembered (sites share CVMFS: a handful in practice)
MAX_NAMES = 500_000  # names in one list (ALICE's CVMFS has some tens of thousands)
MAX_OFFERERS = 10_000  # "site ce root" remembered
RECENT = 6 * 3600.0  # seconds an offer counts as "the grid offers it"
NOTE_EVERY = 60.0  # seconds between two notes of the same offerer in the shared record


@dataclass
class PackageList:
    digest: str
    packages: list[str]  # as the node listed them, VO_ALICE@Package::version
    keys: frozenset[str]
    seen: float = 0.0


class PackageShare(Protocol):
    """What the jcentral processes of a host share (roles/central_cache.PackageShare)."""

    def get_list(self, digest: str) -> list[str] | None: ...
    def put_list(self, digest: str, packages: list[str]) -> None: ...
    def note(self, where: str, digest: str, seen: float) -> None: ...
    def offers(self) -> list[tuple[str, str, float]]:
        """(where, digest, when) of the offers noted and not expired."""
        ...


class UnknownDigest(Exception):
    """The offer names a list central does not have: ask for it (``PackagesWanted``)."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class PackageOffers:
    def __init__(
        self,
        *,
        max_lists: int = MAX_LISTS,
        clock: Callable[[], float] = time.time,
        shared: PackageShare | None = None,
    ) -> None:
        self.max_lists = max_lists
        self.clock = clock
        self.shared = shared  # set by the role: the host's other jcentral processes
        self._lists: OrderedDict[str, PackageList] = OrderedDict()
        self._offerers: dict[str, tuple[str, float]] = {}  # where -> (digest, when)
        self._noted: dict[str, tuple[str, float]] = {}  # what went to the shared record

    def __len__(self) -> int:
        return len(self._lists)

    def _keep(self, digest: str, listed: list[str]) -> PackageList:
        known = PackageList(digest, sorted(set(listed)), names.offered_keys(listed))
        self._lists[digest] = known
        while len(self._lists) > self.max_lists:
            self._lists.popitem(last=False)
        return known

    def _list(self, digest: str) -> PackageList | None:
        """The list under *digest*: this process's, or the host's shared one."""
        known = self._lists.get(digest)
        if known is not None:
            self._lists.move_to_end(digest)
            return known
        if self.shared is None:
            return None
        try:
            listed = self.shared.get_list(digest)
        except Exception as exc:  # the shared record is a help, never a failure
            log.warning("shared package list %s: %s", digest, exc)
            return None
        if listed is None or names.digest(listed) != digest:
            return None
        return self._keep(digest, listed)

    def resolve(self, offer: JobOffer) -> frozenset[str] | None:
        """The keys an offer satisfies (``wire.packages.offered_keys``); None: any (an
        offer that says nothing about packages). UnknownDigest when it sends only a digest
        central does not know; a list that comes with it is kept under its digest."""
        if offer.packages is None and not offer.packages_digest:
            return None
        now = self.clock()
        if offer.packages is None:
            known = self._list(offer.packages_digest)
            if known is None:
                raise UnknownDigest(offer.packages_digest)
        else:
            listed = offer.packages[:MAX_NAMES]
            digest = names.digest(listed)  # what it is, whatever the offer said
            known = self._lists.get(digest)
            if known is None:
                known = self._keep(digest, listed)
                self._share_list(known)
            else:
                self._lists.move_to_end(digest)
        known.seen = now
        where = " ".join(x for x in (offer.site, offer.ce, offer.packages_root) if x)
        self._offered(where, known, now)
        return known.keys

    def _share_list(self, known: PackageList) -> None:
        if self.shared is not None:
            try:
                self.shared.put_list(known.digest, known.packages)
            except Exception as exc:
                log.warning("shared package list %s not kept: %s", known.digest, exc)

    def _offered(self, where: str, known: PackageList, now: float) -> None:
        if len(self._offerers) < MAX_OFFERERS or where in self._offerers:
            self._offerers[where] = (known.digest, now)
        if self.shared is None:
            return
        noted = self._noted.get(where)
        if noted is not None and noted[0] == known.digest and now - noted[1] < NOTE_EVERY:
            return
        if len(self._noted) >= MAX_OFFERERS:
            self._noted.clear()
        self._noted[where] = (known.digest, now)
        try:
            self.shared.note(where, known.digest, now)
        except Exception as exc:
            log.warning("shared package offer of %s not noted: %s", where, exc)

    def _offers(self, within: float) -> dict[str, PackageList]:
        """Who offered which list within *within* seconds (this process and the host's)."""
        since = self.clock() - within
        latest = dict(self._offerers)
        if self.shared is not None:
            try:
                for where, digest, seen in self.shared.offers():
                    if seen > latest.get(where, ("", 0.0))[1]:
                        latest[where] = (digest, seen)
            except Exception as exc:
                log.warning("shared package offers: %s", exc)
        out: dict[str, PackageList] = {}
        for where, (digest, seen) in latest.items():
            if seen >= since:
                known = self._list(digest)
                if known is not None:
                    out[where] = known
        return out

    def known(self, within: float = RECENT) -> bool:
        """Whether any node said what it offers within *within* seconds."""
        return bool(self._offers(within))

    def table(self, within: float = RECENT) -> dict[str, list[str]]:
        """Every package some node offered within *within* seconds (sorted, each once) and
        who offered it ("site ce root" words, sorted): ``packages`` in one pass."""
        out: dict[str, list[str]] = {}
        for where, plist in sorted(self._offers(within).items()):
            for name in plist.packages:
                out.setdefault(name, []).append(where)
        return dict(sorted(out.items()))

    def grid(self, within: float = RECENT) -> list[str]:
        """Every package some node offered within *within* seconds, sorted, each once."""
        return list(self.table(within))

    def offered_anywhere(self, within: float = RECENT) -> frozenset[str]:
        out: set[str] = set()
        for plist in {p.digest: p for p in self._offers(within).values()}.values():
            out |= plist.keys
        return frozenset(out)

    def where(self, spec: str, within: float = RECENT) -> list[str]:
        """Who offered *spec* lately ("site ce root" words), for ``packages -l``."""
        try:
            key = names.key(spec)
        except names.PackageNameError:
            return []
        return sorted(w for w, plist in self._offers(within).items() if key in plist.keys)

    def missing(self, wanted: Iterable[str], within: float = RECENT) -> list[str]:
        """The packages of *wanted* that no node offered within *within* seconds."""
        return names.missing(wanted, self.offered_anywhere(within))
