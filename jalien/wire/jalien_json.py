"""The JAliEn JSON shape, made at the WebSocket edge only.

Requests arrive as ``{"command": "ls", "options": ["-l", "/alice"]}``; replies leave as
``{"metadata": {"exitcode": "0", "error": "", "user": ..., "currentdir": ...},
"results": [{...}, ...]}`` with string values, as JAliEn's JSONPrintWriter writes them
and alien.py reads them. ``-nomsg`` and ``-nokeys`` choose what each result carries.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from jalien.wire.codec import MAX_NESTING, DecodeError, nesting_exceeds
from jalien.wire.listing_views import packed_json, render_entries
from jalien.wire.messages import Reply, Request, entries_of


class OutputMode(enum.Enum):
    ALL = "all"  # keys and the human ``message``
    NO_MESSAGE = "nomsg"  # keys only
    MESSAGE_ONLY = "nokeys"  # ``message`` only


class _JsonRequest(msgspec.Struct):
    command: str
    options: list[str | int | float | bool | None] = []


_request_decoder = msgspec.json.Decoder(_JsonRequest)
_encoder = msgspec.json.Encoder()


def _word(value: str | int | float | bool | None) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_request(text: bytes | str) -> tuple[Request, OutputMode]:
    """A JAliEn JSON request as a Request; ``-nomsg``/``-nokeys`` become the OutputMode.
    Anything wrong is a DecodeError (nesting too: see jalien.wire.codec)."""
    if nesting_exceeds(text.encode() if isinstance(text, str) else text):
        raise DecodeError(f"invalid JSON request: nested deeper than {MAX_NESTING} levels")
    try:
        raw = _request_decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid JSON request: {exc}") from None
    command = raw.command.strip()
    if not command:
        raise DecodeError("invalid JSON request: empty command")
    mode = OutputMode.ALL
    options: list[str] = []
    for value in raw.options:
        word = _word(value)
        if word == "-nomsg":
            mode = OutputMode.NO_MESSAGE
        elif word == "-nokeys":
            mode = OutputMode.MESSAGE_ONLY
        else:
            options.append(word)
    return Request(command=command, options=options), mode


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _record(record: dict[str, Any], mode: OutputMode) -> dict[str, str]:
    if mode is OutputMode.MESSAGE_ONLY:
        return {"message": _text(record.get("message", ""))}
    out = {k: v if type(v) is str else _text(v) for k, v in record.items()}
    if mode is OutputMode.NO_MESSAGE:
        out.pop("message", None)
    return out


def records(reply: Reply, mode: OutputMode) -> list[dict[str, str]]:
    """The JAliEn records of one reply (or one page of a streamed reply)."""
    out = [_record(r, mode) for r in reply.results]
    if reply.entries:
        rendered = render_entries(entries_of(reply), reply.view, reply.metadata)
        if mode is OutputMode.ALL:  # views give strings only: no copy needed
            out.extend(rendered)
        else:
            out.extend(_record(r, mode) for r in rendered)
    return out


def metadata_of(reply: Reply) -> dict[str, str]:
    metadata = {k: v for k, v in reply.metadata.items() if not k.startswith("_")}
    metadata["exitcode"] = str(reply.exitcode)
    metadata["error"] = reply.error
    return metadata


def render_reply(reply: Reply, mode: OutputMode = OutputMode.ALL) -> bytes:
    """The JSON text JAliEn would send for *reply* (metadata values are strings)."""
    return _encoder.encode({"metadata": metadata_of(reply), "results": records(reply, mode)})


STREAM_START = b'{"results":['


_PAGES = 256  # rendered pages of typed rows kept, with the row lists they were made of
_PAGE_ROWS = 512  # of at most this many rows (a small directory, whole)
_PACKED_KEPT = 1 << 15  # bytes of a packed page whose text is kept (a small directory)
_pages: dict[tuple[int, str, str, OutputMode], tuple[Any, bytes]] = {}


def render_page(reply: Reply, mode: OutputMode, first: bool) -> bytes:
    """One page of a streamed reply: records separated by commas, no brackets. A page of
    typed rows only is rendered once while its rows live on (a listing the catalogue
    keeps, ``sqlstore.kept_reads``, is the same object each time it is asked). Rows packed
    from SQLite (``msgspec.Raw``) are written straight from them for the views that can
    (``listing_views.packed_json``), else decoded."""
    entries = reply.entries
    packed = type(entries) is msgspec.Raw
    kept = bool(entries) and not reply.results
    if kept:
        kept = len(entries) <= (_PACKED_KEPT if packed else _PAGE_ROWS)
    key = (id(entries), reply.view, reply.metadata.get("_listing", ""), mode)
    made = _pages.get(key) if kept else None
    if made is not None and made[0] is entries:  # the rows are held: their id is their own
        body = made[1]
    else:
        written = None
        if packed and mode is OutputMode.ALL and not reply.results:
            written = packed_json(bytes(entries), reply.view, reply.metadata)  # type: ignore[arg-type]
        body = _encoder.encode(records(reply, mode))[1:-1] if written is None else written
        if kept:
            if len(_pages) >= _PAGES:
                del _pages[next(iter(_pages))]
            _pages[key] = (entries, body)
    if not body:
        return b""
    return body if first else b"," + body


def render_stream_end(reply: Reply) -> bytes:
    """Closes a streamed reply; the metadata of the last page counts (JSON key order does
    not matter to JAliEn clients, so it may come after the results)."""
    return b'],"metadata":' + _encoder.encode(metadata_of(reply)) + b"}"


def error_reply_json(exitcode: int, error: str, metadata: dict[str, str]) -> bytes:
    """A reply for a request that never reached a command (bad JSON, too big, ...)."""
    return render_reply(Reply(exitcode=exitcode, error=error, metadata=metadata))
