#!/bin/sh
# Stops the cluster build/slurm/start.sh made under DIR: cancels its jobs, stops its daemons
# and kills whatever still runs with its SLURM_CONF.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: build/slurm/stop.sh DIR}
python="${PYTHON:-$here/.venv/bin/python}"
exec "$python" "$here/tests/site/slurm_cluster.py" stop "$dir"
