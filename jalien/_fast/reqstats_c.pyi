# the same interface as reqstats_py (jalien/_fast/__init__.py shows the checker that twin)
from typing_extensions import disjoint_base

IMPLEMENTATION: str

@disjoint_base  # a Cython cdef class
class RequestCounter:
    def __init__(self) -> None: ...
    def observe(self, command: str, exitcode: int | str, seconds: float) -> None: ...
    def snapshot(self) -> dict[str, tuple[list[int], float, int]]: ...
