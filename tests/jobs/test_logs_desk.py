"""jobs.logs_desk: a question pushed to the VoBox's own session (learnt from its site report)
is answered by that VoBox only; a closed session or an unknown CE is "not connected" at
once; a silent target times out; a job's agent answers for its job only."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from jalien.jobs.logs_desk import LogsDesk
from jalien.jobs.states import JobState
from jalien.wire.errors import RequestError
from jalien.wire.monitor_api import LOGS_TOPIC, LogsReport


class Jobs:
    def __init__(self) -> None:
        self._agents: dict[int, object] = {}
        self.matched_by: dict[int, str] = {}
        self.rows = {5: SimpleNamespace(job_state=JobState.RUNNING)}
        self.store = self

    async def get(self, job_id: int):
        return self.rows[job_id]


def _answering(desk: LogsDesk, who, **fields):
    """A push that answers each question as *who* would."""

    def push(event):
        assert event.topic == LOGS_TOPIC
        ref = int(event.payload["ref"])
        report = LogsReport(ref=ref, lines=[f"line of {who.login}"], **fields)
        asyncio.get_running_loop().call_soon(desk.answer, who, report)

    return push


async def test_vobox_and_job_questions():
    jobs = Jobs()
    desk = LogsDesk(jobs, timeout=0.2)  # type: ignore[arg-type]
    vobox = SimpleNamespace(login="vobox", serial="1")
    desk.site_seen("ALICE::X::CE", "vobox", SimpleNamespace(push=_answering(desk, vobox)))
    report = await desk.vobox("alice::x::ce", 10)
    assert report.lines == ["line of vobox"]

    jobs._agents[5] = _answering(desk, SimpleNamespace(login="agent", serial="9"), queue_id=5)
    jobs.matched_by[5] = "9"
    assert (await desk.job(5, 10)).lines == ["line of agent"]

    with pytest.raises(RequestError, match="no VoBox of CE ALICE::Y::CE is connected"):
        await desk.vobox("ALICE::Y::CE", 10)
    with pytest.raises(RequestError, match="-n wants 1"):
        await desk.vobox("ALICE::X::CE", 0)
    desk.site_seen("ALICE::X::CE", "vobox", SimpleNamespace(push=lambda e: None, closed=True))
    with pytest.raises(RequestError, match=r"is connected.*\(none is\)"):
        await desk.vobox("ALICE::X::CE", 10)


async def test_answers_from_others_are_refused_and_silence_times_out():
    jobs = Jobs()
    desk = LogsDesk(jobs, timeout=0.2)  # type: ignore[arg-type]
    intruder = SimpleNamespace(login="mallory", serial="2")
    refused: list[Exception] = []

    def push(event):
        report = LogsReport(ref=int(event.payload["ref"]), lines=["forged"])
        try:
            desk.answer(intruder, report)
        except RequestError as exc:
            refused.append(exc)

    desk.site_seen("ALICE::X::CE", "vobox", SimpleNamespace(push=push))
    with pytest.raises(RequestError, match=r"did not answer within 0\.2 s") as exc:
        await desk.vobox("ALICE::X::CE", 10)
    assert exc.value.exitcode == 62  # ETIME
    assert refused and "not yours to give" in str(refused[0])
    assert desk.questions.timeouts == 1 and desk.questions.answered == 0
