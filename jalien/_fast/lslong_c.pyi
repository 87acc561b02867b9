# the same interface as lslong_py (jalien/_fast/__init__.py shows the checker that twin)
from jalien._fast.lslong_py import LongView

IMPLEMENTATION: str

def ls_long_json(rows: bytes, base: str, slash: bool, human: bool, view: LongView) -> bytes: ...
