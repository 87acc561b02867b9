"""A JobAgent's inputs: what failed (a central lost mid-download) is asked once more, and
only that; what fails twice is reported (the job then ends ERROR_IB)."""

from __future__ import annotations

from jalien.roles import jobagent
from jalien.storage.cp import CopyReport, FileResult


async def test_failed_inputs_are_asked_once_more(monkeypatch, tmp_path):
    asked: list[list[str]] = []

    async def copy(central, sources, dest, options):
        asked.append(list(sources))
        lost = len(asked) == 1
        return CopyReport(
            results=[
                FileResult(src, dest, "failed" if lost and src == "/a" else "copied",
                           error="connection lost" if lost and src == "/a" else "")
                for src in sources
            ],
            seconds=0.0,
        )  # fmt: skip

    monkeypatch.setattr(jobagent, "copy", copy)
    monkeypatch.setattr(jobagent, "RETRY_AFTER", 0.0)
    copier = jobagent.StorageCopier(None)  # type: ignore[arg-type]  # no SE is reached
    assert await copier.download(None, ["/a", "/b"], tmp_path) == []
    assert asked == [["/a", "/b"], ["/a"]]

    asked.clear()

    async def never(central, sources, dest, options):
        asked.append(list(sources))
        return CopyReport(results=[FileResult(s, dest, "failed", error="gone") for s in sources])

    monkeypatch.setattr(jobagent, "copy", never)
    assert await copier.download(None, ["/x"], tmp_path) == ["/x: gone"]
    assert asked == [["/x"], ["/x"]]
