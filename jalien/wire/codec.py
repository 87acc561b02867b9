"""Encoders and decoders of the message union, built once and shared (msgspec habit)."""

from __future__ import annotations

import msgspec

from jalien.wire.messages import Message

msgpack_encoder = msgspec.msgpack.Encoder()
msgpack_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
json_encoder = msgspec.json.Encoder()
json_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)


class DecodeError(ValueError):
    """A body that is not a valid message; the text says what was wrong and where."""


def encode_msgpack(message: Message) -> bytes:
    return msgpack_encoder.encode(message)


def decode_msgpack(body: bytes) -> Message:
    try:
        return msgpack_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"bad message: {exc}") from None


def encode_json(message: Message) -> bytes:
    return json_encoder.encode(message)


def decode_json(body: bytes | str) -> Message:
    try:
        return json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"bad message: {exc}") from None
