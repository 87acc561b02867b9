"""Who is on the other end of a connection, established once at the TLS handshake.

Two authenticators:

* ``AccountsAuthenticator`` (central services): a certificate's end-entity DN is looked up
  in the accounts file; a token certificate (signed by the token CA, see
  ``jalien.auth.tokens``) is mapped by the login its subject names, which must still have
  an account.
* ``OwnerAuthenticator`` (jBox): one user's desktop agent serves that user only: their own
  certificate (or a proxy of it) and their own user tokens, all mapped to one identity.
* ``LevelAuthenticator`` (VoBox): a site level serves anyone TLS verified against its CA
  directory (users, proxies, JobAgent and job tokens) and keeps each peer's certificate, so
  that it can forward it upstream (``OpenChannel.cert``): central decides who it is.

A certificate forwarded through a level (``identify_forwarded``) was never part of a TLS
handshake with us, so it is checked here: its validity period, and its signature (central:
the token CA's, for tokens; a level: a CA of its directory).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jalien.auth.accounts import AccountMap
from jalien.auth.cadir import find_issuer
from jalien.auth.certs import dn_of, signed_by
from jalien.auth.errors import AuthError
from jalien.auth.identity import cert_end_entity_dn, peer_cert_from_ssl
from jalien.auth.policy import IdentityKind, kind_of
from jalien.auth.proxy import is_limited, is_proxy
from jalien.auth.tokens import TokenKind, TokenSubject, TokenVerifier

log = logging.getLogger("jalien.net.identity")


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    dn: str
    login: str
    roles: tuple[str, ...] = ()
    home: str = ""
    expires: float = 0.0  # when the presented certificate expires (epoch s); 0: unknown
    token: str = ""  # the TokenKind value when a token certificate was presented
    job_id: str = ""  # the job of a job token
    cert: bytes = b""  # the presented certificate (DER), kept by a level to forward it
    serial: int = 0  # the presented certificate's serial (which JobAgent token matched a job)
    # what the policy sees (jalien.auth.policy); left None, it follows roles and token
    kind: IdentityKind | None = None

    def __post_init__(self) -> None:
        if self.kind is None:
            msgspec.structs.force_setattr(self, "kind", kind_of(roles=self.roles, token=self.token))

    def has_role(self, role: str) -> bool:
        return role in self.roles


def _cert_kind(cert: x509.Certificate, roles: tuple[str, ...]) -> IdentityKind:
    """The kind of a (non-token) certificate of an account with *roles*."""
    return kind_of(roles=roles, proxy=is_proxy(cert), limited=is_limited(cert))


Authenticator = Callable[[Any], Identity]
"""Maps the connection's ssl object to an Identity, or raises AuthError with the reason."""


