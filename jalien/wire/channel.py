"""The binary channel as a state machine without I/O: bytes in, events out; replies in,
bytes out (the shape of h11 and of asyncpg's protocol core).

``ServerChannel`` is a server's side of one connection, ``ClientChannel`` a client's.
Neither touches a socket, a task or a clock: ``net/`` feeds them what the transport read
and writes what they return, and keeps sockets, tasks and backpressure. Everything the
channel itself rules lives here, once:

- frames (``wire.framing``) and the codec chosen by a frame's flags: ``decode`` is the one
  place a body becomes a message, on every side and level;
- stream ids (``wire.streams``): which channels are open, which requests are in flight;
  a request on a channel not open, on sequence 0, or on a stream still in flight, and a
  client sending anything but requests and control messages, are answered with exit 22
  by the server (an ``Invalid`` event says what to answer);
- OpenChannel / CloseChannel / Cancel, and FLAG_MORE: a streamed reply is frames flagged
  MORE but the last; ``ServerChannel.end`` closes any stream that has not sent its last
  frame with an empty final reply, so a stream that produced nothing still answers.

A ``ProtocolError`` from ``receive`` (bad header, bad compressed body) means the connection
must go; a body that is not a message is an ``Invalid`` event and the connection goes on.
"""

from __future__ import annotations

import collections

import msgspec

from jalien.wire import codec, framing
from jalien.wire.codec import DecodeError
from jalien.wire.errors import EXIT_INVALID
from jalien.wire.messages import (
    Cancel,
    CloseChannel,
    Event,
    Message,
    OpenChannel,
    Reply,
    Request,
)
from jalien.wire.streams import CONTROL_SEQ, SEQ_BITS, SEQ_MASK, stream_id

_FLAGS = 3  # offset of the flags byte in a frame header
_encode = codec.msgpack_encoder.encode
_decode_msgpack = codec.decode_msgpack
_CODEC_MASK = framing.CODEC_MASK
_CODEC_JSON = framing.CODEC_JSON

__all__ = [
    "CancelReceived",
    "ChannelClosed",
    "ClientChannel",
    "ControlReply",
    "EventReceived",
    "Invalid",
    "OpenRequested",
    "ReplyFrame",
    "RequestReceived",
    "ServerChannel",
    "decode",
    "decode_reply",
]


def decode(flags: int, body: bytes) -> Message:
    """A frame's body as a message, by its flags: inflated when compressed, JSON or
    MessagePack by the codec bits. DecodeError (or ProtocolError for a bad compressed
    body) when it is not one."""
    if flags & framing.FLAG_COMPRESSED:
        body = framing.decompress(body)
    if flags & framing.CODEC_MASK == framing.CODEC_JSON:
        return codec.decode_json(body)
    return codec.decode_msgpack(body)


def decode_reply(flags: int, body: bytes) -> Reply:
    """A reply frame's body as a Reply; DecodeError for anything else."""
    message = decode(flags, body)
    if type(message) is not Reply:
        raise DecodeError(f"server answered with {type(message).__name__}, not a reply")
    return message


# -- events of the server side


class RequestReceived(msgspec.Struct, gc=False):
    """A request on a fresh stream of an open channel; *flags* and *body* are the frame as
    it arrived (inflated), for a level that forwards it untouched."""

    stream: int
    request: Request
    flags: int
    body: bytes


class CancelReceived(msgspec.Struct, gc=False):
    """The client gave up a request still in flight: stop its work."""

    stream: int


class OpenRequested(msgspec.Struct, gc=False):
    """A level asks for a channel (a session of one of its clients). The server decides
    who it is, then ``ServerChannel.open`` it (answering on *stream*) or refuses."""

    stream: int
    channel: int
    dn: str
    cert: bytes


class ChannelClosed(msgspec.Struct, gc=False):
    """A channel ended (CloseChannel); *streams* were still in flight on it."""

    channel: int
    streams: list[int]


class Invalid(msgspec.Struct, gc=False):
    """A frame the server answers with exit 22 on *stream* (``ServerChannel.invalid``);
    *undecodable*: its body was no message at all."""

    stream: int
    error: str
    undecodable: bool = False


ServerEvent = RequestReceived | CancelReceived | OpenRequested | ChannelClosed | Invalid


