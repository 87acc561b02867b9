"""Limits that protect a server from one greedy or broken client."""

from __future__ import annotations

import msgspec


class Limits(msgspec.Struct, kw_only=True, frozen=True):
    max_message_size: int = 16 * 1024 * 1024  # one frame / one WebSocket message
    max_connections: int = 10_000
    max_in_flight: int = 1024  # requests of one connection being served at once
    idle_timeout: float = 3600.0  # seconds without traffic before a connection is closed
    write_buffer_high: int = 4 * 1024 * 1024  # stop reading a client that does not read
    handshake_timeout: float = 15.0
    compress_threshold: int = 8 * 1024
    # frames to a peer on this host (loopback, Unix socket) compressed too: off, as bytes
    # there cost a copy and zlib only CPU (net.peers)
    compress_local: bool = False
    # WebSocket permessage-deflate (net.deflate): negotiated when a client offers it;
    # replies of at least deflate_threshold bytes are compressed at deflate_level
    deflate: bool = True
    deflate_threshold: int = 8 * 1024
    deflate_level: int = 1
    # fairness between identities (net.fairness): requests in flight of one identity
    # (login) across its connections and channels: past soft its connections are not read,
    # past hard a request is answered busy (EXIT_BUSY); pages of streamed replies produced
    # at once (turns), waiters served round-robin by identity
    identity_soft: int = 256
    identity_hard: int = 1024
    turns: int = 2


def limits_from(settings: object) -> Limits:
    """The limits a role's settings give: each field of Limits is a setting of the same name
    (jalien.config.Settings; JALIEN_IDENTITY_SOFT=64 ...), missing ones keep their default."""
    given = {
        name: getattr(settings, name)
        for name in Limits.__struct_fields__
        if hasattr(settings, name)
    }
    return Limits(**given)