def _expiry(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


def load_forwarded(der: bytes) -> x509.Certificate:
    """A certificate forwarded by a level, parsed and within its validity period (TLS
    checked neither for us)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AuthError(f"unreadable forwarded certificate: {exc}") from None
    now = time.time()
    if cert.not_valid_before_utc.timestamp() > now + 300:  # 5 minutes of clock skew
        raise AuthError(f"forwarded certificate {dn_of(cert)} is not valid yet")
    if _expiry(cert) < now:
        raise AuthError(f"forwarded certificate {dn_of(cert)} has expired")
    return cert


class AccountsAuthenticator:
    """DN -> account from the accounts file; re-read when the file changes on disk, so that
    `jalien-bin setup` or an admin edit takes effect without a restart. With *tokens*, token
    certificates of that CA are accepted too."""

    def __init__(
        self,
        path: Path,
        tokens: TokenVerifier | None = None,
        source: Callable[[], AccountMap] | None = None,
    ) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._accounts = AccountMap()
        self.tokens = tokens
        self._source = source  # instead of the file: the central configuration's map

    def _refresh(self) -> None:
        if self._source is not None:
            self._accounts = self._source()
            return
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._accounts, self._stamp = AccountMap(), None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._accounts = AccountMap.load(self._path)
            self._stamp = stamp
            log.info("loaded %d accounts from %s", len(self._accounts), self._path)

    def identify_dn(self, dn: str) -> Identity:
        self._refresh()
        account = self._accounts.lookup(dn)
        return Identity(dn=dn, login=account.login, roles=tuple(account.roles), home=account.home)

    def identify_login(self, login: str) -> Identity:
        """The account of *login* (its first registered DN); AuthError when it has none."""
        self._refresh()
        for account in self._accounts.by_login(login):
            if not self._accounts.is_revoked(account.dn):
                return Identity(
                    dn=account.dn, login=login, roles=tuple(account.roles), home=account.home
                )
        raise AuthError(f"unknown user {login}")

    def identify_token(self, cert: x509.Certificate, subject: TokenSubject) -> Identity:
        """The identity a token certificate stands for."""
        dn, expires, serial = dn_of(cert), _expiry(cert), cert.serial_number
        kind = subject.kind
        if kind is TokenKind.HOST:  # a host token acts as the host's registered account
            host = self.identify_dn(dn)
            return msgspec.structs.replace(
                host, expires=expires, token=kind.value, serial=serial, kind=IdentityKind.HOST
            )
        if kind is TokenKind.JOBAGENT:
            return Identity(
                dn=dn,
                login="jobagent",
                roles=("jobagent",),
                expires=expires,
                token=kind.value,
                serial=serial,
            )
        account = self.identify_login(subject.login)
        if kind is TokenKind.JOB:
            return Identity(
                dn=dn,
                login=account.login,
                roles=("job",),
                home=account.home,
                expires=expires,
                token=kind.value,
                job_id=subject.extension,
                serial=serial,
            )
        return msgspec.structs.replace(
            account, dn=dn, expires=expires, token=kind.value, serial=serial, kind=None
        )

    def identify_cert(self, cert: x509.Certificate) -> Identity:
        subject = self.tokens.recognize(cert) if self.tokens is not None else None
        if subject is not None:
            return self.identify_token(cert, subject)
        identity = self.identify_dn(cert_end_entity_dn(cert))
        roles = identity.roles
        if is_limited(cert):  # GSI: a limited proxy never carries its owner's admin rights
            roles = tuple(r for r in roles if r != "admin")
        return msgspec.structs.replace(
            identity,
            roles=roles,
            expires=_expiry(cert),
            serial=cert.serial_number,
            kind=_cert_kind(cert, roles),
        )

    def identify_forwarded(self, der: bytes) -> Identity:
        """The identity of a certificate a proxy level forwarded: tokens by the token CA's
        signature (a forged or foreign token names no account), others by their DN."""
        return self.identify_cert(load_forwarded(der))

    def __call__(self, ssl_object: Any) -> Identity:
        if ssl_object is None:
            raise AuthError("no TLS session")
        return self.identify_cert(peer_cert_from_ssl(ssl_object))


class OwnerAuthenticator:
    """A desktop agent's gate: only *owner* gets in, with their certificate (``owner.dn``, or
    a proxy of it) or a user token of theirs (``owner.login``) signed by a CA of *tokens*.
    Every accepted client is *owner*, so channels opened upstream act as the agent itself."""

    def __init__(self, owner: Identity, tokens: list[TokenVerifier] | None = None) -> None:
        self.owner = owner
        self.tokens = list(tokens or ())

    def identify_cert(self, cert: x509.Certificate) -> Identity:
        for verifier in self.tokens:
            subject = verifier.recognize(cert)
            if subject is None:
                continue
            if subject.kind is TokenKind.USER and subject.login == self.owner.login:
                return self.owner
            raise AuthError(f"token {dn_of(cert)} is not a user token of {self.owner.login}")
        dn = cert_end_entity_dn(cert)
        if dn != self.owner.dn:
            raise AuthError(f"{dn} is not {self.owner.login}: this agent serves its owner only")
        return self.owner

    def __call__(self, ssl_object: Any) -> Identity:
        if ssl_object is None:
            raise AuthError("no TLS session")
        return self.identify_cert(peer_cert_from_ssl(ssl_object))


def _token_identity(cert: x509.Certificate, subject: TokenSubject, der: bytes) -> Identity:
    dn, expires, kind = dn_of(cert), _expiry(cert), subject.kind
    if kind is TokenKind.JOBAGENT:
        return Identity(
            dn=dn,
            login="jobagent",
            roles=("jobagent",),
            expires=expires,
            token=kind.value,
            cert=der,
        )
    if kind is TokenKind.JOB:
        return Identity(
            dn=dn,
            login=subject.login,
            roles=("job",),
            expires=expires,
            token=kind.value,
            job_id=subject.extension,
            cert=der,
        )
    login = subject.login or subject.extension
    return Identity(dn=dn, login=login, expires=expires, token=kind.value, cert=der)


def _login_of(dn: str) -> str:
    """A readable name for logs: the last CN of a DN (central knows the real login)."""
    for part in reversed(dn.split("/")):
        if part.upper().startswith("CN="):
            return part[3:]
    return dn


class LevelAuthenticator:
    """A site level's gate (VoBox): whoever TLS verified against the CA directory gets in,
    with an identity that only names them locally (roles from a token's kind, none for
    certificates) and carries their certificate, so that central, which holds the
    accounts, identifies every channel the level opens for them. *tokens* recognises the
    token CA's certificates (the level learns it from its own JobAgent token)."""

    def __init__(self, ca_dir: Path, tokens: TokenVerifier | None = None) -> None:
        self.ca_dir = ca_dir
        self.tokens = tokens
        self._issuers: dict[bytes, x509.Certificate] = {}

    def describe(self, cert: x509.Certificate) -> Identity:
        der = cert.public_bytes(serialization.Encoding.DER)
        subject = self.tokens.recognize(cert) if self.tokens is not None else None
        if subject is not None:
            return _token_identity(cert, subject, der)
        dn = cert_end_entity_dn(cert)
        return Identity(dn=dn, login=_login_of(dn), expires=_expiry(cert), cert=der)

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        key = cert.issuer.public_bytes()
        known = self._issuers.get(key)
        if known is not None and signed_by(cert, known):
            return known
        found = find_issuer(self.ca_dir, cert)
        if found is not None:
            self._issuers[key] = found
        return found

    def identify_forwarded(self, der: bytes) -> Identity:
        """A certificate a lower level forwarded: signed by a CA of the directory (a proxy
        certificate, signed by its user, is not accepted this way) and in its validity."""
        cert = load_forwarded(der)
        if self._issuer(cert) is None:
            raise AuthError(
                f"forwarded certificate {dn_of(cert)}: no CA of {self.ca_dir} signed it"
            )
        return self.describe(cert)

    def __call__(self, ssl_object: Any) -> Identity:
        if ssl_object is None:
            raise AuthError("no TLS session")
        return self.describe(peer_cert_from_ssl(ssl_object))
