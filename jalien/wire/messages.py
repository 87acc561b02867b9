"""Every message jalien sends, as msgspec Structs in one tagged union.

On the binary channel the frame's stream id says which request a message belongs to
(see jalien.wire.streams), so no message carries an id of its own: a proxy can forward a
frame by rewriting its header only.

Evolution is append-only (msgspec's schema-evolution rules): a new field gets a default,
a field's type never changes, a tag is never reused. The same types encode to
MessagePack on the binary channel and to JSON; the JAliEn JSON shape of a reply is made
at the WebSocket edge only (jalien.wire.jalien_json).
"""

from __future__ import annotations

from typing import Any

import msgspec

Record = dict[str, Any]
"""One result row: a flat map, as JAliEn's JSONPrintWriter emits (``message`` is the text)."""


class Request(msgspec.Struct, tag="req", kw_only=True, omit_defaults=True):
    """Run *command* with *options* (the shell words after it) on behalf of the caller."""

    command: str
    options: list[str] = []
    data: list[bytes] = []  # binary arguments beside the text options (cache keys, values)


class DirEntry(msgspec.Struct, array_like=True, gc=False):
    """One catalogue entry of a listing, typed for the binary channel: a million of them
    decode several times faster than generic records. The JSON edge renders them as
    JAliEn's records. Fields are positional on the wire: append only, with defaults."""

    name: str
    type: str = "f"  # f file, d directory, c collection, l link (AliEn's letters)
    perm: str = "755"
    owner: str = ""
    gowner: str = ""
    size: int = 0
    ctime: int = 0  # milliseconds since the epoch
    md5: str = ""
    guid: str = ""
    jobid: int = 0


class Reply(msgspec.Struct, tag="rep", kw_only=True, omit_defaults=True):
    """The answer to one Request: JAliEn's exit code, error text, records and metadata.
    A long answer is several Replies on the request's stream, each frame but the last
    flagged FLAG_MORE; the exit code, error and metadata of the last one count."""

    exitcode: int = 0
    error: str = ""
    results: list[Record] = []
    # typed listing rows (ls, find) beside or instead of results; on a central, a listing's
    # pages come from SQLite encoded already (msgspec.Raw, ``_fast.rowpack``): sent as they
    # are, decoded by the other end as the list (``entries_of`` reads either)
    entries: list[DirEntry] | msgspec.Raw = []
    metadata: dict[str, str] = {}
    view: str = ""  # how entries render as JAliEn records (wire.listing_views.VIEWS)
    data: list[bytes | None] = []  # binary results, e.g. cache values (None: a miss)


decode_entries = msgspec.msgpack.Decoder(list[DirEntry]).decode
"""Packed rows (a MessagePack array of DirEntry arrays) as the rows."""


def entries_of(reply: Reply) -> list[DirEntry]:
    """A reply's entries as rows, decoded when they are still encoded."""
    entries = reply.entries
    return decode_entries(entries) if type(entries) is msgspec.Raw else entries


class Event(msgspec.Struct, tag="evt", kw_only=True, omit_defaults=True):
    """A message pushed by the server without a request, e.g. topic "kill" for a JobAgent."""

    topic: str
    payload: Record = {}


class Cancel(msgspec.Struct, tag="cancel", kw_only=True):
    """Sent on a request's stream: the client gave up (Ctrl-C, timeout); stop its work."""


class OpenChannel(msgspec.Struct, tag="open", kw_only=True, omit_defaults=True):
    """A proxy level opens a channel (a session of its own, with its own cwd) for one of
    its downstream clients, acting for *dn*. Sent on the channel's stream 0. Acting for
    another DN than the connection's own needs the "proxy" role.

    *cert* (DER) is the downstream client's own certificate, for the identities a DN cannot
    name: token certificates (a JobAgent, a job). The server then identifies the channel by
    that certificate, checking a token's signature against its token CA itself, so a level
    can pass on what it saw at its TLS handshake but cannot make up an identity."""

    dn: str = ""
    cert: bytes = b""


class CloseChannel(msgspec.Struct, tag="close", kw_only=True):
    """The downstream client of a channel went away: forget its session."""


Message = Request | Reply | Event | Cancel | OpenChannel | CloseChannel
