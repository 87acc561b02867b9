"""Encoders and decoders of the message union, built once and shared (msgspec habit).

Whatever the bytes, a decoder returns a message or raises DecodeError, never anything else:
the peer gets exit code 22 and the connection stays usable. Nesting is bounded:

- JSON: at most MAX_NESTING levels of arrays and objects, checked before msgspec sees the
  body (``nesting_exceeds``). A body with no more brackets than that cannot nest deeper,
  so a small request pays a length test or two ``bytes.count``; only a body with more
  brackets is looked at exactly.
- MessagePack: container markers are ordinary data bytes, so no cheap scan can find the
  depth. msgspec guards its own recursion (``Py_EnterRecursiveCall``): past the
  interpreter's limit it raises RecursionError at once, before any harm; that one error,
  from that one call, is the refusal. Typed fields fail at the first wrong type anyway:
  depth only reaches a ``dict[str, Any]`` value or an unknown field being skipped.
"""

from __future__ import annotations

import itertools
import re

import msgspec

from jalien.wire.messages import Message

msgpack_encoder = msgspec.msgpack.Encoder()
msgpack_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
json_encoder = msgspec.json.Encoder()
json_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)


class DecodeError(ValueError):
    """A body that is not a valid message; the text says what was wrong and where."""


MAX_NESTING = 64
"""Deepest nesting of JSON arrays/objects a decoder accepts (a request nests 2 levels, a
reply 3 or 4)."""

# a string, or an unterminated one up to the end (as msgspec reads it): every quote
# starts one match, so the scan stays linear whatever the quotes and backslashes
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}\\')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_FOLD = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def nesting_exceeds(body: bytes, limit: int = MAX_NESTING) -> bool:
    """True if the JSON text *body* nests arrays/objects deeper than *limit* anywhere that
    a parser reaches (brackets inside strings do not count). Cheap for the usual body."""
    if len(body) <= limit or body.count(b"[") + body.count(b"{") <= limit:
        return False  # not enough brackets to nest that deep
    # Brackets, quotes and backslashes alone. Without backslashes, a string holding no
    # bracket is an empty pair of quotes: with those gone, a quote is left only if some
    # string holds a bracket (or one is unterminated): then the exact scan below.
    skeleton = body.translate(_FOLD, _NOT_STRUCTURE)
    if b"\\" not in skeleton:
        skeleton = skeleton.replace(b'""', b"")
        if b'"' not in skeleton:
            # pass p takes away the pairs that hold p levels: a pair left for pass
            # limit + 1 is too deep; an unbalanced rest goes to the exact scan
            for _ in range(limit + 1):
                if not skeleton:
                    return False
                inner = skeleton.replace(b"[]", b"")
                if len(inner) == len(skeleton):
                    break
                skeleton = inner
            else:
                return True
    steps = _STRING.sub(b"", body).translate(_STEPS, _NOT_BRACKET)
    return max(itertools.accumulate(memoryview(steps).cast("b")), default=0) > limit


def _too_deep(kind: str) -> DecodeError:
    return DecodeError(f"bad message: {kind} nested deeper than {MAX_NESTING} levels")


def encode_msgpack(message: Message) -> bytes:
    return msgpack_encoder.encode(message)


def decode_msgpack(body: bytes) -> Message:
    try:
        return msgpack_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"bad message: {exc}") from None
    except RecursionError:  # msgspec's own depth guard (see the module's docstring)
        raise DecodeError("bad message: MessagePack nested too deeply") from None


def encode_json(message: Message) -> bytes:
    return json_encoder.encode(message)


def decode_json(body: bytes | str) -> Message:
    if nesting_exceeds(body.encode() if isinstance(body, str) else body):
        raise _too_deep("JSON")
    try:
        return json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"bad message: {exc}") from None
