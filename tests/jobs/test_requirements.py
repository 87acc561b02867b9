"""Requirements expressions against an agent's attributes."""

from __future__ import annotations

import pytest

from jalien.jobs.jdl import JdlError
from jalien.jobs.requirements import compile_requirements

AGENT = {
    "ce": "ALICE::CERN::Slurm",
    "ttl": 80000,
    "gridpartitions": ["PDC08_2", "Production"],
    "site": "CERN",
    "cores": 8,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ('member(other.GridPartitions, "PDC08_2")', True),
        ('member(other.GridPartitions, "nope")', False),
        ("other.TTL > 3600 && other.Cores >= 8", True),
        ('other.CE == "alice::cern::slurm"', True),
        ('!(other.Site == "CERN")', False),
        ('other.Site == "FZK" || other.TTL > 100', True),
        ("other.Missing > 3", False),
        ("other.TTL > -5", True),
    ],
)
def test_evaluation(text, expected):
    assert compile_requirements(text)(AGENT) is expected


@pytest.mark.parametrize("text", ["other.TTL >", "frob(other.TTL)", "(a && b", "a b"])
def test_bad_requirements(text):
    with pytest.raises(JdlError):
        compile_requirements(text)


@pytest.mark.parametrize(
    ("text", "agent", "expected"),
    [
        ("other.Price >= 25e3", {"price": 30000}, True),
        ("other.Price >= 25e3", {"price": 20000}, False),
        ("other.TTL < 1.5E+4", {"ttl": 10}, True),
        ("other.TTL > -2e3", {"ttl": 0}, True),
        ('other.CE == "a\\"b"', {"ce": 'A"B'}, True),  # a backslash takes the next character
        ("!" * 10_001 + "other.X", {"x": True}, False),
        (" && ".join(["other.X"] * 1000), {"x": 1}, True),
        (" || ".join(["other.X"] * 1000), {"x": 0}, False),
        ("member(other.S, other.L)", {"s": frozenset("ab"), "l": ["a"]}, False),
        ("other.A < other.B", {"a": [1], "b": {"x": 1}}, False),
    ],
)
def test_numbers_chains_and_odd_agents(text, agent, expected):
    assert compile_requirements(text)(agent) is expected


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("(" * 65 + "a" + ")" * 65, 65, "nested deeper than 64 levels"),
        ("(" * 10_000, 65, "nested deeper than 64 levels"),
        ("member(" * 100 + "a", 455, "nested deeper than 64 levels"),
        ("member(a b)", 10, "expected ',' or '\\)'"),
        ("other.TTL > 1e999", 13, "too large"),
        ("other.TTL > " + "9" * 5000, 13, "too large"),
        ("a; b", 4, "unexpected 'b'"),
        ('a == "b', 6, "unterminated string"),
        ("a" * 20_000, 1, "longer than 16384"),
    ],
)
def test_bad_requirements_say_where(text, col, message):
    with pytest.raises(JdlError, match=message) as info:
        compile_requirements(text)
    assert (info.value.line, info.value.column) == (1, col)
