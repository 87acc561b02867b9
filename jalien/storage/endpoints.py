"""Which URL of a replica a client can use: protocols, an SE's endpoints, and the rewrite of
a PFN from one endpoint of its SE to another (pure: no I/O).

An SE has its main URL and possibly other endpoints (``StorageElement.endpoints``): the same
path below each names the same file (the embedded SE: ``root://h:8094//se`` beside
``https://h:8099/se``). A replica is registered under the URL it was written with; a client
that does not speak that protocol is handed the same file under an endpoint it does speak.

Who speaks what: JAliEn's JSON clients (alien.py, ROOT's TJAlien) and anything sending
JAliEn's words read and write XRootD only (``JSON_CLIENTS``); jalien's own clients (the
typed access of jalien-bin's cp, the JobAgent, central itself) speak XRootD through the
client library and HTTPS (``JALIEN_CLIENTS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

XROOTD, HTTPS = "root", "https"
SCHEMES = {"root": XROOTD, "xroot": XROOTD, "roots": XROOTD, "xroots": XROOTD}
SCHEMES |= {"https": HTTPS, "http": HTTPS}
JSON_CLIENTS = frozenset({XROOTD})
JALIEN_CLIENTS = frozenset({XROOTD, HTTPS})


class Endpoints(Protocol):
    url: str
    endpoints: list[str]


def protocol(url: str) -> str:
    """The protocol family of a URL (``root``, ``https``), "" when unknown."""
    return SCHEMES.get(url.partition("://")[0].lower(), "") if "://" in url else ""


def speaks(url: str, protocols: frozenset[str]) -> bool:
    return protocol(url) in protocols


def urls_of(se: Endpoints) -> list[str]:
    """The SE's URLs, its main one first."""
    return [se.url, *(u for u in se.endpoints if u and u != se.url)]


def _split(url: str) -> tuple[str, str, str]:
    """(protocol, host:port, path with repeated slashes collapsed, no trailing slash)."""
    parts = urlsplit(url)
    path = "/" + "/".join(p for p in parts.path.split("/") if p)
    return protocol(url), parts.netloc.lower(), path.rstrip("/") or "/"


def _below(pfn: str, base: str) -> str | None:
    """The path of *pfn* below the SE URL *base* ("/NN/NNNNN/guid"), None if not below it."""
    p_proto, p_host, p_path = _split(pfn)
    b_proto, b_host, b_path = _split(base)
    if (p_proto, p_host) != (b_proto, b_host):
        return None
    if b_path == "/":
        return p_path
    if p_path == b_path or p_path.startswith(b_path + "/"):
        return p_path[len(b_path) :]
    return None


def join(base: str, rest: str) -> str:
    """*rest* (a path) below the SE URL *base*; an XRootD URL spells an absolute path with
    two slashes (``root://h:p//se/NN/...``), as JAliEn and alien.py do."""
    parts = urlsplit(base)
    path = "/" + "/".join(p for p in (parts.path + rest).split("/") if p)
    if protocol(base) == XROOTD:
        path = "/" + path
    return f"{parts.scheme}://{parts.netloc}{path}"


def usable_url(pfn: str, se: Endpoints | None, protocols: frozenset[str]) -> str | None:
    """The URL under which a client speaking *protocols* reaches the replica *pfn* of *se*:
    the PFN itself when it can, else the same path below another endpoint of its SE, else
    None."""
    if speaks(pfn, protocols):
        return pfn
    if se is None:
        return None
    urls = urls_of(se)
    for base in urls:
        rest = _below(pfn, base)
        if rest is None:
            continue
        for other in urls:
            if other != base and speaks(other, protocols):
                return join(other, rest)
    return None


def write_base(se: Endpoints, protocols: frozenset[str]) -> str | None:
    """The SE URL a client speaking *protocols* writes a new file below (its main URL
    first), None when it speaks none of them."""
    return next((u for u in urls_of(se) if speaks(u, protocols)), None)


def spoken(ses: Sequence[Endpoints]) -> str:
    """What the given SEs speak, for an error message ("https", "root, https")."""
    found: list[str] = []
    for se in ses:
        for url in urls_of(se):
            name = protocol(url) or url.partition("://")[0]
            if name not in found:
                found.append(name)
    return ", ".join(found) or "nothing"
