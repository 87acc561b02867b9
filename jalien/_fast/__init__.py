"""Hot paths of the wire protocol, in Cython with pure-Python twins.

This module is the one place that chooses a twin. JALIEN_NO_EXTENSIONS=1 forces the
pure-Python ones (as aiohttp's AIOHTTP_NO_EXTENSIONS does); so does a missing build.
"""

import os
from typing import TYPE_CHECKING

from jalien._fast import (
    auditlines_py,
    framing_py,
    lslong_py,
    reqstats_py,
    rowpack_py,
    sandwich_py,
    xrdproto_py,
)

NO_EXTENSIONS = os.environ.get("JALIEN_NO_EXTENSIONS", "") not in ("", "0")

framing = framing_py
# the checker sees one interface, framing_py's (framing_c.pyi declares the same)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import framing_c
    except ImportError:  # not built: a source checkout without meson
        pass
    else:
        framing = framing_c

sandwich = sandwich_py  # the dark-data compare (datamovers/darkdata.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import sandwich_c
    except ImportError:
        pass
    else:
        sandwich = sandwich_c

xrdproto = xrdproto_py  # the XRootD request decoder (storage/xrd_session.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import xrdproto_c
    except ImportError:
        pass
    else:
        xrdproto = xrdproto_c

reqstats = reqstats_py  # the request counters of the metrics (net/audit.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import reqstats_c
    except ImportError:
        pass
    else:
        reqstats = reqstats_c

auditlines = auditlines_py  # the audit log's lines (net/audit.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import auditlines_c
    except ImportError:
        pass
    else:
        auditlines = auditlines_c

rowpack = rowpack_py  # a listing's pages from SQLite to MessagePack (catalogue/sqlite_backend.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import rowpack_c
    except ImportError:  # not built (no libsqlite3 headers), or another SQLite than sqlite3's
        pass
    else:
        rowpack = rowpack_c

lslong = lslong_py  # ls -l's records as JSON from packed rows (wire/listing_views.py)
if not NO_EXTENSIONS and not TYPE_CHECKING:
    try:
        from jalien._fast import lslong_c
    except ImportError:
        pass
    else:
        lslong = lslong_c

IMPLEMENTATION: str = framing.IMPLEMENTATION


def implementations() -> dict[str, str]:
    """Each hot path and the twin that serves it ("cython" or "python")."""
    chosen = {
        "framing": framing,
        "sandwich": sandwich,
        "xrdproto": xrdproto,
        "reqstats": reqstats,
        "auditlines": auditlines,
        "rowpack": rowpack,
        "lslong": lslong,
    }
    return {name: module.IMPLEMENTATION for name, module in chosen.items()}


__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "auditlines",
    "auditlines_py",
    "framing",
    "framing_py",
    "implementations",
    "lslong",
    "lslong_py",
    "reqstats",
    "reqstats_py",
    "rowpack",
    "rowpack_py",
    "sandwich",
    "sandwich_py",
    "xrdproto",
    "xrdproto_py",
]
