"""The site calls typed on the binary channel (wire.site_api): an offer in Request.data is
answered in Reply.data, a status change carries its resource trace as numbers into the
job's trace; bad typed data is exit 22 with the reason; words (JAliEn, a previous-version
agent or VoBox) keep getting records, and the same call answers both ways the same."""

from __future__ import annotations

import msgspec

from jalien.wire import site_api
from jalien.wire.messages import Request
from jalien.wire.site_api import (
    JobOffer,
    MatchedJob,
    ResourceTrace,
    StatusChange,
    WaitingJobs,
)

from .test_job_commands import submit

OFFER = JobOffer(site="CERN", ce="ALICE::CERN::Fork", ttl=3600, cores=1, node="wn07")


def typed(command: str, message: site_api.SiteMessage, *options: str) -> Request:
    return Request(command=command, options=list(options), data=[site_api.encode(message)])


async def test_typed_offer_match_and_status(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    job = await submit(user)
    waiting = await site.request(typed("getNumberWaitingJobs", OFFER))
    assert waiting.exitcode == 0 and not waiting.results
    assert site_api.decode(waiting.data[0], WaitingJobs).count == 1
    got = await site.request(typed("getMatchJob", OFFER))
    assert got.exitcode == 0 and not got.results, got.error
    matched = site_api.decode(got.data[0], MatchedJob)
    assert (matched.queue_id, matched.user) == (job, "jdoe")
    assert matched.output_dir.endswith(f"/alien-job-{job}/") and "/bin/echo" in matched.jdl
    none = await site.request(typed("getMatchJob", OFFER))
    assert none.exitcode == 0 and none.data == [] and not none.results  # no job: no data
    info = (await user.call("jobinfo", str(job))).results[0]
    assert info["node"] == "wn07" and info["ce"] == "ALICE::CERN::Fork"  # the offer's node
    for state in ("STARTED", "RUNNING", "SAVING", "SAVED"):
        reply = await site.request(typed("setJobStatus", StatusChange(queue_id=job, state=state)))
        assert reply.exitcode == 0 and not reply.results, reply.error
    trace = ResourceTrace(samples=4, cpu=1.25, wall=3.0, max_pss=8 << 20, max_processes=2)
    done = StatusChange(queue_id=job, state="DONE", exit_code=0, trace=trace)
    assert (await site.request(typed("setJobStatus", done))).exitcode == 0
    row = (await user.call("jobinfo", str(job))).results[0]
    assert row["status"] == "DONE" and row["exitcode"] == "0"
    lines = (await user.call("ps", "-trace", str(job))).results[0]["message"]
    assert "[trace     ]: cpu=1.25s wall=3.0s" in lines and "maxpss=8192kB" in lines


async def test_typed_failure_keeps_error_and_trace(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    job = await submit(user)
    await site.request(typed("getMatchJob", OFFER))
    await site.request(typed("setJobStatus", StatusChange(queue_id=job, state="STARTED")))
    failed = StatusChange(queue_id=job, state="ERROR_E", exit_code=3, error="segfault",
                          message="segfault", trace=ResourceTrace(samples=1))  # fmt: skip
    assert (await site.request(typed("setJobStatus", failed))).exitcode == 0
    row = (await user.call("jobinfo", str(job))).results[0]
    assert (row["status"], row["exitcode"], row["error"]) == ("ERROR_E", "3", "segfault")
    lines = (await user.call("ps", "-trace", str(job))).results[0]["message"]
    assert "segfault; cpu=0.00s" in lines


async def test_bad_typed_data_is_refused_clearly(job_server, connect):
    site = await connect(job_server, login="vobox")
    wrong = await site.request(typed("getMatchJob", StatusChange(queue_id=1, state="DONE")))
    assert wrong.exitcode == 22 and "expected JobOffer, got StatusChange" in wrong.error
    junk = await site.request(Request(command="setJobStatus", data=[b"\xc1junk"]))
    assert junk.exitcode == 22 and "not a site message" in junk.error
    bad_type = msgspec.msgpack.encode({"type": "offer", "ttl": "soon"})
    reply = await site.request(Request(command="getNumberWaitingJobs", data=[bad_type]))
    assert reply.exitcode == 22 and "ttl" in reply.error
    unknown = await site.request(typed("setJobStatus", StatusChange(queue_id=1, state="LOST")))
    assert unknown.exitcode == 22 and "unknown job state" in unknown.error
    words = await site.call("getMatchJob", "ttl")
    assert words.exitcode == 22 and "expected key=value" in words.error


async def test_words_and_typed_answer_alike(job_server, connect):
    """A previous-version agent's words get the record the typed answer renders to."""
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    first, second = await submit(user), await submit(user)
    old = (await site.call("getMatchJob", *OFFER.words())).results[0]
    new = site_api.decode((await site.request(typed("getMatchJob", OFFER))).data[0], MatchedJob)
    assert {int(old["queueId"]), new.queue_id} == {first, second}
    assert list(old) == list(new.record())  # the same keys, in JAliEn's order
    assert MatchedJob.from_record(old).output_dir.endswith(f"/alien-job-{old['queueId']}/")
