#!/usr/bin/env bash
# The test command behind `./jalien.sh test` (and so CI): lint, type check (mypy, configured in
# pyproject.toml's [tool.mypy]), then the whole suite (layering rules are tests/test_layering.py)
# twice, once with the Cython extensions and once with JALIEN_NO_EXTENSIONS=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy"
mypy
python -c "import jalien._fast as f; assert f.IMPLEMENTATION == 'cython', 'extensions not built'"
echo "==> stubtest: each Cython extension against its .pyi (the interface mypy sees)"
stubs=(jalien/_fast/*_c.pyi)
stubs=("${stubs[@]%.pyi}")
python -m mypy.stubtest --allowlist build/stubtest_allowlist.txt "${stubs[@]//\//.}"
echo "==> pytest, Cython extensions"
pytest "$@"
echo "==> pytest, pure-Python twins (JALIEN_NO_EXTENSIONS=1)"
JALIEN_NO_EXTENSIONS=1 pytest -m "not cython_only" "$@"
