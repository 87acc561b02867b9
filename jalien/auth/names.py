"""Distinguished names in the grid's slash notation, and OpenSSL's subject hash.

Grid software (Globus, AliEn, JAliEn, alien.py) writes DNs the way OpenSSL's
``X509_NAME_oneline`` does: ``/DC=ch/DC=cern/OU=Users/CN=jdoe``, most significant RDN first,
in certificate order. Account maps and proxy checks compare these strings, so one function
produces them everywhere. Non-ASCII values are written as UTF-8 text (OpenSSL would print
``\\xHH`` escapes), which is what Java's JAliEn shows too.

The subject hash names files in a CA directory (``<hash>.0``) so OpenSSL's ``capath`` lookup
finds the issuer of a certificate; it must match OpenSSL bit for bit.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import der
from .errors import AuthError

# OpenSSL short names, as X509_NAME_oneline prints them.
_SHORT_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_OIDS: dict[str, str] = {short.lower(): dotted for dotted, short in _SHORT_NAMES.items()}
# Spellings other tools print for the same attributes.
_OIDS.update(
    {
        "e": "1.2.840.113549.1.9.1",
        "email": "1.2.840.113549.1.9.1",
        "userid": "0.9.2342.19200300.100.1.1",
        "commonname": "2.5.4.3",
        "organizationname": "2.5.4.10",
        "organizationalunitname": "2.5.4.11",
        "domaincomponent": "0.9.2342.19200300.100.1.25",
    }
)

_KEY = re.compile(r"([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)=")


def _short_name(oid: x509.ObjectIdentifier) -> str:
    return _SHORT_NAMES.get(oid.dotted_string, oid.dotted_string)


def dn_string(name: x509.Name) -> str:
    """``/C=ch/O=jalien/CN=jdoe``: RDNs in certificate order, multi-valued ones joined by +."""
    parts = []
    for rdn in name.rdns:
        values = [f"{_short_name(a.oid)}={a.value!s}" for a in rdn]
        parts.append("/" + "+".join(values))
    return "".join(parts)


def _oid_for(key: str) -> x509.ObjectIdentifier | None:
    if key[0].isdigit():
        return x509.ObjectIdentifier(key)
    dotted = _OIDS.get(key.lower())
    return x509.ObjectIdentifier(dotted) if dotted else None


def split_dn(dn: str) -> list[list[tuple[str, str]]]:
    """The RDNs of a slash DN as lists of ``(attribute, value)`` pairs.

    A ``/`` or ``+`` only starts a new component when a known attribute name and ``=``
    follow, so values such as ``CN=host/alice.cern.ch`` survive.
    """
    if not dn.startswith("/"):
        raise AuthError(f"DN {dn!r} must start with '/'")
    rdns: list[list[tuple[str, str]]] = []
    pos = 1
    new_rdn = True
    while pos <= len(dn):
        match = _KEY.match(dn, pos)
        if not match or _oid_for(match.group(1)) is None:
            raise AuthError(f"DN {dn!r}: unknown attribute at {dn[pos : pos + 20]!r}")
        key = match.group(1)
        start = match.end()
        end = start
        separator = ""
        while end < len(dn):
            char = dn[end]
            if char in "/+":
                nxt = _KEY.match(dn, end + 1)
                if nxt and _oid_for(nxt.group(1)) is not None:
                    separator = char
                    break
            end += 1
        if new_rdn:
            rdns.append([])
        rdns[-1].append((key, dn[start:end]))
        new_rdn = separator != "+"
        if not separator:
            break
        pos = end + 1
    return rdns


def parse_dn(dn: str) -> x509.Name:
    """The x509.Name of a slash DN (C and DC get the string types the standards require)."""
    rdns = []
    for rdn in split_dn(dn):
        attributes = []
        for key, value in rdn:
            oid = _oid_for(key)
            assert oid is not None  # split_dn checked it
            try:
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError as exc:
                raise AuthError(f"DN {dn!r}: bad value for {key}: {exc}") from None
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def normalize_dn(dn: str) -> str:
    """Rewrite a slash DN with OpenSSL's short attribute names (``E=`` → ``emailAddress=``)."""
    return dn_string(parse_dn(dn))


def common_name(name: x509.Name) -> str:
    """The last CN of *name* (a proxy's or user's most specific one), or empty."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[-1].value) if values else ""


# String types OpenSSL canonicalises (ASN1_MASK_CANON) and how to read them as text.
_CANON_CODECS: dict[int, str] = {
    der.UTF8_STRING: "utf-8",
    der.PRINTABLE_STRING: "latin-1",
    der.T61_STRING: "latin-1",
    der.IA5_STRING: "latin-1",
    der.VISIBLE_STRING: "latin-1",
    der.UNIVERSAL_STRING: "utf-32-be",
    der.BMP_STRING: "utf-16-be",
}
_SPACE = b" \t\n\v\f\r"
_SPACE_RUN = re.compile(rb"[ \t\n\v\f\r]+")


def _canon_value(tag: int, value: bytes) -> bytes:
    """OpenSSL's asn1_string_canon: UTF-8, ASCII lower-cased, spaces trimmed and collapsed."""
    codec = _CANON_CODECS.get(tag)
    if codec is None:
        return der.tlv(tag, value)
    try:
        text = value.decode(codec).encode("utf-8")
    except UnicodeDecodeError:
        raise AuthError("name attribute is not valid text for its string type") from None
    text = _SPACE_RUN.sub(b" ", text.strip(_SPACE)).lower()  # bytes.lower(): ASCII only
    return der.tlv(der.UTF8_STRING, text)


def canonical_name_bytes(name: x509.Name) -> bytes:
    """The canonical encoding OpenSSL hashes: each RDN's SET, re-encoded, concatenated."""
    tag, body, _ = der.read_tlv(name.public_bytes())
    if tag != der.SEQUENCE:
        raise AuthError("a Name must be a DER SEQUENCE")
    out = bytearray()
    for set_tag, set_body in der.read_all(body):
        if set_tag != der.SET:
            raise AuthError("an RDN must be a DER SET")
        members = []
        for seq_tag, seq_body in der.read_all(set_body):
            if seq_tag != der.SEQUENCE:
                raise AuthError("an attribute must be a DER SEQUENCE")
            items = der.read_all(seq_body)
            if len(items) != 2 or items[0][0] != der.OID:
                raise AuthError("an attribute must be an OID and a value")
            oid = der.tlv(der.OID, items[0][1])
            members.append(der.tlv(der.SEQUENCE, oid + _canon_value(*items[1])))
        out += der.encode_set_of(members)
    return bytes(out)


def subject_hash(name: x509.Name) -> str:
    """OpenSSL's X509_NAME_hash as 8 hex digits, the name of ``<hash>.0`` in a CA dir."""
    digest = hashlib.sha1(canonical_name_bytes(name)).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"
