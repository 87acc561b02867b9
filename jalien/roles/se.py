"""The embedded SE as its own process (``jalien-bin --role se``) and the piece jcentral
starts inside itself on a single machine (``embedded_se = true``)."""

from __future__ import annotations

import logging

from jalien.config import Settings
from jalien.metrics import Metrics
from jalien.roles.role_metrics import start_metrics
from jalien.roles.start import Failure, LogOptions, run_role, started, stop_event
from jalien.storage.envelope import EnvelopeVerifier
from jalien.storage.se_metrics import instrument
from jalien.storage.se_server import StorageServer, se_context
from jalien.storage.xrd_server import XRootDServer
from jalien.wire.errors import EXIT_FAILED

log = logging.getLogger("jalien.se")


async def start_se(
    settings: Settings, verifier: EnvelopeVerifier, metrics: Metrics | None = None
) -> tuple[StorageServer, int]:
    server = StorageServer(settings.se_root_path, verifier, settings.se_max_rate)
    if metrics is not None:
        instrument(server, metrics)
    context = se_context(settings.host_cert_path, settings.host_key_path)
    port = await server.start(
        settings.listen, settings.se_port, context, reuse_port=settings.shared_ports
    )
    print(f"se ready: {settings.se_url(port)} serving {settings.se_root_path}", flush=True)
    return server, port


async def start_se_xrootd(
    settings: Settings, verifier: EnvelopeVerifier
) -> tuple[XRootDServer | None, int]:
    """The same SE over XRootD on se_xrootd_port (None with -1)."""
    if settings.se_xrootd_port < 0:
        return None, -1
    server = XRootDServer(settings.se_root_path, verifier)
    port = await server.start(
        settings.listen, settings.se_xrootd_port, reuse_port=settings.shared_ports
    )
    print(f"se xrootd ready: {settings.se_xrootd_url(port)}", flush=True)
    return server, port


class SEListeners:
    """The SE's HTTPS and XRootD servers, closed together."""

    def __init__(self, https: StorageServer, xrootd: XRootDServer | None) -> None:
        self.https = https
        self.xrootd = xrootd

    async def close(self) -> None:
        if self.xrootd is not None:
            await self.xrootd.close()
        await self.https.close()


async def serve(settings: Settings) -> None:
    verifier = EnvelopeVerifier.from_file(settings.envelope_key_path)
    metrics = Metrics("se")
    https, _ = await start_se(settings, verifier, metrics)
    xrootd, _ = await start_se_xrootd(settings, verifier)
    server = SEListeners(https, xrootd)
    metrics_http = await start_metrics(settings, metrics)
    stop = stop_event()
    started()
    await stop.wait()
    await server.close()
    if metrics_http is not None:
        await metrics_http.close()


def run_se(settings: Settings) -> int:
    def hint() -> str:
        if settings.envelope_key_path.exists():
            return ""
        return (
            f"hint: copy central's {settings.envelope_key_path.name} there "
            "(jcentral makes it under its home, in envelope/)"
        )

    return run_role(
        lambda: serve(settings),
        log_level=settings.log_level,
        log=LogOptions.from_settings(settings, "se"),
        prefix="jalien-bin: cannot start the SE: ",
        failures=[Failure((OSError, ValueError), EXIT_FAILED, hint=hint)],
    )