class ServerChannel:
    """A server's side of one binary connection. Channel 0 is open from the start."""

    __slots__ = ("_decoder", "_frames", "_held", "_open", "compress_threshold", "streams")

    def __init__(
        self,
        max_frame_size: int = framing.DEFAULT_MAX_FRAME,
        compress_threshold: int = framing.DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        self._decoder = framing.FrameDecoder(max_frame_size)
        self._frames: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self.compress_threshold = compress_threshold
        self.streams: set[int] = set()  # requests in flight: no final frame sent yet
        self._open: set[int] = {0}  # open channels
        # a stream's latest page, encoded, held back until the next one says whether it
        # was the last (the last page's exit code, error and metadata count)
        self._held: dict[int, bytearray] = {}

    @property
    def buffered(self) -> int:
        """Bytes of a frame not complete yet."""
        return self._decoder.buffered

    def is_open(self, channel: int) -> bool:
        return channel in self._open

    # -- bytes in
    def feed(self, data: bytes) -> None:
        """Take bytes read (any chunking); ProtocolError: the connection must go. Their
        frames wait for ``next_event``."""
        frames = self._decoder.feed(data)
        if frames:
            self._frames.extend(frames)

    @property
    def pending(self) -> int:
        """Frames received and not yet taken as events."""
        return len(self._frames)

    def next_event(self) -> ServerEvent | None:
        """The next event, None when none is complete. One at a time, as h11 does: a
        frame is judged after the server has acted on the one before (a request right
        behind its channel's OpenChannel finds the channel open), and a server that
        cannot write stops taking events, leaving the rest here."""
        frames = self._frames
        if not frames:
            return None
        sid, flags, body = frames.popleft()
        try:
            if flags & _CODEC_MASK == _CODEC_JSON:
                message: Message = codec.decode_json(body)
            else:
                message = _decode_msgpack(body)
        except DecodeError as exc:
            return Invalid(sid, str(exc), True)
        channel = sid >> SEQ_BITS
        kind = type(message)
        if kind is Request:  # the hot path first
            if channel not in self._open:
                return Invalid(sid, f"channel {channel} not open")
            if not sid & SEQ_MASK:
                return Invalid(sid, "requests need a sequence > 0")
            streams = self.streams
            if sid in streams:
                return Invalid(sid, "stream id already in use")
            streams.add(sid)
            return RequestReceived(sid, message, flags, body)  # type: ignore[arg-type]
        return self._control(sid, channel, kind, message)

    def receive(self, data: bytes) -> list[ServerEvent]:
        """``feed`` then every event (the channel's state as it is now judges them all)."""
        self.feed(data)
        events: list[ServerEvent] = []
        while True:
            event = self.next_event()
            if event is None:
                return events
            events.append(event)

    def _control(self, sid: int, channel: int, kind: type, message: Message) -> ServerEvent:
        if kind is Cancel:
            return CancelReceived(sid)
        if kind is OpenChannel:
            if channel == 0 or sid & SEQ_MASK != CONTROL_SEQ:
                return Invalid(sid, "OpenChannel needs channel > 0")
            return OpenRequested(sid, channel, message.dn, message.cert)  # type: ignore[union-attr]
        if kind is CloseChannel:
            return ChannelClosed(channel, self.close(channel) if channel else [])
        return Invalid(sid, "clients send requests only")

    # -- channels
    def open(self, channel: int) -> list[int]:
        """Open *channel* (again): the streams of its earlier session, which end."""
        dropped = self.close(channel)
        self._open.add(channel)
        return dropped

    def close(self, channel: int) -> list[int]:
        """Forget *channel*; the streams still in flight on it (their replies may still be
        written: the client ignores them)."""
        if channel not in self._open:
            return []
        self._open.discard(channel)
        streams = [sid for sid in self.streams if sid >> SEQ_BITS == channel]  # rare: a scan
        self.streams.difference_update(streams)
        for sid in streams:
            self._held.pop(sid, None)
        return streams

    def _ended(self, sid: int) -> None:
        if self._held:
            self._held.pop(sid, None)
        self.streams.discard(sid)

    # -- bytes out
    def reply(self, sid: int, message: Reply | Event, more: bool = False) -> bytes:
        """A frame for *message* on *sid*; the stream ends unless *more*."""
        if more:
            flags = framing.FLAG_MORE
            return framing.encode_frame(sid, _encode(message), flags, self.compress_threshold)
        if self._held:
            self._held.pop(sid, None)
        self.streams.discard(sid)
        return framing.encode_frame(sid, _encode(message), 0, self.compress_threshold)

    def reply_raw(self, sid: int, flags: int, body: bytes) -> bytes:
        """A reply frame as it came from upstream (a level): only the header changes; the
        stream ends unless its flags say MORE."""
        if not flags & framing.FLAG_MORE:
            self._ended(sid)
        return framing.encode_raw(sid, flags, body)

    def held(self, sid: int) -> bool:
        return sid in self._held

    def page(self, sid: int, reply: Reply) -> bytes:
        """A page of a streamed reply: it is held (encoded) and the page held before, if
        any, is returned flagged MORE. ``end`` sends the last one as final."""
        held = self._held.pop(sid, None)
        frame = bytearray(
            framing.encode_frame(sid, codec.encode_msgpack(reply), 0, self.compress_threshold)
        )
        self._held[sid] = frame
        if held is None:
            return b""
        held[_FLAGS] |= framing.FLAG_MORE
        return bytes(held)

    def drop_held(self, sid: int) -> None:
        """Forget the page held for *sid* (a cancelled stream's answer is its reason)."""
        self._held.pop(sid, None)

    def finish(self, sid: int, reply: Reply) -> bytes:
        """End a stream with *reply* (an error after some pages): the held page flagged
        MORE, then *reply* as the final frame."""
        held = self._held.pop(sid, None)
        data = self.reply(sid, reply)
        if held is None:
            return data
        held[_FLAGS] |= framing.FLAG_MORE
        return bytes(held) + data

    def end(self, sid: int) -> bytes:
        """Close *sid* if it has not sent its last frame: the held page as the final one,
        else an empty final reply (a stream that produced nothing, or whose last raw frame
        was flagged MORE); nothing when it has ended."""
        held = self._held.pop(sid, None)
        if held is not None:
            self._ended(sid)
            return bytes(held)
        if sid not in self.streams:
            return b""
        return self.reply(sid, Reply())

    def invalid(self, event: Invalid) -> bytes:
        return self.reply(event.stream, Reply(exitcode=EXIT_INVALID, error=event.error))

    def push(self, channel: int, event: Event) -> bytes:
        """An event pushed to *channel*'s client (its sequence 0)."""
        return self.reply(stream_id(channel, CONTROL_SEQ), event)


# -- events of the client side


class ReplyFrame(msgspec.Struct, gc=False):
    """One frame of the answer to a request, raw (maybe compressed: ``decode_reply``);
    *final*: the last one of its stream."""

    stream: int
    flags: int
    body: bytes
    final: bool


class EventReceived(msgspec.Struct, gc=False):
    """An event the server pushed to *channel* (e.g. ``kill`` for a JobAgent)."""

    channel: int
    event: Event


class ControlReply(msgspec.Struct, gc=False):
    """A reply on a channel's sequence 0: the answer to OpenChannel, or on channel 0 a
    refusal of the connection's credential (``net.refusal``) before the server closes."""

    channel: int
    reply: Reply


ClientEvent = ReplyFrame | EventReceived | ControlReply


class ClientChannel:
    """A client's side of one binary connection. Stream ids are the caller's (a client
    keeps them across connections); the channel knows which are in flight on this one."""

    __slots__ = ("_decoder", "bad_control", "compress_threshold", "streams")

    def __init__(
        self,
        max_frame_size: int = framing.DEFAULT_MAX_FRAME,
        compress_threshold: int = framing.DEFAULT_COMPRESS_THRESHOLD,
    ) -> None:
        self._decoder = framing.FrameDecoder(max_frame_size, raw=True)
        self.compress_threshold = compress_threshold
        self.streams: set[int] = set()  # requests sent, last frame not received
        self.bad_control: list[str] = []  # undecodable control messages (to log)

    # -- bytes out
    def request(self, sid: int, body: bytes, flags: int = 0) -> bytes:
        """A request frame (*body* encoded already, e.g. forwarded as it came)."""
        if not sid & SEQ_MASK:
            raise ValueError("requests need a sequence > 0")
        self.streams.add(sid)
        if flags & framing.FLAG_COMPRESSED:
            return framing.encode_raw(sid, flags, body)
        return framing.encode_frame(sid, body, flags & framing.CODEC_MASK, self.compress_threshold)

    def send_request(self, sid: int, request: Request) -> bytes:
        return self.request(sid, codec.encode_msgpack(request))

    def cancel(self, sid: int) -> bytes:
        """Give up *sid*: its later frames are dropped."""
        self.streams.discard(sid)
        return framing.encode_frame(sid, codec.encode_msgpack(Cancel()))

    def open_channel(self, channel: int, dn: str = "", cert: bytes = b"") -> bytes:
        message = OpenChannel(dn=dn, cert=cert)
        return framing.encode_frame(stream_id(channel, CONTROL_SEQ), codec.encode_msgpack(message))

    def close_channel(self, channel: int) -> bytes:
        prefix = channel << SEQ_BITS
        self.streams = {s for s in self.streams if s >> SEQ_BITS != channel}
        return framing.encode_frame(prefix, codec.encode_msgpack(CloseChannel()))

    # -- bytes in
    def receive(self, data: bytes) -> list[ClientEvent]:
        """The events in *data* (any chunking); ProtocolError: the connection must go.
        Frames of streams not in flight (cancelled, unknown) are dropped."""
        events: list[ClientEvent] = []
        streams = self.streams
        for sid, flags, body in self._decoder.feed(data):
            if sid & SEQ_MASK:
                if sid in streams:
                    final = not flags & framing.FLAG_MORE
                    if final:
                        streams.discard(sid)
                    events.append(ReplyFrame(sid, flags, body, final))
                continue
            control = self._control(sid >> SEQ_BITS, flags, body)
            if control is not None:
                events.append(control)
        return events

    def _control(self, channel: int, flags: int, body: bytes) -> ClientEvent | None:
        try:
            message = decode(flags, body)
        except (framing.ProtocolError, DecodeError) as exc:
            self.bad_control.append(f"bad control message on channel {channel}: {exc}")
            return None
        if type(message) is Event:
            return EventReceived(channel, message)
        if type(message) is Reply:
            return ControlReply(channel, message)
        self.bad_control.append(f"unexpected {type(message).__name__} on channel {channel}")
        return None
