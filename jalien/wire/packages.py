"""Package names as JDLs, agents and central say them, and the digest of a package list.

A JDL asks ``Packages = {"VO_ALICE@O2::v1-2", "VO_ALICE@ROOT"}``; a node offers what its
CVMFS-layout tree holds, as ``alienv q`` lists it (``VO_ALICE@<Package>::<version>``, one per
modulefile ``<arch>/Modules/modulefiles/<Package>/<version>``). Matching compares
*keys*: ``Package::version`` for a versioned name and ``Package`` for a bare one, the
``VO_<ORG>@`` prefix dropped (JAliEn and alienv strip it the same way), so a job asking for
``ROOT`` without a version fits any node that has some version of ROOT.

The digest names a list (sha256 of its sorted, de-duplicated names): an offer carries the
digest on every request and the list only when central asks for it (``PackagesWanted``).
Pure: no I/O, used by the agent, the VoBox and central alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

VO_PREFIX = "VO_ALICE@"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class PackageNameError(ValueError):
    """A package name that is no ``[VO_X@]Package[::version]``; the text says which."""


def split(spec: str) -> tuple[str, str]:
    """``VO_ALICE@ROOT::v6-30`` -> ``("ROOT", "v6-30")``; ``ROOT`` -> ``("ROOT", "")``."""
    text = spec.strip()
    if "@" in text:
        vo, _, text = text.partition("@")
        if not vo.startswith("VO_"):
            raise PackageNameError(f"package {spec!r}: expected VO_<ORG>@Package::version")
    name, sep, version = text.partition("::")
    if not _SAFE.match(name) or (sep and not _SAFE.match(version)):
        raise PackageNameError(f"package {spec!r} is not a valid package name")
    return name, version


def key(spec: str) -> str:
    """The name matching compares: ``Package::version`` or ``Package``."""
    name, version = split(spec)
    return f"{name}::{version}" if version else name


def full_name(name: str, version: str) -> str:
    """``("ROOT", "v6-30")`` -> ``VO_ALICE@ROOT::v6-30`` (what ``packages`` lists)."""
    return f"{VO_PREFIX}{name}::{version}"


def offered_keys(packages: Iterable[str]) -> frozenset[str]:
    """The keys a node's list satisfies: each ``Package::version`` and each ``Package``.
    Names that do not parse are left out (a stray file in a modulefiles directory)."""
    out: set[str] = set()
    for spec in packages:
        try:
            name, version = split(spec)
        except PackageNameError:
            continue
        out.add(name)
        if version:
            out.add(f"{name}::{version}")
    return frozenset(out)


def missing(wanted: Iterable[str], offered: frozenset[str]) -> list[str]:
    """The names of *wanted* (a JDL's) that *offered* (``offered_keys``) lacks, in order."""
    out = []
    for spec in wanted:
        try:
            if key(spec) not in offered:
                out.append(spec)
        except PackageNameError:
            out.append(spec)
    return out


def digest(packages: Iterable[str]) -> str:
    """The list's name: the sha256 of its sorted unique names, one per line (hex, 32)."""
    text = "\n".join(sorted(set(packages)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
