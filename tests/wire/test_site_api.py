"""The typed site contracts (wire.site_api): every Struct round-trips through MessagePack and
JSON, a wrong or broken message is a SiteApiError, and the JAliEn edge (key=value words in,
string records out) reads and writes what previous versions and alien.py use."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jalien.wire import site_api
from jalien.wire.site_api import (
    AccessGrant,
    JobOffer,
    MatchedJob,
    ResourceTrace,
    SiteApiError,
    StatusChange,
    WaitingJobs,
)

TEXT = st.text(max_size=40)
NAMES = st.lists(st.text(alphabet="abcdefXYZ0123456789_:@.-", min_size=1, max_size=12), max_size=4)
INT = st.integers(min_value=0, max_value=2**53)

offers = st.builds(
    JobOffer,
    site=TEXT,
    ce=TEXT,
    ttl=INT,
    cores=INT,
    memory=INT,
    disk=INT,
    packages=st.none() | NAMES,
    users=st.none() | NAMES,
    partitions=NAMES,
    node=TEXT,
    extra=st.dictionaries(TEXT, TEXT, max_size=3),
)
traces = st.builds(
    ResourceTrace,
    samples=INT,
    cpu=st.floats(0, 1e9),
    wall=st.floats(0, 1e9),
    max_rss=INT,
    max_pss=INT,
    max_vms=INT,
    max_disk=INT,
    max_processes=INT,
)
messages = st.one_of(
    offers,
    st.builds(WaitingJobs, count=INT),
    st.builds(
        MatchedJob,
        queue_id=INT,
        user=TEXT,
        jdl=TEXT,
        output_dir=TEXT,
        token_cert=TEXT,
        token_key=TEXT,
    ),
    st.builds(
        StatusChange,
        queue_id=INT,
        state=TEXT,
        exit_code=st.none() | st.integers(-255, 255),
        error=TEXT,
        message=TEXT,
        node=TEXT,
        trace=st.none() | traces,
    ),
    st.builds(
        AccessGrant,
        url=TEXT,
        envelope=TEXT,
        se=TEXT,
        guid=TEXT,
        lfn=TEXT,
        size=INT,
        md5=TEXT,
        tags=NAMES,
        n_ses=INT,
    ),
)


@given(messages)
def test_round_trip_msgpack_and_json(message):
    assert site_api.decode(site_api.encode(message), type(message)) == message
    union = msgspec.json.Decoder(site_api.SiteMessage)
    assert union.decode(msgspec.json.encode(message)) == message


def test_tags_keep_types_apart():
    data = site_api.encode(JobOffer(site="S"))
    with pytest.raises(SiteApiError, match="expected MatchedJob, got JobOffer"):
        site_api.decode(data, MatchedJob)
    for bad in (b"", b"\xc1", b"\x91\x01", msgspec.msgpack.encode({"type": "nope"})):
        with pytest.raises(SiteApiError, match="not a site message"):
            site_api.decode(bad, JobOffer)
    wrong = msgspec.msgpack.encode({"type": "offer", "ttl": "long"})
    with pytest.raises(SiteApiError, match="ttl"):
        site_api.decode(wrong, JobOffer)


def test_an_older_reader_skips_new_fields():
    """Append-only evolution: a field a reader does not know is ignored."""
    data = msgspec.msgpack.encode({"type": "job", "queue_id": 3, "user": "u", "jdl": "",
                                   "output_dir": "/o/", "gpu": "A100"})  # fmt: skip
    assert site_api.decode(data, MatchedJob).queue_id == 3


@given(offers.filter(lambda o: all("=" not in k and k.lower() == k for k in o.extra)))
def test_offer_words_round_trip(offer):
    """What a previous-version agent sends and what a typed offer says are the same."""
    fixed = msgspec.structs.replace(
        offer,
        packages=None if offer.packages is None else sorted(set(offer.packages) - {"*"}),
        users=None if offer.users is None else sorted(set(offer.users) - {"*"}),
        partitions=sorted(set(offer.partitions)),
        extra={
            k: v
            for k, v in offer.extra.items()
            if k not in site_api._NUMBERS + site_api._SETS + ("site", "ce", "node")
        },
    )
    fixed.packages = None if fixed.packages is None else [p for p in fixed.packages if "," not in p]
    assert site_api.offer_from_words(fixed.words()) == fixed


def test_offer_from_words_as_jalien_sends_them():
    offer = site_api.offer_from_words(
        [
            "site=ALICE::CERN",
            "CE=ce1",
            "ttl=3600",
            "cores=8",
            "users=*",
            "packages=a,b,,a",
            "partitions=",
            "node=wn1",
            "GPU=1",
        ]
    )
    assert (offer.site, offer.ce, offer.ttl, offer.cores, offer.node) == (
        "ALICE::CERN", "ce1", 3600, 8, "wn1",
    )  # fmt: skip
    assert offer.users is None and offer.packages == ["a", "b"] and offer.partitions == []
    assert offer.extra == {"gpu": "1"}
    with pytest.raises(SiteApiError, match="expected key=value"):
        site_api.offer_from_words(["ttl"])
    with pytest.raises(SiteApiError, match="ttl must be a number"):
        site_api.offer_from_words(["ttl=soon"])


def test_matched_job_record_is_jalien_shaped():
    job = MatchedJob(queue_id=7, user="jdoe", jdl="x", output_dir="/o/", token_cert="C",
                     token_key="K")  # fmt: skip
    record = job.record()
    assert list(record) == ["queueId", "user", "jdl", "outputDir", "tokencert", "tokenkey",
                            "message"]  # fmt: skip
    assert record["queueId"] == "7" and record["message"] == "job 7"
    assert MatchedJob.from_record(record) == job
    bare = MatchedJob(queue_id=8, user="u", jdl="", output_dir="").record()
    assert "tokencert" not in bare and list(bare)[-1] == "message"
    with pytest.raises(SiteApiError, match="no job id"):
        MatchedJob.from_record(site_api.NO_JOB_RECORD)


def test_status_change_words_and_trace():
    trace = ResourceTrace(samples=3, cpu=1.5, wall=2.0, max_pss=4 << 20)
    change = StatusChange(queue_id=5, state="ERROR_E", exit_code=3, error="segfault",
                          message="segfault", trace=trace)  # fmt: skip
    assert change.trace_message() == f"segfault; {trace.describe()}"
    assert "maxpss=4096kB" in change.trace_message()
    back = site_api.status_from_words(change.words())
    assert (back.queue_id, back.state, back.exit_code, back.error) == (5, "ERROR_E", 3, "segfault")
    assert back.message == change.trace_message() and back.trace is None  # text, as before
    assert site_api.status_from_words(["5", "DONE", "exitcode=x"]).exit_code == -1
    assert len(site_api.status_from_words(["5", "DONE", "message=" + "m" * 5000]).message) == 1000
    with pytest.raises(SiteApiError, match="setJobStatus id STATE"):
        site_api.status_from_words(["5"])
    with pytest.raises(SiteApiError, match="not a job id"):
        site_api.status_from_words(["five", "DONE"])


def test_access_grant_record_is_jalien_shaped():
    grant = AccessGrant(url="root://se//01/23/g", envelope="E", se="ALICE::CERN::EOS",
                        guid="g", lfn="/a/f", size=12, md5="m", tags=["Disk", "legoinput"],
                        n_ses=2)  # fmt: skip
    record = grant.record()
    assert list(record) == ["url", "envelope", "se", "tags", "nSEs", "guid", "md5", "size",
                            "lfn", "message"]  # fmt: skip
    assert record["tags"] == "[disk, legoinput]" and record["size"] == "12"
    back = AccessGrant.from_record(record)
    assert back == msgspec.structs.replace(grant, tags=["disk", "legoinput"])
    assert AccessGrant.from_record({**record, "tags": "[]"}).tags == []
    with pytest.raises(SiteApiError, match="without envelope"):
        AccessGrant.from_record({"url": "u", "se": "s"})
    with pytest.raises(SiteApiError, match="bad size"):
        AccessGrant.from_record({**record, "size": "big"})
