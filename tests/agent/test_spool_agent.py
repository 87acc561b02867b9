"""A JobAgent on a node without network (docs/relay.md), with fakes: no local socket for the
payload, a relay restart's "not repeated" answer is waited out like a lost connection, and
the StagedCopier moves files through the spool's stage directory with relay.staged and
relay.upload."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from jalien.agent.job import OutputItem
from jalien.net.spool_relay import NOT_REPEATED
from jalien.roles.jobagent import StagedCopier
from jalien.wire import site_api
from jalien.wire.messages import Reply, Request
from jalien.wire.site_api import StagedFiles, StagedUpload
from tests.agent.test_runner import FakeCentral, _no_sleep, make_runner


class RestartingRelay(FakeCentral):
    """Answers each state's first report "not repeated" (exit 107), as a restarted relay."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        state = site_api.decode(request.data[0], site_api.StatusChange).state
        if state not in self.seen:
            self.seen.add(state)
            return Reply(exitcode=107, error=NOT_REPEATED)
        return await super().request(request, timeout)


async def test_no_local_socket_and_relay_restarts_waited_out(tmp_path, job_token, monkeypatch):
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    script = tmp_path / "env.sh"
    script.write_text('#!/bin/sh\necho "host=${JALIEN_HOST:-none} job=$ALIEN_PROC_ID"\n')
    script.chmod(0o755)
    runner, _, copier = make_runner(tmp_path, job_token, executable=str(script))
    runner.config = dataclasses.replace(runner.config, local_socket=False)
    runner.job.outputs.append(OutputItem(name="stdout"))
    runner.agent = relay = RestartingRelay()
    assert await runner.run() == "DONE"
    assert relay.states() == ["STARTED", "RUNNING", "SAVING", "SAVED", "DONE"]
    assert runner.socket is None
    stdout = copier.uploaded["/alice/cern.ch/user/j/jdoe/alien-job-7/stdout"][0]
    assert stdout == b"host=none job=7\n"


class FakeRelay:
    """relay.staged and relay.upload as the VoBox answers them."""

    def __init__(self, stage: Path) -> None:
        self.stage = stage
        self.uploads: list[StagedUpload] = []

    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply:
        raise AssertionError(command)

    async def request(self, request: Request, timeout: float | None = None) -> Reply:
        if request.command == "relay.staged":
            ask = site_api.decode(request.data[0], StagedFiles)
            staged = StagedFiles(queue_id=7, out_dir=str(self.stage / "out"))
            for lfn in ask.inputs:
                path = self.stage / "in" / Path(lfn).name
                if path.exists():
                    staged.inputs[lfn] = str(path)
                else:
                    staged.errors[lfn] = "no such file"
            return Reply(data=[site_api.encode(staged)])
        assert request.command == "relay.upload"
        ask = site_api.decode(request.data[0], StagedUpload)
        self.uploads.append(ask)
        assert (self.stage / "out" / ask.name).is_file()
        return Reply()


async def test_staged_copier(tmp_path):
    stage = tmp_path / "stage" / "7"
    (stage / "in").mkdir(parents=True)
    (stage / "out").mkdir()
    (stage / "in" / "in.txt").write_text("staged\n")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    relay, copier = FakeRelay(stage), StagedCopier()
    errors = await copier.download(relay, ["/a/in.txt", "/a/missing.txt"], sandbox)
    assert errors == ["/a/missing.txt: no such file"]
    assert (sandbox / "in.txt").read_text() == "staged\n"
    (sandbox / "out.txt").write_text("result\n")
    assert await copier.upload(relay, sandbox / "out.txt", "/a/out/out.txt", "disk:2") is None
    assert relay.uploads == [StagedUpload(name="out.txt", lfn="/a/out/out.txt", specs="disk:2")]
    assert (stage / "out" / "out.txt").read_text() == "result\n"
    assert not [p for p in (stage / "out").iterdir() if p.name.startswith(".tmp-")]
