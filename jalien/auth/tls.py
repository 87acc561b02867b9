"""TLS contexts for grid mutual authentication with the stdlib ``ssl`` module.

Both ends verify each other against a hashed CA directory (``capath``), TLS 1.2 at least.
Servers accept RFC 3820 proxy chains (X509_V_FLAG_ALLOW_PROXY_CERTS); OpenSSL then checks
the proxy rules itself. Host names are not checked by default because alien.py does not
check them either: trust comes from the CA directory.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from .certs import key_matches, load_certs, load_key
from .errors import AuthError
from .files import StrPath
from .memfile import memory_path

# ssl.VERIFY_ALLOW_PROXY_CERTS exists since Python 3.10; the value is OpenSSL's flag.
ALLOW_PROXY_CERTS = getattr(ssl, "VERIFY_ALLOW_PROXY_CERTS", 0x40)

Password = bytes | str | None


class _NoPassword(Exception):
    """Raised from OpenSSL's password callback so it never prompts on a terminal."""


def _refuse_prompt() -> bytes:
    raise _NoPassword


def _load_chain(
    ctx: ssl.SSLContext, cert_path: StrPath, key_path: StrPath, password: Password
) -> None:
    for path, what in ((cert_path, "certificate file"), (key_path, "key file")):
        if not Path(path).is_file():
            raise AuthError(f"{what} {path} does not exist")
    try:
        ctx.load_cert_chain(cert_path, key_path, password=password or _refuse_prompt)
        return
    except _NoPassword:
        raise AuthError(f"the private key {key_path} is encrypted: a password is needed") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
    # OpenSSL's messages ("PEM lib") do not say what is wrong; ask our own loaders.
    certs = load_certs(cert_path)
    secret = password.encode() if isinstance(password, str) else password
    key = load_key(key_path, secret)
    if not key_matches(certs[0], key):
        raise AuthError(f"the key in {key_path} does not belong to the certificate in {cert_path}")
    raise AuthError(f"cannot use {cert_path} with key {key_path}: {reason}")


def _load_ca_dir(ctx: ssl.SSLContext, ca_dir: StrPath) -> None:
    path = Path(ca_dir)
    if not path.is_dir():
        raise AuthError(f"CA directory {ca_dir} does not exist (run `jalien-bin setup`)")
    if not any(path.glob("*.0")):
        raise AuthError(f"CA directory {ca_dir} holds no hashed <hash>.0 CA files")
    try:
        ctx.load_verify_locations(capath=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise AuthError(f"cannot use CA directory {ca_dir}: {exc}") from None


def server_context(
    cert_path: StrPath, key_path: StrPath, ca_dir: StrPath, password: Password = None
) -> ssl.SSLContext:
    """A server context requiring a client certificate (user, proxy or host) from the CA dir."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert_path, key_path, password)
    _load_ca_dir(ctx, ca_dir)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ALLOW_PROXY_CERTS
    return ctx


def client_context(
    cert_path: StrPath,
    key_path: StrPath,
    ca_dir: StrPath,
    password: Password = None,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """A client context presenting a certificate chain (a proxy file serves as both paths)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    _load_chain(ctx, cert_path, key_path, password)
    _load_ca_dir(ctx, ca_dir)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ALLOW_PROXY_CERTS  # a jalien service may run with a proxy too
    return ctx


def context_from_pem(
    purpose: str, cert_pem: bytes, key_pem: bytes, ca_dir: StrPath
) -> ssl.SSLContext:
    """``server_context`` or ``client_context`` (*purpose* "server" or "client") from PEM text
    held in memory: an unencrypted key that must not be written to disk (see memfile)."""
    make = {"server": server_context, "client": client_context}[purpose]
    with memory_path(cert_pem) as cert_path, memory_path(key_pem) as key_path:
        try:
            return make(cert_path, key_path, ca_dir)
        except AuthError as exc:  # the temporary paths mean nothing to the user
            message = str(exc).replace(cert_path, "<certificate>").replace(key_path, "<key>")
            raise AuthError(message) from None
