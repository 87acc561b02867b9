"""AliEn's XML collections, both ways: the document ``find -x`` and ``toXml`` write and
that analyses (``InputDataCollection``, ``listFilesFromCollection``) read. Pure: text in,
text out, no I/O.

The shape is JAliEn's (alien.catalogue.XmlCollection)::

    <?xml version="1.0"?>
    <alien>
      <collection name="NAME">
        <event name="1">
          <file name="f.root" aclId="" broken="0" ctime="2026-12-02 15:48:09" dir="0"
                entryId="0" expiretime="" gowner="g" guid="..." guidtime="" jobid=""
                lfn="/alice/.../f.root" md5="..." owner="u" perm="755" replicated="0"
                size="12" turl="alien:///alice/.../f.root" type="f" />
        </event>
        <info command="find ..." creator="u" date="Wed Dec 02 15:48:09 UTC 2026"
              timestamp="1796226489000" />
      </collection>
    </alien>

(on one line per ``<file>``). JAliEn writes ctime with a 12-hour clock ("hh"); this module
writes AliEn's 24-hour time, which every reader (JAliEn's, alien.py's, ROOT's
TAlienCollection) parses the same way.

Reading is strict XML through expat with the document type refused: a collection never
needs a DTD, and refusing it outright rules out entity expansion ("billion laughs") and
external entities (file or network reads) whatever the expat version. This is what
defusedxml's ``forbid_dtd`` does, with the standard library alone.
"""

from __future__ import annotations

import time
from html import escape
from xml.parsers import expat

import msgspec

MAX_BYTES = 64 << 20  # a collection of ~150k files; bigger ones are refused
MAX_FILES = 500_000


class CollectionError(ValueError):
    """Not a (well-formed) AliEn XML collection; the message says why and where."""


class CollectionFile(msgspec.Struct, kw_only=True):
    """One ``<file>`` of a collection: what a reader needs (the LFN) and what JAliEn
    writes beside it."""

    lfn: str
    guid: str = ""
    size: int = 0
    md5: str = ""
    owner: str = ""
    gowner: str = ""
    perm: str = ""
    type: str = "f"
    ctime: str = ""  # as written ("YYYY-MM-DD HH:MM:SS")
    jobid: int = 0
    event: str = ""  # the name of its <event>


class Collection(msgspec.Struct, kw_only=True):
    name: str = ""
    files: list[CollectionFile] = []
    command: str = ""
    creator: str = ""
    timestamp: int = 0  # ms since the epoch

    @property
    def lfns(self) -> list[str]:
        """The files' LFNs in order, each once."""
        return list(dict.fromkeys(f.lfn for f in self.files))


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _ctime(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms > 0 else ""


def file_of(
    lfn: str,
    *,
    guid: str = "",
    size: int = 0,
    md5: str = "",
    owner: str = "",
    gowner: str = "",
    perm: str = "",
    type: str = "f",
    ctime_ms: int = 0,
    jobid: int = 0,
) -> CollectionFile:
    """A CollectionFile from a catalogue entry's fields (ctime in ms since the epoch)."""
    return CollectionFile(
        lfn=lfn,
        guid=guid,
        size=size,
        md5=md5,
        owner=owner,
        gowner=gowner,
        perm=perm,
        type=type or "f",
        ctime=_ctime(ctime_ms),
        jobid=jobid,
    )


def _file_line(f: CollectionFile) -> str:
    name = f.lfn.rstrip("/").rpartition("/")[2]
    fields = (
        ("name", name),
        ("aclId", ""),
        ("broken", "0"),
        ("ctime", f.ctime),
        ("dir", "0"),
        ("entryId", "0"),
        ("expiretime", ""),
        ("gowner", f.gowner),
        ("guid", f.guid),
        ("guidtime", ""),
        ("jobid", str(f.jobid) if f.jobid > 0 else ""),
        ("lfn", f.lfn),
        ("md5", f.md5),
        ("owner", f.owner),
        ("perm", f.perm),
        ("replicated", "0"),
        ("size", str(f.size)),
        ("turl", "alien://" + f.lfn),
        ("type", f.type or "f"),
    )
    return "      <file " + " ".join(f'{k}="{_attr(v)}"' for k, v in fields) + " />"


def java_date(ms: int) -> str:
    """Java's Date.toString() in UTC: 'Wed Dec 02 15:48:09 UTC 2026'."""
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(ms / 1000))


