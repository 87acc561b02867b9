# the same interface as auditlines_py (jalien/_fast/__init__.py shows the checker that twin)
from collections.abc import Callable, Sequence
from typing import Any

from typing_extensions import disjoint_base

IMPLEMENTATION: str

@disjoint_base  # a Cython cdef class
class LineMaker:
    level: str
    def __init__(
        self,
        level: str,
        clock: Callable[[float], str],
        args_of: Callable[[str, Sequence[str]], list[str]],
        error_of: Callable[[str], str],
        refusal_codes: frozenset[int],
    ) -> None: ...
    def time_text(self, t: float) -> bytes: ...
    def add(self, entry: tuple[Any, ...], out: bytearray) -> None: ...
