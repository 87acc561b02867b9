"""JDL parsing: AliEn's attributes, typed values, errors with line and column, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien.jobs.classad import MAX_NESTING
from jalien.jobs.jdl import (
    MAX_JDL_SIZE,
    JdlError,
    parse_jdl,
    parse_output,
    parse_size,
    render_jdl,
)
from jalien.jobs.requirements import compile_requirements

SIM = """
# a simulation job
Executable = "/alice/bin/aliroot";
Arguments = "-b -q sim.C $1";
InputFile = {"LF:/alice/cern.ch/user/a/alice/sim.C",
             "LF:/alice/cern.ch/user/a/alice/Config.C"};
InputData = {"LF:/alice/data/2024/LHC24a/000123/AO2D.root"};
OutputArchive = {"root_archive.zip:*.root@disk=2", "log_archive.zip:*.log,stdout@disk=1"};
OutputFile = {"AnalysisResults.root@ALICE::CERN::EOS,ALICE::FZK::SE"};
Requirements = member(other.GridPartitions, "PDC08_2") && (other.TTL > 3600);
TTL = 72000;
Price = 1.5;
Packages = {"VO_ALICE@AliPhysics::vAN-20240101-1"};
Split = "production:1-10";
SplitMaxInputFileNumber = 5;
JDLVariables = {"CPUCores", "Packages"};
MemorySize = "8GB";
CPUCores = 8;
ValidationCommand = "/alice/validation/validation.sh";
"""


def test_full_jdl():
    jdl = parse_jdl(SIM, ["42"])
    assert jdl.executable == "/alice/bin/aliroot"
    assert jdl.arguments == "-b -q sim.C 42"
    assert len(jdl.input_file) == 2
    assert jdl.output_archive[0].name == "root_archive.zip"
    assert jdl.output_archive[0].members == ["*.root"]
    assert jdl.output_archive[0].qos == {"disk": 2}
    assert jdl.output_file[0].ses == ["ALICE::CERN::EOS", "ALICE::FZK::SE"]
    assert jdl.requirements == 'member(other.GridPartitions, "PDC08_2") && (other.TTL > 3600)'
    assert (jdl.ttl, jdl.price, jdl.cpu_cores) == (72000, 1.5, 8)
    assert jdl.memory_size == 8 * 1024**3
    assert jdl.split == "production:1-10"
    assert jdl.split_arguments == {"splitmaxinputfilenumber": "5"}
    assert jdl.get("JDLVARIABLES") == ["CPUCores", "Packages"]


def test_names_are_case_insensitive_and_round_trip():
    jdl = parse_jdl('executable = "x.sh"; ttl = 100; arguments = {"a", "b"};')
    assert (jdl.executable, jdl.ttl, jdl.arguments) == ("x.sh", 100, "a b")
    again = parse_jdl(render_jdl(parse_jdl(SIM, ["1"])))
    assert again == parse_jdl(SIM, ["1"])


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('Executable = "x";\nTTL = ;', 2, 7, "missing value"),
        ('Executable = "x;\n', 1, 14, "unterminated string"),
        ('Executable = "x";\nInputFile = {"a" "b"};', 2, 18, "expected ',' or '}'"),
        ('Executable "x";', 1, 12, "expected '='"),
        ('Executable = "x"; Executable = "y";', 1, 19, "given twice"),
        ('Executable = "x";\n  TTL = 3 @;', 2, 11, "unexpected character"),
        ("Requirements = (a && b;", 1, 16, "unbalanced"),
    ],
)
def test_errors_have_line_and_column(text, line, col, message):
    with pytest.raises(JdlError, match=message) as info:
        parse_jdl(text)
    assert (info.value.line, info.value.column) == (line, col)
    assert str(info.value).startswith(f"line {line}, column {col}:")


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("TTL = 5;", 1, 9, "Executable: missing"),
        ('Executable = "x";\nTTL = "soon";', 2, 1, "TTL: 'soon' is not a number"),
        ('Executable = "x"; TTL = -5;', 1, 19, "TTL: must be from 1"),
        ('Executable = "x"; TTL = 1e999;', 1, 25, "number 1e999 is too large"),
        ('Executable = "x"; TTL = 99999999999999999999;', 1, 25, "too large"),
        ('Executable = "x"; TTL = "99999999999999999999";', 1, 19, "TTL: '9+' is too large"),
        ('Executable = "x"; TTL = 2.5;', 1, 19, "TTL: 2.5 is not a whole number"),
        ('Executable = "x"; TTL = {1, 2};', 1, 19, "TTL: expected one value"),
        ('Executable = "x"; CPUCores = 0;', 1, 19, "CPUCores: must be from 1"),
        ('Executable = "x"; Price = nan;', 1, 19, "Price: nan is not a number"),
        ('Executable = "x"; Price = "inf";', 1, 19, "Price: inf is not a number"),
        ('Executable = "x"; MemorySize = "lots";', 1, 19, "MemorySize: 'lots' is not a size"),
        ('Executable = "x"; MemorySize = "9999999999T";', 1, 19, "not a size from 0"),
        ('Executable = "x";\n Arguments = "$2";', 2, 2, r"Arguments: \$2 is used but 1"),
        (
            'Executable = "x"; Arguments = "$99999999999999";',
            1,
            19,
            r"\$999999999999\.\.\. is used",
        ),
        ('Executable = "x"; OutputFile = {"a@disk=two"};', 1, 19, "OutputFile: bad storage"),
        ('Executable = "x"; InputFile = {{"a"}};', 1, 19, "InputFile: nested lists"),
        ('Executable = "x"; SplitMaxInputFileNumber = "many";', 1, 19, "'many' is not a number"),
        ('Executable = {"x", "y"};', 1, 1, "Executable: expected one value"),
        ("Executable = 5;", 1, 1, "Executable: missing"),
    ],
)
def test_meaning_errors(text, line, col, message):
    with pytest.raises(JdlError, match=message) as info:
        parse_jdl(text, ["one"])
    assert (info.value.line, info.value.column) == (line, col)


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        (
            'Executable = "x";\nRequirements = other.TTL > ;',
            2,
            27,
            "unexpected end of input in Requirements",
        ),
        ('Executable = "x";\nRequirements = frob(a);', 2, 16, r"unknown function frob\(\)"),
        ('Executable = "x";\nRequirements = member(a b);', 2, 25, "expected an operator"),
        ('Executable = "x";\nRequirements = member(a, b c);', 2, 28, "expected an operator"),
        ('Executable = "x";\nRequirements = member(a, b;', 2, 22, "unbalanced '\\('"),
        ('Executable = "x";\nRequirements = a < b < c;', 2, 22, "unexpected '<'"),
        ('Executable = "x";\nRequirements = "a >";', 2, 1, "column 4 of the Requirements"),
        ('Executable = "x";\nRequirements = {a, b};', 2, 1, "expected one value"),
    ],
)
def test_requirements_errors_say_where_in_the_jdl(text, line, col, message):
    with pytest.raises(JdlError, match=message) as info:
        parse_jdl(text)
    assert (info.value.line, info.value.column) == (line, col)


def test_exponents_are_numbers():
    jdl = parse_jdl('Executable = "x"; Requirements = other.Price >= 25e3; Price = 2.5e1;')
    assert jdl.price == 25.0
    assert jdl.requirements == "other.Price >= 25e3"
    assert parse_jdl('Executable = "x"; TTL = 36e2;').ttl == 3600


def _nested(depth: int, opener: str, inner: str, closer: str) -> str:
    return opener * depth + inner + closer * depth


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (_nested(3000, "{", '"a"', "}"), "lists nested deeper than 64 levels"),
        (_nested(3000, "(", "a", ")"), "parentheses nested deeper than 64 levels"),
        (_nested(65, "{", "", "}"), "lists nested deeper than 64 levels"),
        ("{" * 100_000, "lists nested deeper than 64 levels"),
        ("(" * 100_000, "parentheses nested deeper"),
    ],
)
def test_deep_nesting_is_a_clean_error(value, message):
    text = f'Executable = "x";\nRequirements = {value};'
    with pytest.raises(JdlError, match=message) as info:
        parse_jdl(text)
    assert (info.value.line, info.value.column) == (2, 16 + MAX_NESTING)


def test_nesting_up_to_the_bound_is_read():
    jdl = parse_jdl(f'Executable = "x"; L = {_nested(MAX_NESTING, "{", "1", "}")};')
    value = jdl.get("l")
    for _ in range(MAX_NESTING - 1):
        (value,) = value
    assert value == [1]
    deep = _nested(MAX_NESTING, "(", "other.TTL > 5", ")")
    assert compile_requirements(
        parse_jdl(f'Executable = "x"; Requirements = {deep};').requirements
    )({"ttl": 6})


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('Executable = "x";\nA = "b\\";\n', 2, 5, "unterminated string \\(a backslash"),
        ('Executable = "x";\nA = "b\nc";\n', 2, 5, "unterminated string"),
        ('Executable = "x";\n  A = "b\0";', 2, 9, "NUL character"),
        ('Executable = "x";\nA = "\ud800";', 2, 6, "not UTF-8"),
        ('Executable = "x";\nA = \x0b;', 2, 5, "unexpected character"),
        ('Executable = "x";\nA = ;;', 2, 5, "missing value"),
        ('Executable = "x";\nA = -;', 2, 5, "unexpected '-'"),
    ],
)
def test_lexical_errors(text, line, col, message):
    with pytest.raises(JdlError, match=message) as info:
        parse_jdl(text)
    assert (info.value.line, info.value.column) == (line, col)


def test_bytes_input_and_non_utf8():
    assert parse_jdl(b'Executable = "x";').executable == "x"
    with pytest.raises(JdlError, match="not UTF-8") as info:
        parse_jdl(b'Executable = "x";\nA = "\xff";')
    assert (info.value.line, info.value.column) == (2, 6)


def test_huge_input_is_refused_at_once():
    with pytest.raises(JdlError, match="JDL longer than"):
        parse_jdl('Executable = "x"; A = "' + "a" * MAX_JDL_SIZE + '";')
    big = 'Executable = "x"; InputData = {' + ", ".join(['"LF:/a/b"'] * 50_000) + "};"
    assert len(parse_jdl(big).input_data) == 50_000


def test_arguments_may_not_break_lines():
    with pytest.raises(JdlError, match=r"argument \$1 holds a line break"):
        parse_jdl('Executable = "x"; Arguments = "$1";', ["a\nb"])


def test_a_stored_jdl_is_taken_as_written():
    jdl = parse_jdl('Executable = "x"; Arguments = "$1";', ["$2"])
    assert jdl.arguments == "$2"
    assert parse_jdl(render_jdl(jdl)) == jdl  # no arguments: nothing substituted again


def test_operators_written_apart_stay_apart():
    jdl = parse_jdl('Executable = "x"; A = a / / b; B = c ! = d; C = e = = f;')
    assert parse_jdl(render_jdl(jdl)) == jdl
    assert jdl.get("a") == "a/ /b"


def test_sizes_and_outputs():
    assert parse_size("512MB") == 512 * 1024**2
    assert parse_size(1000) == 1000
    spec = parse_output("out.zip:a,b@ALICE::CERN::EOS,disk=1,no_archive")
    assert (spec.ses, spec.qos, spec.no_archive) == (["ALICE::CERN::EOS"], {"disk": 1}, True)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab=;{},"()&|<>!-+*/ \n\t#19.xX$E')), max_size=80))
def test_fuzz_only_clean_errors(text):
    with contextlib.suppress(JdlError):  # nothing else escapes
        parse_jdl(text)
