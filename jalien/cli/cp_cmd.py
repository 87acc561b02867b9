"""``jalien-bin cp [-T N] [-S specs] [-retry N] [-stall S] src... dst``: copies between this
machine (``file:`` paths) and the grid (LFNs, globs allowed), or from LFNs to new LFNs or SEs
(grid to grid), through jalien.storage.cp.

A progress display (rich) is shown when stderr is a terminal; a summary line always; one
line per failed file; exit code 1 when any file failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jalien.auth.errors import AuthError
from jalien.config import ConfigError, load_settings
from jalien.net import discovery
from jalien.net.client import Client, ConnectionLost
from jalien.storage.cp import Options, copy
from jalien.wire.errors import EXIT_NO_CONNECTION

if TYPE_CHECKING:
    from rich.progress import TaskID  # rich itself is imported when bars are drawn


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jalien-bin cp", description="copy files to/from the grid")
    p.add_argument("-T", dest="threads", type=int, default=4, help="parallel transfers")
    p.add_argument("-S", dest="specs", default="disk:1", help="where new replicas go, e.g. disk:2")
    p.add_argument("-retry", type=int, default=4, help="attempts per replica")
    p.add_argument("-stall", type=float, default=30.0, help="seconds without data = stalled")
    p.add_argument("paths", nargs="+", help="sources then destination (file:/path is local)")
    return p


class RichProgress:
    """One bar per running file and one for the total, on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def add(self, name: str, total: int) -> None:
        label = name if len(name) < 50 else "..." + name[-47:]
        self.tasks[name] = self.bars.add_task(label, total=max(total, 0) or None)

    def advance(self, name: str, n: int) -> None:
        if name in self.tasks:
            self.bars.advance(self.tasks[name], n)

    def done(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            self.bars.remove_task(task)


async def _connect(settings) -> tuple[Client, ssl.SSLContext]:
    ca = discovery.ca_dir(settings)
    context = discovery.find_credentials().context(ca)
    se_context = ssl.create_default_context(capath=str(ca))
    se_context.check_hostname = False  # SEs are named by the URLs central hands out
    tried = []
    for endpoint in discovery.candidates(settings):
        client = Client(endpoint.host, endpoint.port, context, reconnect=False)
        try:
            await client.connect()
            return client, se_context
        except ConnectionLost as exc:
            tried.append(f"{endpoint.host}:{endpoint.port}: {exc}")
            await client.close()
    raise ConnectionLost("no connection: " + "; ".join(tried))


async def _run(args: argparse.Namespace, settings) -> int:
    client, se_context = await _connect(settings)
    options = Options(
        threads=args.threads, specs=args.specs, retries=args.retry, stall=args.stall,
        ssl=se_context,
    )  # fmt: skip
    try:
        if sys.stderr.isatty():
            with RichProgress() as progress:
                report = await copy(client, args.paths[:-1], args.paths[-1], options, progress)
        else:
            report = await copy(client, args.paths[:-1], args.paths[-1], options)
    finally:
        await client.close()
    for result in report.results:
        if result.status == "failed":
            print(f"cp: {result.src}: {result.error}", file=sys.stderr)
        for note in result.notes:
            print(f"cp: {result.src}: note: {note}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return report.exitcode


def cp_command(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if len(args.paths) < 2:
        print("jalien-bin cp: need a source and a destination", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, load_settings()))
    except ConfigError as exc:
        print(f"jalien-bin cp: {exc}", file=sys.stderr)
        return 2
    except AuthError as exc:
        print(f"jalien-bin cp: {exc}", file=sys.stderr)
        return 1
    except ConnectionLost as exc:
        print(f"jalien-bin cp: {exc}", file=sys.stderr)
        return EXIT_NO_CONNECTION
    except ValueError as exc:
        print(f"jalien-bin {exc}", file=sys.stderr)
        return 2
