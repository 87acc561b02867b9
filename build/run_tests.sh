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
echo "==> pytest, Cython extensions"
python -c "import jalien._fast as f; assert f.IMPLEMENTATION == 'cython', 'extensions not built'"
pytest "$@"
echo "==> pytest, pure-Python twins (JALIEN_NO_EXTENSIONS=1)"
JALIEN_NO_EXTENSIONS=1 pytest -m "not cython_only" "$@"
