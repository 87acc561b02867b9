"""The JobAgent's answer to central's spy question: stdout/stderr tails, the sandbox
listing, node information, and files of the sandbox only (no way out by .. or a link)."""

from __future__ import annotations

import os

from jalien.agent.monitor import Sample, Trace
from jalien.agent.sandbox import Sandbox
from jalien.agent.spy import spy_answer


def answer(sandbox: Sandbox, what: str, limit: int = 1000) -> tuple[str, str]:
    return spy_answer(what, sandbox, Sample(processes=1, cpu=1.5), Trace(), "S", "S::CE", limit)


def test_spy_answers_inside_the_sandbox_only(tmp_path):
    sandbox = Sandbox(tmp_path, 42).create()
    sandbox.stdout.write_text("line\n" * 10 + "last line\n")
    sandbox.stderr.write_text("oops\n")
    (sandbox.root / "out").mkdir()
    (sandbox.root / "out" / "result.txt").write_text("42\n")
    (tmp_path / "secret").write_text("not yours\n")
    os.symlink(tmp_path / "secret", sandbox.root / "link")
    text, error = answer(sandbox, "stdout")
    assert not error and text.endswith("last line\n")
    assert answer(sandbox, "stderr") == ("oops\n", "")
    listing, _ = answer(sandbox, "workdir")
    assert "out/result.txt" in listing and "link" in listing
    info, _ = answer(sandbox, "nodeinfo")
    assert "site: S  ce: S::CE" in info and "cpu=1.50s" in info
    assert answer(sandbox, "out/result.txt") == ("42\n", "")
    for outside in ("link", "../secret", "out/../../secret"):
        text, error = answer(sandbox, outside)
        assert not text and "not in the job's sandbox" in error, outside
    assert "no file" in answer(sandbox, "nothing.txt")[1]
    text, _ = answer(sandbox, "stdout", limit=12)
    assert text.startswith("[... last 12 of") and text.endswith("last line\n")
