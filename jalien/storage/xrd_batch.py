"""Many small XRootD downloads through few xrdcp processes.

Each xrdcp process resolves this host's addresses and loads its libraries when it starts
(~15 ms of CPU, and a DNS round trip): with ``cp -T 32`` over 1 MB files that start-up, not
the bytes, set the rate. The downloads that are ready at the same moment (their ``access``
answered) are gathered for 30 ms and handed to one ``xrdcp --parallel N
--infiles LIST DIR``. xrdcp names each file after its source (the GUID: unique), in a private
directory beside the destination; every file is then checked on its own (size, md5 against
the catalogue: a corrupt replica is caught) by the caller. A file the batch did not bring
goes back to the one-process-per-file path, which retries, resumes and tries other replicas.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from urllib.parse import urlsplit

from jalien.storage.xrd import XrdcpError, xrdcp

GATHER = 0.03  # seconds a batch waits for companions (fewer, larger xrdcp runs win)
MAX_BATCH = 64


class XrdBatcher:
    def __init__(self, stall: float = 30.0, min_rate: float = 256 * 1024) -> None:
        self.stall = stall
        self.min_rate = min_rate
        self._pending: list[tuple[str, int, str, asyncio.Future[str]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Future[None]] = set()  # kept referenced while they run

    async def fetch(self, url: str, size: int, near: str) -> str:
        """Downloads *url* (with its envelope) into a private directory next to *near* (a
        destination path); returns the file's path there, which the caller moves away."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((url, size, near, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(GATHER, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[str, int, str, asyncio.Future[str]]]) -> None:
        folder = tempfile.mkdtemp(prefix=".jalien-batch-", dir=os.path.dirname(batch[0][2]) or ".")
        listing = os.path.join(folder, ".sources")
        with open(listing, "w") as fh:
            fh.write("".join(f"{url}\n" for url, _, _, _ in batch))
        total = sum(max(size, 0) for _, size, _, _ in batch)
        problem = ""
        try:
            await xrdcp(
                listing, folder + "/", parallel=len(batch), stall=self.stall,
                timeout=60.0 + total / self.min_rate,
            )  # fmt: skip
        except XrdcpError as exc:
            problem = str(exc)  # some files may still be there: each is checked below
        except BaseException as exc:
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(XrdcpError(f"batch failed: {exc}"))
            shutil.rmtree(folder, ignore_errors=True)
            raise
        for url, _, _, future in batch:
            path = os.path.join(folder, os.path.basename(urlsplit(url).path))
            if os.path.exists(path):
                future.set_result(path)
            else:
                future.set_exception(XrdcpError(problem or "not brought by the batch"))
        # the callers move their files out right when their future resolves
        await asyncio.sleep(0)
        for _ in range(100):
            if not [n for n in os.listdir(folder) if n != ".sources"]:
                break
            await asyncio.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)
