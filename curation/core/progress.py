"""Progress of a shard map: counts, rate and ETA, for the run log and the terminal.

The runner reports after every finished shard; what a person sees is throttled (a line every
`interval_s`, plus the first and the last), because a crawl has tens of thousands of shards.
Rate and ETA count only the bytes this run processed: shards finished by an earlier, killed
run are done but took no time now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from curation.core.manifest import ShardRecord
from curation.core.stage import ShardInput


@dataclass(frozen=True)
class ProgressUpdate:
    stage: str
    shards_done: int
    shards_total: int
    resumed: int  # shards an earlier run had finished
    docs_in: int
    kept: int
    bytes_done: int  # input bytes of the shards finished by this run
    bytes_todo: int  # input bytes of all the shards this run had to process
    elapsed_s: float

    @property
    def fraction(self) -> float:
        if self.bytes_todo:
            return self.bytes_done / self.bytes_todo
        return self.shards_done / self.shards_total if self.shards_total else 1.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.bytes_done == 0 or self.bytes_per_s == 0:
            return None
        return (self.bytes_todo - self.bytes_done) / self.bytes_per_s

    def line(self) -> str:
        """`cc_language: 3/8 shards (41%), 12,345 docs in, 11,002 kept, 2.1 MB/s, ETA 0:00:42`"""
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        return (
            f"{self.stage}: {self.shards_done}/{self.shards_total} shards{resumed} "
            f"({self.fraction:.0%}), {self.docs_in:,} docs in, {self.kept:,} kept, "
            f"{self.bytes_per_s / 1e6:.1f} MB/s, ETA {_clock(self.eta_s)}"
        )

    def bar(self, width: int = 30) -> str:
        filled = round(width * self.fraction)
        return f"[{'#' * filled}{'.' * (width - filled)}] {self.line()}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


ProgressSink = Callable[[ProgressUpdate], None]


class ShardProgress:
    """Tracks one run of a shard map and hands throttled updates to `sink`."""

    def __init__(
        self,
        stage: str,
        inputs: Sequence[ShardInput],
        finished: Sequence[ShardRecord],
        sink: ProgressSink,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.sink, self.interval_s, self.clock = stage, sink, interval_s, clock
        self.total = len(inputs)
        self.resumed = len(finished)
        self.done = len(finished)
        self.docs_in = sum(r.n_in for r in finished)
        self.kept = sum(r.kept for r in finished)
        done = {r.index for r in finished}
        self.bytes_todo = sum(s.bytes for i, s in enumerate(inputs) if i not in done)
        self.bytes_done = 0
        self.sizes = [s.bytes for s in inputs]
        self.started = clock()
        self.last_report: float | None = None

    def advance(self, record: ShardRecord) -> None:
        self.done += 1
        self.docs_in += record.n_in
        self.kept += record.kept
        self.bytes_done += self.sizes[record.index]
        now = self.clock()
        due = self.last_report is None or now - self.last_report >= self.interval_s
        if due or self.done == self.total:
            self.last_report = now
            self.sink(self.update(now))

    def update(self, now: float | None = None) -> ProgressUpdate:
        return ProgressUpdate(
            stage=self.stage,
            shards_done=self.done,
            shards_total=self.total,
            resumed=self.resumed,
            docs_in=self.docs_in,
            kept=self.kept,
            bytes_done=self.bytes_done,
            bytes_todo=self.bytes_todo,
            elapsed_s=(self.clock() if now is None else now) - self.started,
        )
