"""Stream ids of the binary channel: which session (channel) and which request.

A stream id is 32 bits: the top 12 are the channel, the low 20 the request sequence.
Channel 0 is the connection's own session; a proxy level gives each downstream client a
channel of its own (OpenChannel), so that many users' sessions share one upstream
connection and a frame is forwarded by rewriting its header only. Sequence 0 of a channel
carries control messages (OpenChannel, CloseChannel) and pushed events.
"""

from __future__ import annotations

CHANNEL_BITS = 12
SEQ_BITS = 20
MAX_CHANNEL = (1 << CHANNEL_BITS) - 1
SEQ_MASK = (1 << SEQ_BITS) - 1
CONTROL_SEQ = 0


def stream_id(channel: int, seq: int) -> int:
    return (channel << SEQ_BITS) | (seq & SEQ_MASK)


def channel_of(stream: int) -> int:
    return stream >> SEQ_BITS


def seq_of(stream: int) -> int:
    return stream & SEQ_MASK


class SequenceAllocator:
    """Request sequences 1..2**20-1 for one channel, skipping those still in flight."""

    __slots__ = ("_in_flight", "_next")

    def __init__(self) -> None:
        self._next = 1
        self._in_flight: set[int] = set()

    def allocate(self) -> int:
        for _ in range(SEQ_MASK):
            seq = self._next
            self._next = seq + 1 if seq < SEQ_MASK else 1
            if seq not in self._in_flight:
                self._in_flight.add(seq)
                return seq
        raise RuntimeError("all request sequences of the channel are in flight")

    def release(self, seq: int) -> None:
        self._in_flight.discard(seq)

    def __len__(self) -> int:
        return len(self._in_flight)
