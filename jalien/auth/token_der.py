"""Token certificates signed from a template, because a job token is issued on every match.

cryptography's ``CertificateBuilder`` checks and encodes every name and extension again for
each certificate (~70 us of a ~120 us token, and two to three times more in a busy server
whose caches hold other things). Every token of one kind shares its issuer, signature
algorithm and extensions but the key identifier, so ``TokenTemplate`` cuts those DER bytes
once from a certificate the builder made, and each token only encodes its serial number,
validity, subject, public key and key identifier around them before the CA signs the bytes.
The result is byte for byte what the builder makes from the same inputs (tested).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SEQUENCE, SET, INTEGER, BIT_STRING, OCTET_STRING, OID = 0x30, 0x31, 0x02, 0x03, 0x04, 0x06
UTF8, PRINTABLE, UTC_TIME, GENERALIZED_TIME = 0x0C, 0x13, 0x17, 0x18
EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate

# attribute types of token subjects, as DER OBJECT IDENTIFIERs (X.520: 2.5.4.x)
COUNTRY, ORGANIZATION, UNIT, COMMON_NAME = (bytes([OID, 3, 0x55, 4, n]) for n in (6, 10, 11, 3))
SKI_OID = bytes([OID, 3, 0x55, 0x1D, 0x0E])  # 2.5.29.14 subjectKeyIdentifier


def _header(tag: int, size: int) -> bytes:
    if size < 0x80:
        return bytes((tag, size))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets


def tlv(tag: int, body: bytes) -> bytes:
    return _header(tag, len(body)) + body


def children(der: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """(start, content start, end) of each element from *start* to *end* (definite lengths,
    one-byte tags: enough for certificates)."""
    end = len(der) if end is None else end
    out = []
    while start < end:
        size, at = der[start + 1], start + 2
        if size & 0x80:
            count = size & 0x7F
            size, at = int.from_bytes(der[at : at + count], "big"), at + count
        out.append((start, at, at + size))
        start = at + size
    return out


def integer(value: int) -> bytes:
    """A non-negative INTEGER (a leading zero byte when the high bit would be set)."""
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def time_value(moment: dt.datetime) -> bytes:
    """RFC 5280: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC."""
    moment = moment.astimezone(dt.UTC)
    if moment.year < 2050:
        return tlv(UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())


def name(pairs: list[tuple[bytes, str]]) -> bytes:
    """A Name of one attribute per RDN, as cryptography encodes it (countryName as a
    PrintableString, every other attribute as a UTF8String)."""
    rdns = b"".join(
        tlv(SET, tlv(SEQUENCE, oid + tlv(PRINTABLE if oid == COUNTRY else UTF8, value.encode())))
        for oid, value in pairs
    )
    return tlv(SEQUENCE, rdns)


def key_identifier(spki: bytes) -> bytes:
    """RFC 5280 method 1 (what cryptography's ``SubjectKeyIdentifier.from_public_key``
    computes): SHA-1 of the subjectPublicKey BIT STRING's bits."""
    ((_, body, end),) = children(spki)
    _, bits_body, bits_end = children(spki, body, end)[1]
    return hashlib.sha1(spki[bits_body + 1 : bits_end], usedforsecurity=False).digest()


def signer(ca_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """SHA-256 signatures by *ca_key*: ECDSA, or RSA PKCS#1 v1.5 as the builder signs."""
    if isinstance(ca_key, ec.EllipticCurvePrivateKey):
        algorithm = ec.ECDSA(hashes.SHA256())
        return lambda data: ca_key.sign(data, algorithm)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return lambda data: ca_key.sign(data, pkcs1, sha256)


class TokenTemplate:
    """What every token cut from *sample* shares; ``certificate`` adds the rest.

    *sample* must carry the subjectKeyIdentifier as its last extension: that one is each
    token's own."""

    def __init__(
        self, sample: x509.Certificate, ca_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ) -> None:
        tbs = sample.tbs_certificate_bytes
        ((_, body, end),) = children(tbs)
        parts = children(tbs, body, end)
        if len(parts) != 8 or tbs[parts[7][0]] != EXTENSIONS:
            raise ValueError("a token template needs a v3 certificate with extensions")
        version, _, algorithm, issuer = (tbs[s:e] for s, _, e in parts[:4])
        self._head = version
        self._algorithm_issuer = algorithm + issuer
        self._algorithm = algorithm
        _, ext_body, ext_end = parts[7]
        ((_, seq_body, seq_end),) = children(tbs, ext_body, ext_end)
        extensions = children(tbs, seq_body, seq_end)
        last_start, last_body, last_end = extensions[-1]
        if not tbs[last_body:last_end].startswith(SKI_OID):
            raise ValueError("the template's last extension must be the subjectKeyIdentifier")
        self._extensions = tbs[seq_body:last_start]
        self._sign = signer(ca_key)

    def certificate(
        self,
        serial: int,
        not_before: dt.datetime,
        not_after: dt.datetime,
        subject: bytes,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    ) -> bytes:
        """The signed certificate (DER); *subject* is a DER Name (``name``)."""
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ski = tlv(SEQUENCE, SKI_OID + tlv(OCTET_STRING, tlv(OCTET_STRING, key_identifier(spki))))
        extensions = tlv(EXTENSIONS, tlv(SEQUENCE, self._extensions + ski))
        validity = tlv(SEQUENCE, time_value(not_before) + time_value(not_after))
        tbs = tlv(
            SEQUENCE,
            self._head
            + integer(serial)
            + self._algorithm_issuer
            + validity
            + subject
            + spki
            + extensions,
        )
        signature = tlv(BIT_STRING, b"\x00" + self._sign(tbs))
        return tlv(SEQUENCE, tbs + self._algorithm + signature)
