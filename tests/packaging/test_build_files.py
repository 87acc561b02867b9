"""Cheap invariants of the binary build, checked without building (packaging/README.md).

The build compiles what the wheel installs (so tests/ and bench/ cannot be in it), with the
options of build/nuitka_options.py; these tests keep both honest."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "build"))
import nuitka_options  # noqa: E402

NEVER_IN_BINARY = ("tests", "bench", "pytest", "_pytest", "hypothesis")


@pytest.fixture
def stage(tmp_path):
    (tmp_path / "jalien").mkdir()
    (tmp_path / "jalien" / "version.py").write_text((ROOT / "jalien/version.py").read_text())
    return tmp_path


def test_build_script_is_there_and_parses():
    script = ROOT / "packaging" / "build_binary.sh"
    assert script.stat().st_mode & 0o111, "packaging/build_binary.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "build-binary)" in (ROOT / "jalien.sh").read_text()


def test_default_mode_is_a_measured_mode():
    assert nuitka_options.DEFAULT_MODE in nuitka_options.MODES
    assert nuitka_options.DEFAULT_MODE in (ROOT / "packaging" / "README.md").read_text()


@pytest.mark.parametrize("mode", sorted(nuitka_options.MODES))
def test_options_take_the_whole_package_and_no_test_code(mode, stage, tmp_path):
    args = nuitka_options.nuitka_args(mode, stage, tmp_path / "out")
    assert "--include-package=jalien" in args
    included = [a.split("=", 1)[1] for a in args if a.startswith("--include-")]
    for name in included:
        assert name.split(".")[0] not in NEVER_IN_BINARY, f"{name} is included"
    (nofollow,) = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--nofollow")]
    assert set(NEVER_IN_BINARY) <= set(nofollow)
    assert args[-1] == str(stage / "jalien_bin.py")
    assert any(a.startswith("--mode=") for a in args)
    # `jalien-bin grep -c a notes.txt` is a grid command, not `python -c`
    assert "--no-deployment-flag=self-execution" in args


def test_cached_unpacking_is_per_user_version_and_build(stage):
    spec = nuitka_options.cache_spec(stage)
    version = nuitka_options.jalien_version(stage)
    assert re.fullmatch(r"\{CACHE_DIR\}/jalien/" + re.escape(version) + r"-[0-9a-f]{12}", spec)
    (stage / "jalien" / "other.py").write_text("x = 1\n")
    assert nuitka_options.cache_spec(stage) != spec, "a different payload shares the cache"


def test_product_version_is_numeric():
    assert nuitka_options.numeric_version("1.2.3") == "1.2.3"
    assert nuitka_options.numeric_version("0.1.0rc1+g1234") == "0.1.0"


def test_entry_point_is_the_console_script():
    """build/jalien_bin.py runs what pyproject's `jalien-bin` script runs."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'jalien-bin = "jalien.cli.main:main"' in text
    tree = ast.parse((ROOT / "build" / "jalien_bin.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        ("jalien.cli.main", ["main"])
    ]


def test_every_subpackage_is_installed():
    """The binary is built from the wheel: a package folder meson does not install is
    missing from jalien-bin (and from every install)."""
    meson = (ROOT / "jalien" / "meson.build").read_text()
    for child in sorted((ROOT / "jalien").iterdir()):
        if (child / "__init__.py").is_file():
            assert f"'{child.name}'" in meson, f"jalien/{child.name} is not in jalien/meson.build"


def test_ci_builds_and_tests_the_binary():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "build_binary.sh" in ci or "build-binary" in ci
    assert "JALIEN_BIN=" in ci


MUTABLE_FACTORIES = {"list", "dict", "set", "bytearray", "deque", "defaultdict", "OrderedDict"}


def _is_mutable_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in MUTABLE_FACTORIES
    return False


def test_no_chained_assignment_of_a_new_container():
    """`self._out = out = []` then `if out:` after appends through `self._out`: Nuitka (2.8 to
    4.3 at least) folds the test to False, so jalien-bin never wrote its replies. Two
    statements (`out = []`, `self._out = out`) compile right."""
    problems = []
    for path in sorted((ROOT / "jalien").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            chained = isinstance(node, ast.Assign) and len(node.targets) > 1
            if chained and _is_mutable_literal(node.value):
                rel = path.relative_to(ROOT)
                problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "chained assignment of a new container:\n" + "\n".join(problems)


def test_every_bench_takes_the_ci_scale():
    """.ci/run calls every bench/bench_*.py with --scale 0.001 (a smoke run)."""
    for bench in sorted((ROOT / "bench").glob("bench_*.py")):
        assert '"--scale"' in bench.read_text(), f"{bench.name} takes no --scale"
