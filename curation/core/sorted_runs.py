"""An external sort in bounded memory: sorted runs on local disk, merged as they are read.

For a join inside one shard that must come out in key order (StackExchange's questions with
their answers, in question Id order): rows are held until they reach `bytes_per_run`, then
sorted and written as one run; `merged` yields every row in key order, reading each run a line
at a time, `_FAN_IN` runs at most (more are first merged in groups into longer runs). Memory
holds one run while rows come in, then one line of each run merged. A hash
partition would bound memory as well, but would give the rows back in partition order, not
key order, and need this merge again to restore it.

Rows of equal keys come out in the order they were added (a run is sorted stably, and
`heapq.merge` takes equal keys from the earlier run first), so a row's sequence number need
not be part of its key. Runs are JSON lines in a private temporary directory (the worker's
TMPDIR), removed on exit; a sort that fits in one run never touches the disk.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

Key = tuple[int, ...]
_ROW_OVERHEAD = 100  # bytes a held row costs beyond its JSON: the tuple, the key, the str
_FAN_IN = 64  # runs merged at once: bounds the files open, whatever the number of runs


class SortedRuns:
    """Rows (key, JSON value) sorted by key through runs of about `bytes_per_run` each.
    A context manager: the runs are deleted on exit."""

    def __init__(self, bytes_per_run: int) -> None:
        self.bytes_per_run = bytes_per_run
        self._held: list[tuple[Key, str]] = []
        self._held_bytes = 0
        self._runs: list[str] = []
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> SortedRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def add(self, key: Key, value: Any) -> None:
        line = json.dumps(value)
        self._held.append((key, line))
        self._held_bytes += len(line) + _ROW_OVERHEAD
        if self._held_bytes >= self.bytes_per_run:
            self._spill()

    def merged(self) -> Iterator[tuple[Key, Any]]:
        """Every row added, in key order (equal keys in the order added)."""
        self._held.sort(key=itemgetter(0))
        while len(self._runs) > _FAN_IN:  # consecutive groups: equal keys keep their order
            groups = [self._runs[i : i + _FAN_IN] for i in range(0, len(self._runs), _FAN_IN)]
            self._runs = [self._write(_merge(_read_run(path) for path in g)) for g in groups]
        for key, line in _merge([*map(_read_run, self._runs), iter(self._held)]):
            yield key, json.loads(line)

    def _spill(self) -> None:
        self._held.sort(key=itemgetter(0))
        self._runs.append(self._write(self._held))
        self._held, self._held_bytes = [], 0

    def _write(self, rows: Iterable[tuple[Key, str]]) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="llamapipe-runs-")
        fd, path = tempfile.mkstemp(suffix=".jsonl", dir=self._tmp.name)
        with open(fd, "w", encoding="ascii") as f:
            f.writelines(f"{json.dumps(key)}\t{line}\n" for key, line in rows)
        return path


def _merge(runs: Iterable[Iterator[tuple[Key, str]]]) -> Iterator[tuple[Key, str]]:
    return heapq.merge(*runs, key=itemgetter(0))


def _read_run(path: str) -> Iterator[tuple[Key, str]]:
    """A run's rows as read, deleting the run once read through."""
    with open(path, encoding="ascii") as f:
        for row in f:
            key, line = row.rstrip("\n").split("\t", 1)
            yield tuple(json.loads(key)), line
    os.remove(path)
