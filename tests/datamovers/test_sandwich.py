"""The dark-data compare (jalien/_fast sandwich twins): findings are exactly the set algebra
of Rucio's sandwich, in any batching, duplicates counted once, unsorted input refused; the
Cython twin gives what the pure one gives (the pure pass runs this with the twin alone)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien._fast import sandwich, sandwich_py

TWINS = [sandwich_py] if sandwich is sandwich_py else [sandwich_py, sandwich]
keys = st.lists(st.binary(min_size=0, max_size=6), max_size=60)


def batched(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)] + [[]]


def run(impl, a, s, b, size=7):
    dark: list[bytes] = []
    lost: list[bytes] = []
    counts = impl.merge3(
        batched(a, size), batched(s, size), batched(b, size), dark.append, lost.append
    )
    return counts, dark, lost


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
@settings(max_examples=300, deadline=None)
@given(a=keys, s=keys, b=keys, size=st.integers(1, 9))
def test_findings_are_the_set_algebra(impl, a, s, b, size):
    a, s, b = sorted(a), sorted(s), sorted(b)
    counts, dark, lost = run(impl, a, s, b, size)
    assert counts == (len(a), len(s), len(b))
    assert dark == sorted(set(s) - set(a) - set(b))
    assert lost == sorted((set(a) & set(b)) - set(s))
    assert run(sandwich_py, a, s, b, size) == (counts, dark, lost)  # the twins agree


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
def test_example_of_each_case(impl):
    first = [b"/se/a\n", b"/se/b\n", b"/se/c\n"]
    listing = [b"/se/b\n", b"/se/dark\n", b"/se/new\n"]
    second = [b"/se/b\n", b"/se/c\n", b"/se/new\n"]
    # a: removed meanwhile (in the first only); c: lost; dark: dark; new: uploaded meanwhile
    assert run(impl, first, listing, second) == ((3, 3, 3), [b"/se/dark\n"], [b"/se/c\n"])
    assert run(impl, [], [], []) == ((0, 0, 0), [], [])


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_unsorted_stream_is_refused_by_name(impl, which):
    streams = [[b"a", b"b"], [b"a", b"b"], [b"a", b"b"]]
    streams[which] = [b"b", b"a"]
    with pytest.raises(ValueError, match=f"{impl.NAMES[which]} is not sorted"):
        run(impl, *streams)


@pytest.mark.parametrize("impl", TWINS, ids=lambda m: m.IMPLEMENTATION)
def test_generators_of_batches_stream(impl):
    """Batches are pulled as needed (a generator of file reads), not gathered first."""
    pulled = []

    def gen(n, tag):
        for i in range(n):
            pulled.append(tag)
            yield [b"%06d" % (i * 10 + j) for j in range(10)]

    dark: list[bytes] = []
    counts = impl.merge3(gen(100, "a"), gen(100, "s"), gen(50, "b"), dark.append, print)
    assert counts == (1000, 1000, 500) and dark == []
    assert pulled[:6] == ["a", "s", "b", "a", "s", "b"]  # interleaved: streaming
