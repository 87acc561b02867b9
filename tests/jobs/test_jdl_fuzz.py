"""Fuzzing the JDL parser and the Requirements compiler: whatever the text, only JdlError
(with a line and a column) escapes; what parses renders and reads back the same; compiled
Requirements evaluate to a bool for any agent, never raising. Bounded: a few seconds."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalien.jobs.classad import MAX_NESTING
from jalien.jobs.jdl import JdlError, parse_jdl, render_jdl
from jalien.jobs.requirements import compile_requirements

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

ATTRIBUTES = [
    "Executable",
    "Arguments",
    "InputFile",
    "InputData",
    "OutputFile",
    "OutputArchive",
    "OutputDir",
    "Requirements",
    "TTL",
    "Price",
    "Packages",
    "Split",
    "SplitMaxInputFileNumber",
    "JDLVariables",
    "MemorySize",
    "CPUCores",
    "ValidationCommand",
    "User",
    "Email",
    "WorkDirectorySize",
]

_names = st.sampled_from(ATTRIBUTES) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
_numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["25e3", "1e999", "1E-5", "2.5e+2", "0", "007", "9" * 30, "1" * 5000]),
)
_string_body = st.text(alphabet=st.characters(blacklist_characters='"\\\n\0'), max_size=12)
_strings = st.one_of(
    _string_body.map(lambda s: f'"{s}"'),
    st.text(alphabet='ab\\"$1 \t\r[]{}()', max_size=10).map(lambda s: f'"{s}"'),
    st.sampled_from(['"$1"', '"$2"', '"8GB"', '"a@disk=2"', '"out.zip:*.root@SE,disk=x"']),
)
_operands = st.one_of(
    _numbers,
    _strings,
    st.sampled_from(
        ["other.TTL", "other.Price", "this.CE", "true", "false", "x", "other.GridPartitions"]
    ),
)
_ops = st.sampled_from(["&&", "||", "==", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/"])


@st.composite
def _expressions(draw, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 4 else 1))
    if kind <= 1:
        return draw(_operands)
    if kind == 2:
        return f"{draw(_expressions(depth + 1))} {draw(_ops)} {draw(_expressions(depth + 1))}"
    if kind == 3:
        return "!" * draw(st.integers(1, 3)) + draw(_expressions(depth + 1))
    if kind == 4:
        return f"({draw(_expressions(depth + 1))})"
    args = draw(st.lists(_expressions(depth + 1), max_size=3))
    return f"{draw(st.sampled_from(['member', 'stringListMember', 'frob']))}({', '.join(args)})"


@st.composite
def _values(draw) -> str:
    value = draw(
        st.one_of(
            _expressions(),
            st.lists(st.one_of(_strings, _numbers, _expressions()), max_size=4).map(
                lambda items: "{" + ", ".join(items) + "}"
            ),
        )
    )
    wrap = draw(st.sampled_from([0, 0, 0, 1, 2, MAX_NESTING - 1, MAX_NESTING, 3000]))
    opener, closer = draw(st.sampled_from([("{", "}"), ("(", ")")]))
    return opener * wrap + value + closer * wrap


@st.composite
def _jdls(draw) -> str:
    lines = ['Executable = "/bin/sh";'] if draw(st.integers(0, 4)) else []
    for _ in range(draw(st.integers(0, 6))):
        sep = draw(st.sampled_from([";", ";", ";", "", ";;"]))
        comment = draw(st.sampled_from(["", "", " # note", " // x"]))
        lines.append(f"{draw(_names)} = {draw(_values())}{sep}{comment}")
    text = "\n".join(lines)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):  # a few random edits
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.text(alphabet='";{}()\\\n\0=$e.-[]\x80\ud800', max_size=2))
            + text[at + 1 :]
        )
    return text


_agents = st.dictionaries(
    st.sampled_from(["ttl", "price", "ce", "gridpartitions", "x", "site"]),
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.text(max_size=5),
        st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
        st.frozensets(st.text(max_size=3), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
)
_args = st.lists(st.text(alphabet=string.printable + "$", max_size=6), max_size=3)


def _check(text: str | bytes, args: list[str] | None, agent: dict) -> None:
    try:
        jdl = parse_jdl(text, args)
    except JdlError as exc:
        assert exc.line >= 1 and exc.column >= 1
        assert str(exc).startswith(f"line {exc.line}, column {exc.column}: ")
        return
    stored = render_jdl(jdl)
    assert parse_jdl(stored) == jdl  # the task queue keeps the rendered text
    assert compile_requirements(jdl.requirements)(agent) in (True, False)


@FUZZ
@given(_jdls(), st.none() | _args, _agents)
def test_fuzz_jdl_grammar(text, args, agent):
    _check(text, args, agent)


@FUZZ
@given(st.binary(max_size=120), _agents)
def test_fuzz_jdl_bytes(data, agent):
    _check(b'Executable = "x";\n' + data, None, agent)


@FUZZ
@given(_expressions(), _agents)
def test_fuzz_requirements(text, agent):
    try:
        evaluate = compile_requirements(text)
    except JdlError as exc:
        assert exc.line >= 1 and exc.column >= 1
        return
    assert evaluate(agent) in (True, False)


@FUZZ
@given(st.text(alphabet='ab=;{},"()&|<>!-+*/ \n\t#19.xX$Ee\\\0', max_size=80), _agents)
def test_fuzz_requirements_text(text, agent):
    try:
        evaluate = compile_requirements(text)
    except JdlError:
        return
    assert evaluate(agent) in (True, False)
