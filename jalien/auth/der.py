"""Just enough DER to build the few structures `cryptography` does not encode for us.

The subject hash needs the canonical re-encoding of a Name and RFC 3820 proxies need the
proxyCertInfo extension value; both are a handful of TLVs, so a tiny reader and writer is
simpler than another dependency.
"""

from __future__ import annotations

from .errors import AuthError

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
OCTET_STRING = 0x04
INTEGER = 0x02
UTF8_STRING = 0x0C
NUMERIC_STRING = 0x12
PRINTABLE_STRING = 0x13
T61_STRING = 0x14
IA5_STRING = 0x16
VISIBLE_STRING = 0x1A
UNIVERSAL_STRING = 0x1C
BMP_STRING = 0x1E


def encode_length(length: int) -> bytes:
    """DER definite length: short form below 128, else long form."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    """One tag-length-value element (single-byte tags only)."""
    return bytes([tag]) + encode_length(len(value)) + value


def encode_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form, e.g. ``1.3.6.1.5.5.7.21.1``."""
    try:
        arcs = [int(part) for part in dotted.split(".")]
    except ValueError:
        raise AuthError(f"not an object identifier: {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or min(arcs) < 0:
        raise AuthError(f"not an object identifier: {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Read one element at *offset*: ``(tag, value, offset after it)``."""
    try:
        tag = data[offset]
        first = data[offset + 1]
    except IndexError:
        raise AuthError("truncated DER data") from None
    if tag & 0x1F == 0x1F:
        raise AuthError("multi-byte DER tags are not supported")
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or pos + count > len(data):
            raise AuthError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise AuthError("truncated DER data")
    return tag, data[pos:end], end


def read_all(data: bytes) -> list[tuple[int, bytes]]:
    """All consecutive elements of *data* (the contents of a SEQUENCE or SET)."""
    items = []
    offset = 0
    while offset < len(data):
        tag, value, offset = read_tlv(data, offset)
        items.append((tag, value))
    return items


def encode_set_of(encoded_items: list[bytes]) -> bytes:
    """A DER SET OF: members sorted by their encodings (X.690 11.6)."""
    return tlv(SET, b"".join(sorted(encoded_items)))
