"""The payload's local socket: the grid as the job, on 127.0.0.1.

For each job the agent serves both personalities (binary channel and WebSocket JSON) on
dynamic loopback ports, built from the same blocks as jBox: ``net.server.Server`` in front
of ``net.proxy.UpstreamProxy`` over an upstream connection authenticated with the job token.
The payload's processes (``jalien-bin ls``, alien.py, ROOT) find it through
``JALIEN_HOST``/``JALIEN_PORT``/``JALIEN_WSPORT`` and present the job token from
``JALIEN_TOKEN_CERT``/``JALIEN_TOKEN_KEY``; the server presents that same token (signed by
the token CA of the CA directory). Only that exact certificate gets in
(``JobTokenAuthenticator``): another job's token on the same node, or any user's, is refused.

One command is answered here and not upstream: ``spy`` gives the job's spy report
(``jalien.agent.spy``) to whoever holds the job token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jalien.agent.environment import Endpoint
from jalien.auth.certs import dn_of
from jalien.auth.errors import AuthError
from jalien.auth.identity import peer_cert_from_ssl
from jalien.auth.tls import context_from_pem
from jalien.net.audit import AuditLog
from jalien.net.client import Client
from jalien.net.identity import Identity
from jalien.net.limits import Limits
from jalien.net.proxy import ProxySession, UpstreamProxy, WithLocalCommands
from jalien.net.server import Server
from jalien.wire.messages import Reply, Request

LISTEN_HOST = "127.0.0.1"
SpyFunction = Callable[[], Awaitable[dict[str, str]]]


class JobTokenAuthenticator:
    """Lets in the one certificate the job token is; everyone is that job's identity."""

    def __init__(self, token_pem: bytes, identity: Identity) -> None:
        self._der = x509.load_pem_x509_certificate(token_pem).public_bytes(Encoding.DER)
        self.identity = identity

    def identify_cert(self, cert: x509.Certificate) -> Identity:
        if cert.public_bytes(Encoding.DER) != self._der:
            raise AuthError(f"{dn_of(cert)} is not the token of the job this socket serves")
        return self.identity

    def __call__(self, ssl_object: Any) -> Identity:
        if ssl_object is None:
            raise AuthError("no TLS session")
        return self.identify_cert(peer_cert_from_ssl(ssl_object))


class JobSocket:
    """The local server of one job; ``start`` gives the endpoint, ``close`` ends it."""

    def __init__(
        self,
        upstream: Client,
        token_cert: str,
        token_key: str,
        ca_dir: Path,
        identity: Identity,
        spy: SpyFunction,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self.upstream = upstream
        self._audit = audit
        self._context = context_from_pem("server", token_cert.encode(), token_key.encode(), ca_dir)
        self._authenticator = JobTokenAuthenticator(token_cert.encode(), identity)
        self._spy = spy
        self._handler = WithLocalCommands(UpstreamProxy(upstream), {"spy": self._spy_reply})
        self.server: Server | None = None

    async def _spy_reply(self, session: ProxySession, request: Request) -> Reply:
        return Reply(results=[await self._spy()], metadata=session.metadata)

    async def start(self) -> Endpoint:
        self.server = Server(
            self._handler, self._context, self._authenticator, limits=Limits(), audit=self._audit
        )
        await self.server.start([LISTEN_HOST], 0, 0)
        ports = self.server.ports()
        return Endpoint(LISTEN_HOST, ports["binary"], ports["websocket"])

    async def close(self) -> None:
        if self.server is not None:
            await asyncio.shield(self.server.close())
