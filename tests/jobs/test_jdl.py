"""JDL parsing: AliEn's attributes, typed values, errors with line and column, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien.jobs.jdl import JdlError, parse_jdl, parse_output, parse_size, render_jdl

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
    ("text", "message"),
    [
        ("TTL = 5;", "Executable: missing"),
        ('Executable = "x"; TTL = "soon";', "must be numbers"),
        ('Executable = "x"; TTL = -5;', "TTL must be positive"),
        ('Executable = "x"; MemorySize = "lots";', "not a size"),
        ('Executable = "x"; Arguments = "$2";', r"\$2 is used"),
        ('Executable = "x"; OutputFile = {"a@disk=two"};', "bad storage spec"),
    ],
)
def test_meaning_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_jdl(text)


def test_sizes_and_outputs():
    assert parse_size("512MB") == 512 * 1024**2
    assert parse_size(1000) == 1000
    spec = parse_output("out.zip:a,b@ALICE::CERN::EOS,disk=1,no_archive")
    assert (spec.ses, spec.qos, spec.no_archive) == (["ALICE::CERN::EOS"], {"disk": 1}, True)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab=;{},"()&|<>!-+*/ \n\t#19.xX$E')), max_size=80))
def test_fuzz_only_clean_errors(text):
    with contextlib.suppress(ValueError):  # JdlError is a ValueError; nothing else escapes
        parse_jdl(text)
