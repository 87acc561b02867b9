#!/bin/sh
# An ARC CE on loopback under DIR: A-REX (Debian's nordugrid-arc-arex, fork back end) with a
# test PKI of its own in DIR/pki, run as our child in the foreground (see tests/site/arc_ce.py).
# DIR and the directories above it must let other users through: jobs run as nobody.
# Prints the endpoint and the client's environment.
# Usage: build/arc/start.sh DIR     then: build/arc/stop.sh DIR
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: build/arc/start.sh DIR}
mkdir -p "$dir"
chmod 755 "$dir"
python="${PYTHON:-$here/.venv/bin/python}"
exec "$python" "$here/tests/site/arc_ce.py" start "$dir"
