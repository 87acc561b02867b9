#!/bin/sh
# Stops the CE build/arc/start.sh made under DIR (A-REX, then what its jobs left running).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: build/arc/stop.sh DIR}
python="${PYTHON:-$here/.venv/bin/python}"
exec "$python" "$here/tests/site/arc_ce.py" stop "$dir"
