"""What the network layer asks of the layer above: sessions and request dispatch.

net knows nothing of commands: a role hands the server a Handler (the command table of
jalien.commands, or an upstream proxy) and the server calls it for every request,
whichever personality (WebSocket JSON or binary channel) it came through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

from jalien.net.identity import Identity
from jalien.wire.messages import Event, Reply, Request


class Pusher(Protocol):
    """Sends an Event to the client of a session (stream 0 of its channel)."""

    def __call__(self, event: Event) -> None: ...


class Handler(Protocol):
    def open_session(self, identity: Identity, push: Pusher, *, personality: str) -> Any:
        """A new client session (a connection, or a proxy's channel); returns its state."""
        ...

    def dispatch(
        self, session: Any, request: Request
    ) -> Reply | Awaitable[Reply] | AsyncIterator[Reply]:
        """Answer a request: a Reply at once (the hot path), an awaitable for real waits, or
        an async iterator of Replies for a streamed answer (a huge listing), sent as frames
        flagged FLAG_MORE but the last. Must not raise: errors are Replies with an exit
        code. A proxy level may also offer ``dispatch_raw(session, request, flags, body)``
        returning raw frames."""
        ...

    def close_session(self, session: Any) -> None: ...
