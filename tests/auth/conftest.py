"""Shared credentials for the auth tests: RSA keys are slow, so make each kind once."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import (
    issue_host_cert,
    issue_user_cert,
    make_ca,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.identity import peer_dn_from_ssl


@dataclass
class Pki:
    root: Path
    ca: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    ca_dir: Path
    host_cert: Path
    host_key: Path
    user: x509.Certificate
    user_key: rsa.RSAPrivateKey
    user_cert_path: Path
    user_key_path: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca("test CA")
    write_ca_dir(root / "certificates", [ca])
    host, host_key = issue_host_cert(ca, ca_key, ["localhost", "127.0.0.1", "::1"])
    write_pem_cert(root / "hostcert.pem", host)
    write_pem_key(root / "hostkey.pem", host_key)
    user, user_key = issue_user_cert(ca, ca_key, "jdoe")
    write_pem_cert(root / "usercert.pem", user)
    write_pem_key(root / "userkey.pem", user_key)
    return Pki(
        root=root,
        ca=ca,
        ca_key=ca_key,
        ca_dir=root / "certificates",
        host_cert=root / "hostcert.pem",
        host_key=root / "hostkey.pem",
        user=user,
        user_key=user_key,
        user_cert_path=root / "usercert.pem",
        user_key_path=root / "userkey.pem",
    )


@dataclass
class Outcome:
    """What one connection attempt gave: the server's view and the client's."""

    server_dns: list[str]
    reply: bytes | None
    client_error: BaseException | None
    server_errors: list[str]


class _SslErrors(logging.Handler):
    """asyncio reports a failed server handshake only as a debug log record; collect them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], ssl.SSLError):
            self.errors.append(str(record.exc_info[1]))


Handshake = Callable[..., Awaitable[Outcome]]


@pytest.fixture
def handshake() -> Handshake:
    """Run a real TLS connection on 127.0.0.1; the server answers with the peer's DN."""

    async def run(
        server_ctx: ssl.SSLContext,
        client_ctx: ssl.SSLContext,
        *,
        blocking_client: bool = False,
        **dn_options: bool,
    ) -> Outcome:
        """*blocking_client* uses a plain ssl socket, whose errors keep OpenSSL's alert text."""
        dns: list[str] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            dn = peer_dn_from_ssl(writer.get_extra_info("ssl_object"), **dn_options)
            dns.append(dn)
            writer.write(dn.encode() + b"\n")
            await writer.drain()
            writer.close()

        asyncio.get_running_loop().set_debug(True)
        collector = _SslErrors()
        log = logging.getLogger("asyncio")
        old_level = log.level
        log.setLevel(logging.DEBUG)
        log.addHandler(collector)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reply: bytes | None = None
        error: BaseException | None = None
        try:
            async with asyncio.timeout(10):
                if blocking_client:
                    reply = await asyncio.to_thread(_blocking_connect, client_ctx, port)
                else:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=client_ctx
                    )
                    try:
                        reply = await reader.readline()
                    finally:
                        writer.close()
        except (ssl.SSLError, ConnectionError) as exc:
            error = exc
        finally:
            server.close()
            await server.wait_closed()
            log.removeHandler(collector)
            log.setLevel(old_level)
        return Outcome(dns, reply, error, collector.errors)

    return run


def _blocking_connect(client_ctx: ssl.SSLContext, port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.recv(4096)
