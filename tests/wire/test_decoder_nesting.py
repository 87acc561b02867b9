"""Request decoders against hostile bodies: deep nesting anywhere (JSON and MessagePack) is
a DecodeError, never a RecursionError; whatever the bytes, only DecodeError escapes."""

from __future__ import annotations

import contextlib
import json
import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalien.wire import codec
from jalien.wire.codec import MAX_NESTING, DecodeError, nesting_exceeds
from jalien.wire.jalien_json import parse_request
from jalien.wire.messages import Reply, Request

DEEP = 100_000


def _deep_json(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


DEEP_JSON = {
    "top-level array": _deep_json(DEEP),
    "unknown field": b'{"type":"req","command":"ls","x":' + _deep_json(DEEP) + b"}",
    "unknown field objects": b'{"type":"req","command":"ls","x":'
    + b'{"a":' * DEEP
    + b"1"
    + b"}" * DEEP
    + b"}",
    "options": b'{"type":"req","command":"ls","options":' + _deep_json(DEEP) + b"}",
    "unterminated": b'{"type":"req","command":"ls","x":' + b"[" * DEEP,
    "after an escaped string": b'{"type":"req","command":"a\\"[","x":' + _deep_json(DEEP) + b"}",
    "just past the bound": b'{"type":"req","command":"ls","x":' + _deep_json(MAX_NESTING) + b"}",
}


@pytest.mark.parametrize("body", DEEP_JSON.values(), ids=DEEP_JSON.keys())
def test_deep_json_request_is_a_decode_error(body):
    with pytest.raises(DecodeError, match=f"nested deeper than {MAX_NESTING} levels"):
        parse_request(body)
    with pytest.raises(DecodeError, match=f"nested deeper than {MAX_NESTING} levels"):
        codec.decode_json(body)
    with pytest.raises(DecodeError, match="nested deeper"):
        parse_request(body.decode())


def _deep_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\x90"  # fixarray of one element, ..., empty fixarray


DEEP_MSGPACK = {
    "top-level array": _deep_msgpack(DEEP),
    "unknown field": b"\x83\xa4type\xa3req\xa7command\xa2ls\xa1x" + _deep_msgpack(DEEP),
    "reply results": b"\x82\xa4type\xa3rep\xa7results\x91\x81\xa1x" + _deep_msgpack(DEEP),
    "event payload": b"\x83\xa4type\xa3evt\xa5topic\xa1t\xa7payload\x81\xa1x"
    + b"\x81\xa1x" * DEEP
    + b"\x80",
}


@pytest.mark.parametrize("body", DEEP_MSGPACK.values(), ids=DEEP_MSGPACK.keys())
def test_deep_msgpack_is_a_decode_error(body):
    with pytest.raises(DecodeError, match="bad message"):
        codec.decode_msgpack(body)


def test_nesting_up_to_the_bound_decodes():
    value = json.loads(_deep_json(MAX_NESTING - 3))  # 3 levels: message, results, record
    body = json.dumps({"type": "rep", "results": [{"x": value}]}).encode()
    assert not nesting_exceeds(body)
    assert codec.decode_json(body).results[0]["x"] == value
    deeper = json.dumps({"type": "rep", "results": [{"x": [value]}]}).encode()
    with pytest.raises(DecodeError, match="nested deeper"):
        codec.decode_json(deeper)


def test_brackets_inside_strings_do_not_count():
    words = ["[" * 500, "{" * 500 + '\\"', "]]]"]
    body = json.dumps({"command": "echo", "options": words}).encode()
    request, _ = parse_request(body)
    assert request.options == words
    shallow = json.dumps({"type": "rep", "results": [{"m": "[" * 200}] * 100}).encode()
    assert codec.decode_json(shallow).results[0]["m"] == "[" * 200


def test_a_large_shallow_reply_is_not_refused():
    reply = Reply(results=[{"name": f"f{i}", "tags": [1, [2]]} for i in range(10_000)])
    assert codec.decode_json(codec.encode_json(reply)) == reply
    assert codec.decode_msgpack(codec.encode_msgpack(reply)) == reply


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet='[]{}"\\ab', max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3)
    ),
    max_leaves=100,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.integers(0, 70))
def test_nesting_check_is_exact(value, wrap):
    for _ in range(wrap):
        value = [value] if wrap % 2 else {"k[": value}
    body = json.dumps(value).encode()
    assert nesting_exceeds(body) == (_depth(value) > MAX_NESTING)


def _mutations(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.3 and data:
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        elif choice < 0.6:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.choice([b"[", b"{", b'"', b"\\", b"\x91", b"\xdc\xff\xff"]) * (
                rng.choice([1, 2, 70, 3000])
            )
        elif data:
            del data[rng.randrange(len(data)) :]
    return bytes(data)


SEEDS = [
    codec.encode_json(Request(command="ls", options=["-l", "/a[b]"])),
    codec.encode_msgpack(Request(command="ls", options=["-l", "/a{b}"], data=[b"\x91\x91"])),
    codec.encode_msgpack(Reply(results=[{"x": [[1], {"y": "z"}]}], metadata={"a": "b"})),
    codec.encode_json(Reply(results=[{"x": [[1], {"y": "z\\"}]}])),
    b'{"command":"ls","options":["-nomsg",1,2.5,null,true]}',
]


def _decoders():
    return [parse_request, codec.decode_json, codec.decode_msgpack]


def test_fuzz_mutated_messages_only_decode_errors():
    rng = random.Random(20260514)
    for _ in range(3000):
        data = _mutations(rng.choice(SEEDS), rng)
        for decode in _decoders():
            with contextlib.suppress(DecodeError):
                decode(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_decode_errors(data):
    for decode in _decoders():
        with contextlib.suppress(DecodeError):
            decode(data)


@settings(max_examples=200, deadline=None)
@given(_json_values, st.integers(0, 80))
def test_fuzz_structured_only_decode_errors(value, wrap):
    for _ in range(wrap):
        value = [value]
    for body in (
        json.dumps({"command": "ls", "options": value}).encode(),
        json.dumps({"type": "rep", "results": [{"x": value}]}).encode(),
        msgspec.msgpack.encode({"type": "evt", "topic": "t", "payload": {"x": value}}),
        msgspec.msgpack.encode({"type": "req", "command": "ls", "extra": value}),
    ):
        for decode in _decoders():
            with contextlib.suppress(DecodeError):
                decode(body)
