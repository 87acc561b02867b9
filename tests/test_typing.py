"""The typing rule (docs/ARCHITECTURE.md, "Invariants"): the README's test command runs mypy
(then mypy.stubtest: each Cython extension against its .pyi), and the wire, its hot twins,
net and auth are checked with the flags of --strict. mypy itself runs in build/run_tests.sh;
this keeps its configuration from being quietly loosened."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRICT = {
    "disallow_any_generics",
    "disallow_subclassing_any",
    "disallow_untyped_calls",
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "disallow_untyped_decorators",
    "warn_return_any",
    "warn_unused_ignores",
    "no_implicit_reexport",
    "extra_checks",
}
STRICT_PACKAGES = ("jalien._fast.*", "jalien.auth.*", "jalien.net.*", "jalien.wire.*")


def _mypy() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_the_test_command_runs_mypy_after_ruff() -> None:
    script = (ROOT / "build" / "run_tests.sh").read_text()
    lines = [line.strip() for line in script.splitlines()]
    assert "mypy" in lines
    assert lines.index("mypy") > lines.index("ruff format --check .")
    first_pytest = next(i for i, line in enumerate(lines) if line.startswith("pytest"))
    assert lines.index("mypy") < first_pytest
    stubtest = next(i for i, line in enumerate(lines) if "mypy.stubtest" in line)
    assert lines.index("mypy") < stubtest < first_pytest
    lint = (ROOT / "jalien.sh").read_text()
    assert re.search(r"lint\)\s*\n\s*ensure_env( test)?\s*\n.*&& mypy\n", lint)  # mypy: test extra


def test_mypy_checks_the_package() -> None:
    config = _mypy()
    assert config["files"] == ["jalien"]
    assert config["check_untyped_defs"] is True
    assert "strict" not in config  # per-module strict leaks to every module (see pyproject)


def test_strict_packages() -> None:
    overrides = _mypy().get("overrides", [])
    for package in STRICT_PACKAGES:
        flags = {
            key
            for o in overrides
            if package in o["module"]
            for key, value in o.items()
            if value is True
        }
        assert flags >= STRICT, f"{package} is missing {sorted(STRICT - flags)}"
        ignored = [o for o in overrides if o.get("ignore_errors") and package in o["module"]]
        assert not ignored, f"{package} is strict, its errors cannot be ignored"
        assert not any(o.get("strict") for o in overrides)


def test_extensions_have_stubs() -> None:
    fast = ROOT / "jalien" / "_fast"
    for pyx in fast.glob("*_c.pyx"):
        assert pyx.with_suffix(".pyi").exists(), f"{pyx.name} has no .pyi for the checker"
