"""Requests answered, by command: counts per latency bucket, their sum, failures (pure
twin of reqstats_c). ``observe`` is on every request's path at every level (called by
``net.audit.AuditLog.record``); ``jalien.metrics`` turns a ``snapshot`` into Prometheus
histograms when someone scrapes."""

from __future__ import annotations

import bisect

from jalien._fast.constants import MAX_COMMANDS, OTHER_COMMAND, REQUEST_BUCKETS

IMPLEMENTATION = "python"
_N = len(REQUEST_BUCKETS)


class RequestCounter:
    __slots__ = ("_rows",)

    def __init__(self) -> None:
        # command -> [count per bucket..., count above the last, sum of seconds, failures]
        self._rows: dict[str, list[float]] = {}

    def observe(self, command: str, exitcode: int | str, seconds: float) -> None:
        row = self._rows.get(command)
        if row is None:
            row = self._row(command)
        row[bisect.bisect_left(REQUEST_BUCKETS, seconds)] += 1
        row[_N + 1] += seconds
        if exitcode and type(exitcode) is int:  # a level's "forwarded" is not known
            row[_N + 2] += 1

    def _row(self, command: str) -> list[float]:
        rows = self._rows
        if len(rows) >= MAX_COMMANDS:  # names sent by clients stay bounded
            command = OTHER_COMMAND
            if command in rows:
                return rows[command]
        row = [0] * (_N + 1) + [0.0, 0]
        rows[command] = row
        return row

    def snapshot(self) -> dict[str, tuple[list[int], float, int]]:
        """command -> (count per bucket and above the last one, sum of seconds, failures)"""
        return {
            command: ([int(n) for n in row[: _N + 1]], float(row[_N + 1]), int(row[_N + 2]))
            for command, row in self._rows.items()
        }
