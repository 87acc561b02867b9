"""Which grid identity a TLS peer is: the end-entity DN behind any proxy certificates.

Accounts are keyed by the user's own DN, but a client may present an RFC 3820 proxy whose
subject is that DN plus ``/CN=<number>``. OpenSSL has already verified the chain (including
that each proxy's subject extends its issuer's by exactly one CN); what remains is to name the
end entity.

Decisions:

* From DN strings alone, a certificate counts as a proxy when its subject is its issuer plus
  exactly one trailing CN. Callers that know better (the proxyCertInfo extension) pass
  ``proxy=True/False``; a declared proxy that does not extend its issuer is refused.
* Without the issuer, nothing proves that a trailing CN belongs to a proxy, so the subject is
  returned unchanged: stripping a CN on a guess could turn one user's DN into another's.
* Python 3.11 exposes only the peer's leaf certificate. ``peer_dn_from_ssl`` strips one proxy
  level, proved by the leaf's extension and its issuer name. For a proxy of a proxy the result
  is the intermediate proxy's DN, which no account map holds, so such clients are refused
  (fail closed) unless the caller opts in to ``proxy_of_proxy=True``, which also strips the
  issuer's trailing purely numeric CNs (the form RFC 3820 proxies use). Opting in trusts that
  no real user DN ends in a numeric CN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography import x509

from .errors import AuthError
from .names import dn_string, normalize_dn, split_dn
from .proxy import is_proxy


class PeerCertSource(Protocol):
    """What ``ssl.SSLSocket`` and ``ssl.SSLObject`` have in common for our purpose."""

    def getpeercert(self, binary_form: bool = ...) -> object: ...


def _extends(subject: list[list[tuple[str, str]]], issuer: list[list[tuple[str, str]]]) -> bool:
    """Whether *subject* is *issuer* plus one single-valued CN RDN."""
    return (
        len(subject) == len(issuer) + 1
        and subject[:-1] == issuer
        and len(subject[-1]) == 1
        and subject[-1][0][0].upper() == "CN"
    )


def _join(rdns: list[list[tuple[str, str]]]) -> str:
    return "".join("/" + "+".join(f"{k}={v}" for k, v in rdn) for rdn in rdns)


def end_entity_dn(
    subject_dn: str,
    issuer_dn: str | None = None,
    *,
    issuers: Sequence[str] = (),
    proxy: bool | None = None,
) -> str:
    """The DN of the end-entity certificate behind *subject_dn*.

    *issuer_dn* is the certificate's issuer; *issuers* optionally continues the chain upwards
    (the issuer's issuer, ...) so proxies of proxies can be unwound. *proxy* says whether the
    certificate is known to be a proxy (None: infer it from the names).
    """

    def rdns(dn: str) -> list[list[tuple[str, str]]]:
        return split_dn(normalize_dn(dn))  # E= and emailAddress= must compare equal

    chain = [rdns(subject_dn)]
    if issuer_dn is not None:
        chain.append(rdns(issuer_dn))
        chain.extend(rdns(dn) for dn in issuers)
    elif issuers:
        raise AuthError("issuers given without the certificate's issuer")
    if proxy is False:
        return _join(chain[0])
    if proxy and (len(chain) < 2 or not _extends(chain[0], chain[1])):
        raise AuthError(
            f"refusing proxy {subject_dn}: its issuer {issuer_dn} is not the DN it extends"
        )
    current = 0
    while current + 1 < len(chain) and _extends(chain[current], chain[current + 1]):
        current += 1
    return _join(chain[current])


def _strip_numeric_cns(dn: str) -> str:
    rdns = split_dn(dn)
    while (
        len(rdns) > 1
        and len(rdns[-1]) == 1
        and rdns[-1][0][0].upper() == "CN"
        and rdns[-1][0][1].isdigit()
    ):
        rdns.pop()
    return _join(rdns)


def cert_end_entity_dn(cert: x509.Certificate, *, proxy_of_proxy: bool = False) -> str:
    """The end-entity DN for a leaf certificate seen without its chain (see module notes)."""
    subject = dn_string(cert.subject)
    if not is_proxy(cert):
        return subject
    issuer = dn_string(cert.issuer)
    dn = end_entity_dn(subject, issuer, proxy=True)
    return _strip_numeric_cns(dn) if proxy_of_proxy else dn


def peer_dn_from_ssl(ssl_object: PeerCertSource, *, proxy_of_proxy: bool = False) -> str:
    """The end-entity DN of the verified client certificate of a TLS connection."""
    return cert_end_entity_dn(peer_cert_from_ssl(ssl_object), proxy_of_proxy=proxy_of_proxy)


def peer_cert_from_ssl(ssl_object: PeerCertSource) -> x509.Certificate:
    """The verified leaf certificate the peer of a TLS connection presented."""
    try:
        raw = ssl_object.getpeercert(binary_form=True)
    except ValueError as exc:  # handshake not done yet
        raise AuthError(f"no peer certificate: {exc}") from None
    if not raw:
        raise AuthError("the peer presented no certificate")
    if not isinstance(raw, bytes):
        raise AuthError("getpeercert(binary_form=True) did not return DER bytes")
    try:
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise AuthError(f"unreadable peer certificate: {exc}") from None