def render(coll: Collection, now_ms: int | None = None) -> str:
    """The collection as JAliEn writes it: one <event> per file, numbered from 1."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = ['<?xml version="1.0"?>', "<alien>"]
    out.append(f'  <collection name="{_attr(coll.name or "tempCollection")}">')
    for n, f in enumerate(coll.files, 1):
        out.append(f'    <event name="{n}">')
        out.append(_file_line(f))
        out.append("    </event>")
    command = coll.command or "alien.catalogue.XmlCollection"
    creator = coll.creator or "JAliEn-Central"
    out.append(
        f'    <info command="{_attr(command)}" creator="{_attr(creator)}" '
        f'date="{java_date(now)}" timestamp="{now}" />'
    )
    out.append("  </collection>")
    out.append("</alien>")
    return "\n".join(out)


def _refuse(what: str):
    def handler(*_: object) -> None:
        raise CollectionError(f"{what} are not allowed in an XML collection")

    return handler


def _number(attrs: dict[str, str], key: str, where: str) -> int:
    raw = attrs.get(key, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise CollectionError(f"{where}: {key}={raw[:40]!r} is not a number") from None


def parse(data: str | bytes, max_files: int = MAX_FILES) -> Collection:
    """An AliEn XML collection's files (CollectionError if it is not one: not XML, a DTD
    or entity, no <alien> root, a <file> without an absolute lfn, too many files)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_BYTES:
        raise CollectionError(f"larger than {MAX_BYTES} bytes")
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse("document type declarations (DTD)")
    parser.EntityDeclHandler = _refuse("entity declarations")
    parser.UnparsedEntityDeclHandler = _refuse("entity declarations")
    parser.ExternalEntityRefHandler = _refuse("external entities")
    coll = Collection()
    stack: list[str] = []
    event = ""

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal event
        where = f"line {parser.CurrentLineNumber}"
        if not stack and tag != "alien":
            raise CollectionError(f"This is not an AliEn XML collection (root <{tag}>)")
        if tag == "collection" and not coll.name:
            coll.name = attrs.get("name", "")
        elif tag == "event":
            event = attrs.get("name", "")
        elif tag == "info":
            coll.command = attrs.get("command", "")
            coll.creator = attrs.get("creator", "")
            coll.timestamp = _number(attrs, "timestamp", where)
        elif tag == "file":
            lfn = attrs.get("lfn", "").strip()
            if not lfn.startswith("/"):
                raise CollectionError(f"{where}: a <file> needs an absolute lfn, not {lfn!r}")
            if len(coll.files) >= max_files:
                raise CollectionError(f"more than {max_files} files")
            coll.files.append(
                CollectionFile(
                    lfn=lfn,
                    guid=attrs.get("guid", ""),
                    size=_number(attrs, "size", where),
                    md5=attrs.get("md5", ""),
                    owner=attrs.get("owner", ""),
                    gowner=attrs.get("gowner", ""),
                    perm=attrs.get("perm", ""),
                    type=(attrs.get("type", "") or "f")[:1],
                    ctime=attrs.get("ctime", ""),
                    jobid=_number(attrs, "jobid", where) or _number(attrs, "jobId", where),
                    event=event,
                )
            )
        stack.append(tag)

    def end(tag: str) -> None:
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise CollectionError(
            f"not well-formed XML at line {exc.lineno}, column {exc.offset}: "
            f"{expat.ErrorString(exc.code)}"
        ) from None
    return coll


__all__ = ["Collection", "CollectionError", "CollectionFile", "file_of", "parse", "render"]
