# the same interface as sandwich_py (jalien/_fast/__init__.py shows the checker that twin)
from collections.abc import Callable, Iterable

IMPLEMENTATION: str
NAMES: tuple[str, str, str]

def merge3(
    first: Iterable[list[bytes]],
    listing: Iterable[list[bytes]],
    second: Iterable[list[bytes]],
    dark: Callable[[bytes], object],
    lost: Callable[[bytes], object],
) -> tuple[int, int, int]: ...
