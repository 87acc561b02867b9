#!/usr/bin/env bash
# Stop the test Galera cluster of build/galera/start.sh DIR: nodes 3, 2, then 1 (the last to
# stop is the one to bootstrap from next time), or node N alone. Bounded waits; a node that
# does not stop within GALERA_STOP_TIMEOUT seconds is killed.
set -euo pipefail
DIR="${1:?usage: stop.sh DIR [NODE]}"
TIMEOUT="${GALERA_STOP_TIMEOUT:-30}"
nodes=(3 2 1)
[[ -n "${2:-}" ]] && nodes=("$2")
for n in "${nodes[@]}"; do
  pidfile="$DIR/node$n/mysqld.pid"
  [[ -f "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; continue; }
  kill -TERM "$pid"
  deadline=$((SECONDS + TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "galera: node $n did not stop within $TIMEOUT s: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
echo "galera: stopped ${nodes[*]}"
