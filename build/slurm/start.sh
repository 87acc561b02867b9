#!/bin/sh
# A one-node Slurm cluster on loopback under DIR (munged, slurmctld, slurmd as root; see
# tests/site/slurm_cluster.py). Prints the line to eval: export SLURM_CONF=DIR/slurm.conf
# Usage: build/slurm/start.sh DIR     then: build/slurm/stop.sh DIR
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: build/slurm/start.sh DIR}
mkdir -p "$dir"
python="${PYTHON:-$here/.venv/bin/python}"
exec "$python" "$here/tests/site/slurm_cluster.py" start "$dir"
