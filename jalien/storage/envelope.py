"""Access envelopes: central's short-lived, signed permission to do one thing to one PFN.

An envelope is ``<body>.<signature>``, both base64url without padding, so that it travels
unescaped in a URL's ``authz`` parameter (alien.py appends it as it is). The body is a JSON
object (``Grant``): access type, PFN path, LFN, GUID, size, md5, SE, issue and expiry
times. The signature is Ed25519 over the body bytes, by a key that central makes under its
home on first start; SEs hold only the public half.

Access kinds: ``read`` and ``write`` are what ``access`` hands to clients (a write envelope
always books the file's size: the SE takes no byte beyond it and no fewer); ``delete`` and
``stat`` are central's own, never handed out: with a ``stat`` envelope central asks an SE
what it holds at a PFN (size and md5) before ``commit`` registers the replica, so that the
SE knows the question comes from central.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

READ, WRITE, DELETE, STAT = "read", "write", "delete", "stat"
LIST = "list"  # central's: an SE's listing of everything under the PFN path (dark data)
ACCESS_TYPES = (READ, WRITE, DELETE, STAT, LIST)
DEFAULT_LIFETIME = 3600.0  # seconds; a transfer must start before its envelope expires
STAT_LIFETIME = 120.0  # seconds; central's stat envelopes are used at once
KEY_FILE, PUB_FILE = "envelope.key", "envelope.pub"


class Grant(msgspec.Struct, kw_only=True, frozen=True):
    access: str  # read | write | delete | stat
    pfn: str  # the path part of the PFN URL, e.g. /se/04/12345/<guid>
    turl: str = ""  # the whole PFN URL, as the replica is registered
    lfn: str = ""
    guid: str = ""
    size: int = -1  # -1: unknown (never in a write envelope: it books the size)
    md5: str = ""
    se: str = ""
    user: str = ""  # who asked: only they may commit it
    issued: int = 0  # seconds since the epoch
    expires: int = 0


class EnvelopeError(Exception):
    """An envelope that must be refused; ``status`` is the HTTP status an SE answers."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Grant).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pfn_path(pfn: str) -> str:
    """The path of a PFN URL (what an SE sees in its request line)."""
    return urlsplit(pfn).path if "://" in pfn else pfn


def pfn_for(se_url: str, guid: str) -> str:
    """AliEn's PFN layout: ``<SE url>/NN/NNNNN/<guid>`` (two hash directories keep any
    directory small; the numbers come from the GUID, so the same GUID maps to one place)."""
    digest = hashlib.md5(guid.lower().encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:8], "big")
    base = se_url.rstrip("/")
    if is_xrootd(base) and not urlsplit(base).path:
        base += "/"  # XRootD spells an absolute path root://host:port//path, as JAliEn does
    return f"{base}/{value % 16:02d}/{(value >> 8) % 100000:05d}/{guid.lower()}"


def is_xrootd(url: str) -> bool:
    """An XRootD URL (root://, xroot://, roots://, xroots://): moved with xrdcp."""
    return url.partition("://")[0].lower() in ("root", "xroot", "roots", "xroots")


class EnvelopeSigner:
    """Central's half: signs grants. Also verifies (commit checks its own envelopes)."""

    def __init__(self, key: Ed25519PrivateKey, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._key = key
        self.verifier = EnvelopeVerifier(key.public_key())
        self.lifetime = lifetime

    @classmethod
    def load_or_create(cls, directory: Path, lifetime: float = DEFAULT_LIFETIME):
        """The key pair in *directory* (made, owner-only, when missing); returns (signer,
        created)."""
        key_path = directory / KEY_FILE
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{key_path} is not an Ed25519 key")
            return cls(key, lifetime), False
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = key_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, key_path)
        (directory / PUB_FILE).write_bytes(public_pem(key.public_key()))
        return cls(key, lifetime), True

    def sign(self, grant: Grant, now: float | None = None, lifetime: float | None = None) -> str:
        """The envelope of *grant*; one without an issue time gets *now* and expires after
        *lifetime* seconds (default: the signer's)."""
        now = time.time() if now is None else now
        if grant.access not in ACCESS_TYPES:
            raise ValueError(f"unknown access type {grant.access!r}")
        if grant.access == WRITE and grant.size < 0:
            raise ValueError("a write envelope books the file's size")
        if not grant.issued:
            life = self.lifetime if lifetime is None else lifetime
            grant = msgspec.structs.replace(grant, issued=int(now), expires=int(now + life))
        body = _encode(grant)
        return f"{_b64(body)}.{_b64(self._key.sign(body))}"

    def stat_envelope(self, grant: Grant, now: float | None = None) -> str:
        """Central's question to an SE about the replica a write *grant* allowed: a short
        ``stat`` envelope for the same PFN (never given to a client)."""
        question = Grant(access=STAT, pfn=grant.pfn, turl=grant.turl, guid=grant.guid, se=grant.se)
        return self.sign(question, now, STAT_LIFETIME)

    def list_envelope(self, se: str, path: str, now: float | None = None) -> str:
        """Central's request for an SE's listing of every file under *path* (a PFN path,
        e.g. the path of the SE's URL); never given to a client. It lives an hour: a
        listing of millions of files streams for a while, but it is checked at its start."""
        return self.sign(Grant(access=LIST, pfn=path, se=se), now, DEFAULT_LIFETIME)


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class EnvelopeVerifier:
    """An SE's half: checks signature, expiry and scope; raises EnvelopeError."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> EnvelopeVerifier:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        return cls(key)

    def open(self, envelope: str, now: float | None = None) -> Grant:
        """The grant inside a genuine, unexpired envelope."""
        if not envelope:
            raise EnvelopeError("no envelope (authz parameter) in the request", 401)
        body_text, _, sig_text = envelope.strip().partition(".")
        try:
            body, signature = _unb64(body_text), _unb64(sig_text)
        except (binascii.Error, ValueError):
            raise EnvelopeError("malformed envelope", 401) from None
        if not body or len(signature) != 64:  # Ed25519 signatures are 64 bytes
            raise EnvelopeError("malformed envelope", 401)
        try:
            self._key.verify(signature, body)
        except InvalidSignature:
            raise EnvelopeError("envelope signature does not verify (forged or altered)") from None
        try:
            grant = _decode(body)
        except msgspec.DecodeError:
            raise EnvelopeError("malformed envelope body", 401) from None
        now = time.time() if now is None else now
        if grant.expires < now:
            raise EnvelopeError(f"envelope expired at {grant.expires} (now {int(now)})")
        return grant

    def check(self, envelope: str, access: str, path: str, now: float | None = None) -> Grant:
        """Open the envelope and check it allows *access* to *path* (a PFN path)."""
        grant = self.open(envelope, now)
        if grant.pfn != path:
            raise EnvelopeError(f"envelope is for {grant.pfn}, not {path}")
        if grant.access != access:
            raise EnvelopeError(f"envelope grants {grant.access}, not {access}")
        return grant
