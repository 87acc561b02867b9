"""What the grid's nodes offer in packages, as central learns it from their offers.

A JobAgent (or a VoBox) with a package tree sends the digest of its list with every
``getMatchJob``/``getNumberWaitingJobs`` (``wire.packages``) and the list itself only when
central does not know that digest yet: central asks with ``PackagesWanted``. ``PackageOffers``
keeps the lists by digest (bounded, least recently seen dropped first), the keys the broker
compares, and who offered them lately: what ``packages`` lists and what a job's missing
packages are measured against (``ps -trace``, ``jobListMatch``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jalien.wire import packages as names
from jalien.wire.site_api import JobOffer

MAX_LISTS = 256  # distinct package lists remembered (sites share CVMFS: a handful in practice)
MAX_NAMES = 500_000  # names in one list (ALICE's CVMFS has some tens of thousands)
RECENT = 6 * 3600.0  # seconds an offer counts as "the grid offers it"


@dataclass
class PackageList:
    digest: str
    packages: list[str]  # as the node listed them, VO_ALICE@Package::version
    keys: frozenset[str]
    seen: float = 0.0
    where: dict[str, float] = field(default_factory=dict)  # "site ce root" -> when


class UnknownDigest(Exception):
    """The offer names a list central does not have: ask for it (``PackagesWanted``)."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class PackageOffers:
    def __init__(
        self, *, max_lists: int = MAX_LISTS, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_lists = max_lists
        self.clock = clock
        self._lists: OrderedDict[str, PackageList] = OrderedDict()
        self.offers_seen = 0  # offers that said anything about packages

    def __len__(self) -> int:
        return len(self._lists)

    def resolve(self, offer: JobOffer) -> frozenset[str] | None:
        """The keys an offer satisfies (``wire.packages.offered_keys``); None: any (an
        offer that says nothing about packages). UnknownDigest when it sends only a digest
        central does not know; a list that comes with a digest is kept under it."""
        if offer.packages is None and not offer.packages_digest:
            return None
        now = self.clock()
        self.offers_seen += 1
        where = " ".join(x for x in (offer.site, offer.ce, offer.packages_root) if x)
        if offer.packages is None:
            known = self._lists.get(offer.packages_digest)
            if known is None:
                raise UnknownDigest(offer.packages_digest)
            self._lists.move_to_end(offer.packages_digest)
        else:
            listed = offer.packages[:MAX_NAMES]
            digest = names.digest(listed)  # what it is, whatever the offer said
            known = self._lists.get(digest)
            if known is None:
                known = PackageList(digest, sorted(set(listed)), names.offered_keys(listed))
                self._lists[digest] = known
                while len(self._lists) > self.max_lists:
                    self._lists.popitem(last=False)
            else:
                self._lists.move_to_end(digest)
        known.seen = now
        if len(known.where) < 10_000 or where in known.where:
            known.where[where] = now
        return known.keys

    def _recent(self, within: float) -> Iterable[PackageList]:
        since = self.clock() - within
        return (p for p in self._lists.values() if p.seen >= since)

    def grid(self, within: float = RECENT) -> list[str]:
        """Every package some node offered within *within* seconds, sorted, each once."""
        out: set[str] = set()
        for plist in self._recent(within):
            out.update(plist.packages)
        return sorted(out)

    def offered_anywhere(self, within: float = RECENT) -> frozenset[str]:
        out: set[str] = set()
        for plist in self._recent(within):
            out |= plist.keys
        return frozenset(out)

    def where(self, spec: str, within: float = RECENT) -> list[str]:
        """Who offered *spec* lately ("site ce root" words), for ``packages -l``."""
        try:
            key = names.key(spec)
        except names.PackageNameError:
            return []
        since = self.clock() - within
        out: set[str] = set()
        for plist in self._recent(within):
            if key in plist.keys:
                out.update(w for w, t in plist.where.items() if t >= since)
        return sorted(out)

    def missing(self, wanted: Iterable[str], within: float = RECENT) -> list[str]:
        """The packages of *wanted* that no node offered within *within* seconds."""
        return names.missing(wanted, self.offered_anywhere(within))
