"""Messages round-trip through both encodings, and the JAliEn JSON edge is as alien.py reads it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jalien.wire import codec
from jalien.wire.codec import DecodeError
from jalien.wire.jalien_json import OutputMode, parse_request, render_reply
from jalien.wire.messages import Cancel, CloseChannel, DirEntry, Event, OpenChannel, Reply, Request

SAMPLES = [
    Request(command="ls", options=["-l", "/alice"]),
    Request(command="pwd"),
    Reply(exitcode=0, results=[{"message": "a", "size": 12}], metadata={"user": "jdoe"}),
    Reply(exitcode=2, error="No such file"),
    Reply(entries=[DirEntry(name="a.root", size=5, ctime=1), DirEntry(name="d", type="d")]),
    Event(topic="kill", payload={"queueId": 42}),
    Cancel(),
    OpenChannel(dn="/C=ch/O=jalien/CN=jdoe"),
    CloseChannel(),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("enc", ["msgpack", "json"])
def test_round_trip(message, enc):
    encode = getattr(codec, f"encode_{enc}")
    decode = getattr(codec, f"decode_{enc}")
    assert decode(encode(message)) == message


def test_tagged_union_on_the_wire():
    assert json.loads(codec.encode_json(Cancel())) == {"type": "cancel"}
    assert json.loads(codec.encode_json(Request(command="pwd"))) == {
        "type": "req",
        "command": "pwd",
    }


@pytest.mark.parametrize("body", [b"", b"\xc1", b'{"type": "nope"}', b'{"type":"req"}', b"[1,2]"])
def test_bad_bodies(body):
    with pytest.raises(DecodeError, match="bad message"):
        codec.decode_json(body) if body.startswith((b"{", b"[")) else codec.decode_msgpack(body)


@given(
    st.text(min_size=1, max_size=30).filter(str.strip),
    st.lists(st.text(max_size=50), max_size=10),
)
def test_request_property(command, options):
    req = Request(command=command, options=options)
    assert codec.decode_msgpack(codec.encode_msgpack(req)) == req
    assert codec.decode_json(codec.encode_json(req)) == req


def test_parse_jalien_request():
    req, mode = parse_request(b'{"command": "ls", "options": ["-nomsg", "-l", 5, true]}')
    assert req.command == "ls"
    assert req.options == ["-l", "5", "true"]
    assert mode is OutputMode.NO_MESSAGE
    assert parse_request('{"command":"pwd"}')[0].options == []
    assert parse_request('{"command":"x","options":["-nokeys"]}')[1] is OutputMode.MESSAGE_ONLY


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"command": 5}',
        '{"command": ""}',
        '{"command":"ls","options":"-l"}',
        "[]",
    ],
)
def test_parse_jalien_request_errors(text):
    with pytest.raises(DecodeError, match="invalid JSON request"):
        parse_request(text)


def test_render_reply_as_jalien():
    reply = Reply(
        exitcode=0,
        results=[{"message": "file1\n", "size": 10, "ok": True, "none": None, "l": [1, "b"]}],
        metadata={"user": "jdoe", "currentdir": "/alice/cern.ch/user/j/jdoe/"},
    )
    doc = json.loads(render_reply(reply))
    assert doc["metadata"] == {
        "user": "jdoe",
        "currentdir": "/alice/cern.ch/user/j/jdoe/",
        "exitcode": "0",
        "error": "",
    }
    assert doc["results"] == [
        {"message": "file1\n", "size": "10", "ok": "true", "none": "", "l": "1,b"}
    ]
    assert (
        json.loads(render_reply(reply, OutputMode.NO_MESSAGE))["results"][0].get("message") is None
    )
    assert json.loads(render_reply(reply, OutputMode.MESSAGE_ONLY))["results"] == [
        {"message": "file1\n"}
    ]
    err = json.loads(render_reply(Reply(exitcode=2, error="No such file")))
    assert err["metadata"]["exitcode"] == "2" and err["metadata"]["error"] == "No such file"
