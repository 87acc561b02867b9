"""The embedded SE as its own process (``jalien-bin --role se``) and the piece jcentral
starts inside itself on a single machine (``embedded_se = true``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from jalien.config import Settings
from jalien.storage.envelope import EnvelopeVerifier
from jalien.storage.se_server import StorageServer, se_context

log = logging.getLogger("jalien.se")


async def start_se(settings: Settings, verifier: EnvelopeVerifier) -> tuple[StorageServer, int]:
    server = StorageServer(settings.se_root_path, verifier, settings.se_max_rate)
    context = se_context(settings.host_cert_path, settings.host_key_path)
    port = await server.start(settings.listen, settings.se_port, context)
    print(f"se ready: {settings.se_url(port)} serving {settings.se_root_path}", flush=True)
    return server, port


async def serve(settings: Settings) -> None:
    verifier = EnvelopeVerifier.from_file(settings.envelope_key_path)
    server, _ = await start_se(settings, verifier)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def run_se(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        uvloop.run(serve(settings))
    except (OSError, ValueError) as exc:
        print(f"jalien-bin: cannot start the SE: {exc}", file=sys.stderr)
        if not settings.envelope_key_path.exists():
            print(
                f"hint: copy central's {settings.envelope_key_path.name} there "
                "(jcentral makes it under its home, in envelope/)",
                file=sys.stderr,
            )
        return 1
    return 0
