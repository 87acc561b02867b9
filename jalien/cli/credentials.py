"""The user's grid certificate and key for the command line, asking the key's password on
the terminal when it is encrypted (once; three tries for typos)."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from jalien.auth.certs import PrivateKey, key_matches, load_certs, load_key
from jalien.auth.errors import AuthError
from jalien.auth.names import dn_string
from jalien.auth.proxy import is_proxy

TRIES = 3


def user_cert_paths(env: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    return (
        Path(env.get("X509_USER_CERT") or home / ".globus/usercert.pem"),
        Path(env.get("X509_USER_KEY") or home / ".globus/userkey.pem"),
    )


def is_encrypted(key_path: Path) -> bool:
    try:
        return b"ENCRYPTED" in key_path.read_bytes()
    except OSError:
        return False


def read_password(prompt: str, *, from_stdin: bool) -> bytes:
    """One password: a line of stdin, or typed on the terminal without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n").encode()
    if not sys.stdin.isatty():
        raise AuthError(
            "the private key is encrypted and there is no terminal to ask its password on "
            "(run in a terminal, or pass --password-stdin)"
        )
    return getpass.getpass(prompt).encode()


def load_user_key(key_path: Path, *, password_stdin: bool = False) -> PrivateKey:
    """The user's private key, decrypted (the password is asked here when needed)."""
    if not is_encrypted(key_path):
        return load_key(key_path)
    tries = 1 if password_stdin else TRIES
    for attempt in range(1, tries + 1):
        password = read_password(
            f"Grid certificate password ({key_path}): ", from_stdin=password_stdin
        )
        try:
            return load_key(key_path, password or None)
        except AuthError as exc:
            if "wrong password" not in str(exc) and "password is needed" not in str(exc):
                raise
            if attempt < tries:
                print("wrong password, try again", file=sys.stderr, flush=True)
    raise AuthError(f"cannot decrypt the private key {key_path}: wrong password")


def load_user_credentials(
    env: Mapping[str, str] | None = None, *, password_stdin: bool = False
) -> tuple[list[x509.Certificate], PrivateKey, str]:
    """(certificate chain, decrypted key, DN) of the user's grid certificate."""
    cert_path, key_path = user_cert_paths(env)
    certs = load_certs(cert_path)
    if is_proxy(certs[0]):
        raise AuthError(f"{cert_path} is a proxy; point X509_USER_CERT at the user certificate")
    key = load_user_key(key_path, password_stdin=password_stdin)
    if not key_matches(certs[0], key):
        raise AuthError(f"the key in {key_path} does not belong to the certificate {cert_path}")
    return certs, key, dn_string(certs[0].subject)
