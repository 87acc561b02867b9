"""Where a new file's replicas go and in which order a reader tries replicas.

Works on anything shaped like catalogue.model.StorageElement (name, site, qos, capacity,
used): the storage service never imports the catalogue. Specs are AliEn's access specs: a
comma list of SE names (``ALICE::CERN::EOS``), excluded SEs (``!ALICE::X::Y``) and QoS tags
with counts (``disk:2``, also ``disk=2``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar


class SELike(Protocol):
    name: str
    site: str
    qos: list[str]
    capacity: int
    used: int


SE = TypeVar("SE", bound=SELike)  # what goes in comes back out (the catalogue's StorageElement)


class SpecError(ValueError):
    """An access spec that cannot be understood (the text says which part)."""


@dataclass
class Specs:
    ses: list[str] = field(default_factory=list)  # upper-case names, in the order asked
    excluded: set[str] = field(default_factory=set)
    qos: dict[str, int] = field(default_factory=dict)  # tag -> number of replicas

    @property
    def replicas(self) -> int:
        return len(self.ses) + sum(self.qos.values())


def parse_specs(text: str | Sequence[str]) -> Specs:
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    specs = Specs()
    for raw in parts:
        spec = raw.strip()
        if not spec:
            continue
        if spec.count("::") >= 2:
            if spec.startswith("!"):
                specs.excluded.add(spec[1:].upper())
            elif spec.upper() not in specs.ses:
                specs.ses.append(spec.upper())
            continue
        sep = spec.find(":") if ":" in spec else spec.find("=")
        if sep <= 0:
            raise SpecError(f"Don't know what to do with `{spec}`")
        try:
            count = int(spec[sep + 1 :].strip())
        except ValueError:
            raise SpecError(f"Invalid format of the QoS string `{spec}`") from None
        if count <= 0:
            raise SpecError(f"The number replicas has to be stricly positive in `{spec}`")
        tag = spec[:sep].strip().lower()
        specs.qos[tag] = specs.qos.get(tag, 0) + count
    return specs


def site_of(se: SELike) -> str:
    """The SE's site: its configured site, else the middle of VO::SITE::NAME."""
    if se.site:
        return se.site.upper()
    parts = se.name.upper().split("::")
    return parts[1] if len(parts) == 3 else ""


def _site_names(site: str) -> set[str]:
    """A client's site and its parts (``ALICE::CERN::SITE`` is near an SE at ``CERN``)."""
    upper = site.upper()
    return {upper, *upper.split("::")} if upper else set()


def distance(client_site: str, se: SELike) -> float:
    """0 for an SE at the client's site, 1 elsewhere, plus up to 0.1 for a full SE (so that
    among equals the emptier one wins)."""
    near = site_of(se) in _site_names(client_site)
    fill = se.used / se.capacity if se.capacity > 0 else 0.0
    return (0.0 if near else 1.0) + 0.1 * min(max(fill, 0.0), 1.0)


def _tiebreak(key: str, se: SELike) -> int:
    """A stable spread among SEs at the same distance (per file, not always the same SE)."""
    return zlib.crc32(f"{key}/{se.name}".encode())


def rank(ses: Sequence[SE], client_site: str, key: str = "") -> list[SE]:
    """SEs closest first; *key* (e.g. the GUID) spreads ties across equally close SEs."""
    return sorted(ses, key=lambda se: (distance(client_site, se), _tiebreak(key, se)))


def has_room(se: SELike, size: int) -> bool:
    return se.capacity <= 0 or se.used + max(size, 0) <= se.capacity


def choose_write(
    ses: Sequence[SE], specs: Specs, client_site: str, size: int = 0, key: str = ""
) -> list[SE]:
    """The SEs a new file goes to: the named ones first, then for each QoS tag the closest
    SEs carrying it, never the same SE twice, never an excluded or full one. Fewer than
    asked when there are not enough (the caller decides whether that is an error)."""
    by_name = {se.name.upper(): se for se in ses}
    chosen: list[SE] = []
    taken: set[str] = set(specs.excluded)
    for name in specs.ses:
        se = by_name.get(name)
        if se is not None and name not in taken and has_room(se, size):
            chosen.append(se)
            taken.add(name)
    for tag, count in specs.qos.items():
        candidates = [
            se
            for se in ses
            if tag in {q.lower() for q in se.qos}
            and se.name.upper() not in taken
            and has_room(se, size)
        ]
        for se in rank(candidates, client_site, key)[:count]:
            chosen.append(se)
            taken.add(se.name.upper())
    return chosen


def order_read(
    replicas: Sequence[tuple[str, str]],
    ses: Sequence[SELike],
    client_site: str,
    specs: Specs | None = None,
    strict: bool = False,
) -> list[tuple[str, str]]:
    """(se name, pfn) pairs, closest first; SEs named in *specs* before the others, excluded
    ones last (or dropped when *strict*, as ``access -f``); unknown SEs at the end."""
    by_name = {se.name.upper(): se for se in ses}
    specs = specs or Specs()

    def key(pair: tuple[str, str]) -> tuple[int, float, int]:
        name = pair[0].upper()
        se = by_name.get(name)
        preferred = 0 if name in specs.ses else (2 if name in specs.excluded else 1)
        if se is None:
            return (preferred, 9.0, 0)
        return (preferred, distance(client_site, se), _tiebreak(pair[1], se))

    ordered = sorted(replicas, key=key)
    if strict:
        ordered = [
            p
            for p in ordered
            if p[0].upper() not in specs.excluded and (not specs.ses or p[0].upper() in specs.ses)
        ]
    return ordered
