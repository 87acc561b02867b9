"""A hashed CA directory, the layout OpenSSL's ``capath`` and grid tools expect.

OpenSSL looks up an issuer as ``<subject_hash>.0`` (``.1``, ... on collisions); alien.py
rejects a directory without ``*.pem`` files. So each CA is written once as ``<name>.pem`` and
linked (relative symlink, or a copy where symlinks fail) as ``<hash>.N``. Re-running with the
same certificates changes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import certs_pem, signed_by
from .errors import AuthError
from .files import StrPath, write_file
from .names import common_name, subject_hash


def _der_in(path: Path) -> set[bytes]:
    """DER of the certificates in *path*; unreadable files hold none."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return set()
    return {c.public_bytes(serialization.Encoding.DER) for c in certs}


def _file_name(cert: x509.Certificate) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", common_name(cert.subject)).strip("-.")
    return name or subject_hash(cert.subject)


def write_ca_dir(directory: StrPath, ca_certs: Sequence[x509.Certificate]) -> list[Path]:
    """Add *ca_certs* to *directory*; returns the files it created (empty when up to date)."""
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuthError(f"cannot create CA directory {root}: {exc.strerror}") from None
    created: list[Path] = []
    for cert in ca_certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        pem = _find_or_write_pem(root, cert, der, created)
        _find_or_link_hash(root, cert, der, pem, created)
    return created


def _find_or_write_pem(root: Path, cert: x509.Certificate, der: bytes, created: list[Path]) -> Path:
    for existing in sorted(root.glob("*.pem")):
        if der in _der_in(existing):
            return existing
    base = _file_name(cert)
    candidate = root / f"{base}.pem"
    index = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = root / f"{base}-{index}.pem"
        index += 1
    write_file(candidate, certs_pem(cert), 0o644)
    created.append(candidate)
    return candidate


def _find_or_link_hash(
    root: Path, cert: x509.Certificate, der: bytes, pem: Path, created: list[Path]
) -> None:
    prefix = subject_hash(cert.subject)
    index = 0
    while True:
        link = root / f"{prefix}.{index}"
        if not (link.exists() or link.is_symlink()):
            break
        if der in _der_in(link):
            return
        index += 1
    try:
        os.symlink(pem.name, link)
    except OSError:
        write_file(link, certs_pem(cert), 0o644)
    created.append(link)


def find_issuer(directory: StrPath, cert: x509.Certificate) -> x509.Certificate | None:
    """The CA of *directory* that signed *cert* (looked up as OpenSSL does, by subject hash)."""
    prefix = subject_hash(cert.issuer)
    for candidate in sorted(Path(directory).glob(f"{prefix}.*")):
        try:
            cas = x509.load_pem_x509_certificates(candidate.read_bytes())
        except (OSError, ValueError):
            continue
        for ca in cas:
            if signed_by(cert, ca):
                return ca
    return None
