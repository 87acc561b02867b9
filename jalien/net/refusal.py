"""A server's refusal of a credential, as both ends of the binary channel see it.

A server that will not (or no longer) serve a connection's credential says so before it
closes: a ``Reply`` with exit code 13 on stream 0 (channel 0, control), its ``error`` the
reason for the user, ``metadata["refused"]`` the kind for programs:

* ``unauthorized``: the certificate is trusted but names no account, or a revoked one
  (sent right after the TLS handshake; WebSocket clients get HTTP 401 instead);
* ``expired``: the certificate, token or proxy the connection was opened with reached its
  notAfter (WebSocket: a close frame, code 1008 policy violation). A client that has fresh
  credentials reconnects with them; a request on a channel whose own (forwarded) identity
  has expired gets the same Reply as its answer.
"""

from __future__ import annotations

import datetime as dt

from jalien.wire.errors import EXIT_PERMISSION
from jalien.wire.messages import Reply

REFUSED = "refused"  # the metadata key of a refusal Reply
UNAUTHORIZED = "unauthorized"
EXPIRED = "expired"
WS_REASON_MAX = 123  # bytes of a WebSocket close frame's reason


def refusal(kind: str, text: str) -> Reply:
    return Reply(exitcode=EXIT_PERMISSION, error=text, metadata={REFUSED: kind})


def refusal_kind(reply: Reply) -> str:
    """The kind of a refusal Reply, "" for any other Reply."""
    return reply.metadata.get(REFUSED, "") if reply.exitcode == EXIT_PERMISSION else ""


def not_authorized(reason: str) -> str:
    return f"not authorized: {reason}"


def expired_text(dn: str, expires: float) -> str:
    when = dt.datetime.fromtimestamp(expires, dt.UTC)
    return (
        f"credential expired at {when:%Y-%m-%d %H:%M:%S} UTC: {dn}; "
        "renew it (a new token or proxy) and connect again"
    )


def ws_reason(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes of UTF-8, cut on a character boundary."""
    data = text.encode()
    if len(data) <= WS_REASON_MAX:
        return data
    return data[: WS_REASON_MAX - 3].decode(errors="ignore").encode() + b"..."
