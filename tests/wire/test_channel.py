"""The binary channel's state machine without sockets: both sides talking to each other in
memory, any chunking of the bytes, interleaved streams, cancels, channels."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien.wire import codec, framing
from jalien.wire.channel import (
    CancelReceived,
    ChannelClosed,
    ClientChannel,
    ControlReply,
    EventReceived,
    Invalid,
    OpenRequested,
    ReplyFrame,
    RequestReceived,
    ServerChannel,
    decode,
    decode_reply,
)
from jalien.wire.messages import DirEntry, Event, Reply, Request
from jalien.wire.streams import stream_id


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[start:p])
        start = p
    return pieces


def feed(side, data: bytes, cuts: list[int]) -> list:
    events = []
    for piece in chunked(data, cuts):
        events.extend(side.receive(piece))
    return events


cuts = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12)
words = st.lists(st.text(max_size=12), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(st.tuples(st.integers(0, 3), words), min_size=1, max_size=20),
    cuts=cuts,
    compress=st.booleans(),
)
def test_interleaved_requests_any_chunking(requests, cuts, compress):
    client = ClientChannel(compress_threshold=16 if compress else 0)
    server = ServerChannel()
    wire = bytearray()
    for channel in (1, 2, 3):
        wire += client.open_channel(channel, dn=f"/CN=user{channel}")
    seqs = dict.fromkeys(range(4), 0)
    sent = []
    for channel, options in requests:
        seqs[channel] += 1
        sid = stream_id(channel, seqs[channel])
        wire += client.send_request(sid, Request(command="ls", options=options * 3))
        sent.append((sid, options * 3))
    events = feed(server, bytes(wire), cuts)
    opens = [e for e in events if type(e) is OpenRequested]
    assert [(e.channel, e.dn) for e in opens] == [(c, f"/CN=user{c}") for c in (1, 2, 3)]
    # the server has not opened them yet: requests on channels 1-3 are refused, 0 served
    got = [(e.stream, e.request.options) for e in events if type(e) is RequestReceived]
    assert got == [(sid, opts) for sid, opts in sent if sid >> 20 == 0]
    refused = [e for e in events if type(e) is Invalid]
    assert all("not open" in e.error for e in refused)
    assert len(got) + len(refused) == len(sent)
    # opened, the same requests are served, in order, bodies as they came (inflated)
    server2 = ServerChannel()
    for channel in (1, 2, 3):
        server2.open(channel)
    events = [e for e in feed(server2, bytes(wire), cuts) if type(e) is RequestReceived]
    assert [(e.stream, e.request.options) for e in events] == sent
    for e in events:
        assert decode(e.flags, e.body) == e.request
    assert server2.streams == {sid for sid, _ in sent}


@settings(max_examples=60, deadline=None)
@given(
    pages=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 300)), max_size=40),
    cancelled=st.sets(st.integers(0, 4), max_size=2),
    cuts=cuts,
)
def test_streamed_replies_interleaved_cancels_any_chunking(pages, cancelled, cuts):
    """Five requests in flight; their pages interleave, some are cancelled by the client
    while the server keeps writing; every stream ends with exactly one final frame."""
    client = ClientChannel()
    server = ServerChannel(compress_threshold=64)
    sids = [stream_id(0, seq) for seq in range(1, 6)]
    wire = b"".join(client.send_request(sid, Request(command="find")) for sid in sids)
    assert [e.stream for e in server.receive(wire)] == sids
    out = bytearray()
    for which, count in pages:
        entries = [DirEntry(name=f"f{i}") for i in range(count)]
        out += server.reply(sids[which], Reply(entries=entries), more=True)
    for which in range(5):
        if which % 2:  # a final page with an exit code
            out += server.reply(sids[which], Reply(exitcode=which, error="e"))
        out += server.end(sids[which])  # the others: an empty final reply
        assert server.end(sids[which]) == b""  # once only
    assert not server.streams
    cancel_wire = b"".join(client.cancel(sids[c]) for c in sorted(cancelled))
    assert [e.stream for e in server.receive(cancel_wire)] == [sids[c] for c in sorted(cancelled)]
    events = feed(client, bytes(out), cuts)
    assert all(type(e) is ReplyFrame for e in events)
    for which, sid in enumerate(sids):
        mine = [e for e in events if e.stream == sid]
        if which in cancelled:
            assert mine == []  # dropped after the cancel
            continue
        assert [e.final for e in mine] == [False] * (len(mine) - 1) + [True]
        replies = [decode_reply(e.flags, e.body) for e in mine]
        expected = sum(count for w, count in pages if w == which)
        assert sum(len(r.entries) for r in replies) == expected
        assert replies[-1].exitcode == (which if which % 2 else 0)
    assert not client.streams


def test_a_stream_that_produced_nothing_ends_with_an_empty_reply():
    server = ServerChannel()
    client = ClientChannel()
    sid = stream_id(0, 7)
    server.receive(client.send_request(sid, Request(command="ls")))
    data = server.end(sid)
    (event,) = client.receive(data)
    assert event.final and decode_reply(event.flags, event.body) == Reply()


def test_raw_frames_keep_their_flags_and_end_their_stream():
    server = ServerChannel()
    server.receive(ClientChannel().send_request(stream_id(0, 1), Request(command="x")))
    body = framing.compress(codec.encode_msgpack(Reply(error="z" * 100)))
    more = framing.FLAG_MORE | framing.FLAG_COMPRESSED
    data = server.reply_raw(stream_id(0, 1), more, body)
    assert stream_id(0, 1) in server.streams
    data += server.reply_raw(stream_id(0, 1), framing.FLAG_COMPRESSED, body)
    assert not server.streams and server.end(stream_id(0, 1)) == b""
    frames = framing.FrameDecoder(raw=True).feed(data)
    assert [f[1] for f in frames] == [more, framing.FLAG_COMPRESSED]
    assert decode_reply(frames[0][1], frames[0][2]).error == "z" * 100


@pytest.mark.parametrize(
    ("sid", "message", "error"),
    [
        (stream_id(5, 1), Request(command="ls"), "channel 5 not open"),
        (stream_id(0, 0), Request(command="ls"), "requests need a sequence > 0"),
        (stream_id(0, 3), Reply(), "clients send requests only"),
        (stream_id(0, 3), Event(topic="kill"), "clients send requests only"),
        (stream_id(0, 1), None, "OpenChannel needs channel > 0"),
    ],
)
def test_invalid_frames_are_answered_and_the_connection_goes_on(sid, message, error):
    from jalien.wire.messages import OpenChannel

    server = ServerChannel()
    body = codec.encode_msgpack(message if message is not None else OpenChannel(dn="x"))
    (event,) = server.receive(framing.encode_frame(sid, body))
    assert type(event) is Invalid and event.error == error and not event.undecodable
    client = ClientChannel()
    client.streams.add(sid)
    (answer,) = client.receive(server.invalid(event))
    if type(answer) is ControlReply:  # sequence 0: the channel's control stream
        assert answer.reply.exitcode == 22
    else:
        assert decode_reply(answer.flags, answer.body).exitcode == 22
    # still usable
    (ok,) = server.receive(
        framing.encode_frame(stream_id(0, 9), codec.encode_msgpack(Request(command="pwd")))
    )
    assert type(ok) is RequestReceived


def test_duplicate_stream_and_garbage_bodies():
    server = ServerChannel()
    frame = framing.encode_frame(stream_id(0, 1), codec.encode_msgpack(Request(command="a")))
    first, second = server.receive(frame + frame)
    assert type(first) is RequestReceived
    assert type(second) is Invalid and second.error == "stream id already in use"
    (junk,) = server.receive(framing.encode_frame(stream_id(0, 2), b"\xc1 not msgpack"))
    assert type(junk) is Invalid and junk.undecodable
    (deep,) = server.receive(framing.encode_frame(stream_id(0, 2), b"[" * 100, framing.CODEC_JSON))
    assert type(deep) is Invalid and "nested deeper" in deep.error


def test_bad_header_breaks_the_connection():
    server = ServerChannel()
    with pytest.raises(framing.ProtocolError):
        server.receive(b"XX" + bytes(10))
    with pytest.raises(framing.ProtocolError):  # stays broken
        server.receive(b"")


def test_channels_open_close_and_their_streams():
    server = ServerChannel()
    client = ClientChannel()
    (opened,) = server.receive(client.open_channel(4, cert=b"DER"))
    assert (opened.channel, opened.cert, opened.stream) == (4, b"DER", stream_id(4, 0))
    server.open(4)
    server.receive(client.send_request(stream_id(4, 1), Request(command="sleep")))
    server.receive(client.send_request(stream_id(4, 2), Request(command="sleep")))
    (closed,) = server.receive(client.close_channel(4))
    assert type(closed) is ChannelClosed and sorted(closed.streams) == [
        stream_id(4, 1),
        stream_id(4, 2),
    ]
    assert not server.is_open(4) and not server.streams and not client.streams
    (channel0,) = server.receive(client.close_channel(0))  # channel 0 is the connection's
    assert channel0.streams == [] and server.is_open(0)
    (cancel,) = server.receive(client.cancel(stream_id(0, 5)))
    assert type(cancel) is CancelReceived


def test_control_messages_reach_the_client():
    server = ServerChannel()
    client = ClientChannel()
    data = server.push(3, Event(topic="kill", payload={"job": 1}))
    data += server.reply(
        stream_id(0, 0), Reply(exitcode=13, error="expired", metadata={"refused": "expired"})
    )
    data += framing.encode_frame(stream_id(2, 0), b"\xc1")
    event, refusal = client.receive(data)
    assert type(event) is EventReceived and (event.channel, event.event.topic) == (3, "kill")
    assert type(refusal) is ControlReply and refusal.reply.metadata == {"refused": "expired"}
    assert client.bad_control and "channel 2" in client.bad_control[0]


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    error_after=st.lists(st.booleans(), min_size=6, max_size=6),
    cuts=cuts,
)
def test_held_pages_the_last_one_is_final(counts, error_after, cuts):
    """page() holds each page back until the next: the last page leaves final with its own
    exit code and metadata; an error after some pages follows them; no page at all is one
    empty final reply."""
    client = ClientChannel()
    server = ServerChannel(compress_threshold=32)
    sids = [stream_id(0, i + 1) for i in range(len(counts))]
    server.receive(b"".join(client.send_request(s, Request(command="ls")) for s in sids))
    out = bytearray()
    for i in range(max(counts, default=0)):  # interleaved: page i of every stream
        for sid, count in zip(sids, counts, strict=True):
            if i < count:
                out += server.page(sid, Reply(results=[{"n": str(i)}], metadata={"p": str(i)}))
    for sid, failed in zip(sids, error_after, strict=False):
        out += server.finish(sid, Reply(exitcode=2, error="gone")) if failed else server.end(sid)
    assert not server.streams
    events = feed(client, bytes(out), cuts)
    for sid, count, failed in zip(sids, counts, error_after, strict=False):
        replies = [decode_reply(e.flags, e.body) for e in events if e.stream == sid]
        finals = [e.final for e in events if e.stream == sid]
        assert finals[-1] and not any(finals[:-1])
        assert [r.results for r in replies if r.results] == [[{"n": str(i)}] for i in range(count)]
        if failed:
            assert replies[-1].exitcode == 2 and len(replies) == count + 1
        elif count:
            assert replies[-1].metadata == {"p": str(count - 1)} and len(replies) == count
        else:
            assert replies == [Reply()]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(1, 3)),
        st.tuples(st.just("close"), st.integers(0, 3)),
        st.tuples(st.just("request"), st.integers(0, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(script=ops, cuts=cuts)
def test_both_sides_follow_one_script(script, cuts):
    """A client's script of opens, requests, cancels and closes, read by a server that
    takes events one at a time (a request right behind its OpenChannel finds the channel
    open) and answers every request it was given: a model of the channel says which are
    served and which refused; the client gets exactly one final frame for each, and the
    requests of a channel closed or opened again end with it."""
    client, server = ClientChannel(), ServerChannel()
    wire = bytearray()
    model_open = {0}
    seqs: dict[int, int] = {}
    fate: dict[int, str] = {}  # stream -> served | refused | dropped (its channel ended)
    cancelled: set[int] = set()
    for op, n in script:
        if op in ("open", "close"):
            wire += client.open_channel(n) if op == "open" else client.close_channel(n)
            if op == "close":  # the client forgets the channel's requests at once
                cancelled.update(sid for sid in fate if sid >> 20 == n)
            if n and n in model_open:
                for sid, what in fate.items():
                    if sid >> 20 == n and what == "served":
                        fate[sid] = "dropped"
            if op == "open":
                model_open.add(n)
            elif n:
                model_open.discard(n)
        elif op == "request":
            seqs[n] = seqs.get(n, 0) + 1
            sid = stream_id(n, seqs[n])
            wire += client.send_request(sid, Request(command="x"))
            fate[sid] = "served" if n in model_open else "refused"
        elif fate:
            sid = list(fate)[n % len(fate)]
            wire += client.cancel(sid)
            cancelled.add(sid)
    for piece in chunked(bytes(wire), cuts):
        server.feed(piece)
    answers = bytearray()
    served, refused = [], []
    while (event := server.next_event()) is not None:
        if type(event) is OpenRequested:
            server.open(event.channel)
        elif type(event) is RequestReceived:
            served.append(event.stream)
        elif type(event) is Invalid:
            refused.append(event.stream)
            answers += server.invalid(event)
    assert sorted(refused) == sorted(s for s, f in fate.items() if f == "refused")
    assert sorted(served) == sorted(s for s, f in fate.items() if f != "refused")
    for sid in served:
        data = server.end(sid)  # every request still in flight answered
        assert bool(data) == (fate[sid] == "served")
        answers += data
    assert not server.streams
    events = client.receive(bytes(answers))
    assert all(type(e) is ReplyFrame and e.final for e in events)
    got = sorted(e.stream for e in events)
    expected = sorted(s for s, f in fate.items() if f != "dropped" and s not in cancelled)
    assert got == expected
    assert client.streams <= {s for s, f in fate.items() if f == "dropped"}
