# the same interface as framing_py (jalien/_fast/__init__.py shows the checker that twin)
from typing import TypeAlias

from typing_extensions import disjoint_base

BytesLike: TypeAlias = bytes | bytearray | memoryview
Frame: TypeAlias = tuple[int, int, bytes]  # (stream_id, flags, body)

IMPLEMENTATION: str

def compress(data: BytesLike, level: int = ...) -> bytes: ...
def decompress(body: BytesLike, max_size: int = ...) -> bytes: ...
def encode_frame(
    stream_id: int,
    body: BytesLike,
    codec: int = ...,
    compress_threshold: int = ...,
    level: int = ...,
) -> bytes: ...
def encode_raw(stream_id: int, flags: int, wire_body: BytesLike) -> bytes: ...

@disjoint_base  # a Cython cdef class
class FrameDecoder:
    def __init__(self, max_frame_size: int = ..., raw: bool = ...) -> None: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: BytesLike) -> list[Frame]: ...
