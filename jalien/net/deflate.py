"""WebSocket permessage-deflate (RFC 7692), server side, without I/O.

- ``negotiate(offer)``: the answer to a client's ``Sec-WebSocket-Extensions`` offer (None when
  it offers no usable permessage-deflate). The server always asks for
  ``server_no_context_takeover`` and ``client_no_context_takeover``: no compressor or
  decompressor is kept between messages, so a connection holds no zlib state (~300 KiB a
  pair with context takeover) while it is idle.
- ``inflate(payload, limit)``: a message received with RSV1, bounded: a message inflating
  above *limit* raises ``TooBig`` after at most *limit* + 1 bytes were produced (a zip bomb
  costs nothing).
- ``MessageDeflater``: one message's compressor, whole (``compress``) or as fragments of a
  streamed message (``fragment`` each, the last with ``final=True``).
"""

from __future__ import annotations

import zlib

import msgspec

EXTENSION = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"


class TooBig(Exception):
    """A compressed message inflating above the limit."""


class BadData(Exception):
    """A compressed message that is not raw deflate data."""


class Agreement(msgspec.Struct, frozen=True):
    """What was negotiated: the header to answer with and the server's window."""

    header: str
    server_max_window_bits: int = 15


def _params(text: str) -> tuple[str, dict[str, str | None]] | None:
    parts = [p.strip() for p in text.split(";")]
    name = parts[0].lower()
    params: dict[str, str | None] = {}
    for raw in parts[1:]:
        if not raw:
            continue
        key, eq, value = raw.partition("=")
        key = key.strip().lower()
        if key in params:
            return None  # a parameter given twice: this offer is declined (RFC 7692 5.1)
        params[key] = value.strip().strip('"') if eq else None
    return name, params


def negotiate(offer: str | None) -> Agreement | None:
    """The agreement answering the first acceptable permessage-deflate offer of *offer*
    (the request's Sec-WebSocket-Extensions, offers separated by commas), or None."""
    if not offer:
        return None
    for item in offer.split(","):
        parsed = _params(item)
        if parsed is None or parsed[0] != EXTENSION:
            continue
        params = parsed[1]
        window = 15
        ok = True
        for key, value in params.items():
            if key in ("server_no_context_takeover", "client_no_context_takeover"):
                ok = value is None
            elif key == "server_max_window_bits":
                ok = value is not None and value.isdigit() and 8 <= int(value) <= 15
                if ok:
                    window = int(value)  # type: ignore[arg-type]
            elif key == "client_max_window_bits":
                ok = value is None or (value.isdigit() and 8 <= int(value) <= 15)
            else:
                ok = False  # a parameter this server does not know: decline this offer
            if not ok:
                break
        if not ok:
            continue
        header = f"{EXTENSION}; server_no_context_takeover; client_no_context_takeover"
        if "server_max_window_bits" in params:
            header += f"; server_max_window_bits={window}"
        # zlib cannot deflate with a window of 8: 9 is the smallest it makes (and reads)
        return Agreement(header, max(window, 9))
    return None


def inflate(payload: bytes | memoryview, limit: int) -> bytes:
    """The message compressed in *payload* (RSV1 set on its first frame), at most *limit*
    bytes: TooBig past it, BadData when it is not raw deflate data."""
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(bytes(payload) + _TAIL, limit + 1)
    except zlib.error as exc:
        raise BadData(f"invalid compressed message: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise TooBig(f"message inflates above {limit} bytes")
    return data


class MessageDeflater:
    """The compressor of one outgoing message (no context takeover: one per message)."""

    __slots__ = ("_zip",)

    def __init__(self, level: int = 1, window: int = 15) -> None:
        self._zip = zlib.compressobj(level, zlib.DEFLATED, -window)

    def fragment(self, data: bytes, final: bool = False) -> bytes:
        """The compressed bytes of the next fragment; the last one (*final*) ends the
        message without the 00 00 ff ff tail (RFC 7692 7.2.1)."""
        out = self._zip.compress(data) + self._zip.flush(zlib.Z_SYNC_FLUSH)
        if final:
            if out.endswith(_TAIL):
                out = out[:-4]
            return out or b"\x00"  # an empty message is one empty stored block
        return out


def compress(data: bytes, level: int = 1, window: int = 15) -> bytes:
    """*data* as one compressed message."""
    return MessageDeflater(level, window).fragment(data, final=True)


class Stats:
    """What a server compressed: messages, bytes before and after (a counter for tests,
    the bench and the logs)."""

    __slots__ = ("messages", "raw", "sent")

    def __init__(self) -> None:
        self.messages = 0
        self.raw = 0
        self.sent = 0

    def count(self, raw: int, sent: int, final: bool) -> None:
        self.raw += raw
        self.sent += sent
        if final:
            self.messages += 1
