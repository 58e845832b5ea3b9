"""A stage: one job over one shard, producing kept rows, dropped rows and counters.

Stages are small frozen dataclasses: their fields are the configuration (recorded in the
manifest and fingerprinted), `process` is a pure function of the shard's bytes and that
configuration. The runner owns everything else (files, atomicity, resume, parallelism), so a
stage never touches the filesystem except to read its input.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from curation.core.storage import Storage

Histograms = dict[str, Counter[str]]


@dataclass(frozen=True)
class ShardInput:
    """One input shard: a raw archive or a part file of the upstream stage."""

    name: str
    path: str
    fingerprint: str
    bytes: int


@dataclass
class ShardOutput:
    """What `process` returns. `n_in` is counted by the stage, not derived from the outputs,
    so the conservation check `n_in == kept + dropped` can actually fail."""

    n_in: int
    kept: pa.Table
    dropped: pa.Table
    histograms: Histograms = field(default_factory=dict)

    @staticmethod
    def concat(batches: Iterable[ShardOutput]) -> ShardOutput:
        batches = list(batches)
        histograms: Histograms = {}
        for batch in batches:
            for name, counts in batch.histograms.items():
                histograms.setdefault(name, Counter()).update(counts)
        return ShardOutput(
            n_in=sum(b.n_in for b in batches),
            kept=pa.concat_tables([b.kept for b in batches]),
            dropped=pa.concat_tables([b.dropped for b in batches], promote_options="default"),
            histograms=histograms,
        )


def setting(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING):
    """A configuration field with the help text its asset config shows in the UI."""
    return field(default=default, default_factory=factory, metadata={"help": help})


def run_setting(default: Any, *, help: str) -> Any:
    """A setting of how a stage runs, not of what it computes (a memory bound): configurable
    like any field, but left out of `config()`, so out of the manifest and the fingerprint,
    because the output is the same whatever its value."""
    return field(default=default, metadata={"help": help, "fingerprint": False})


def state_field() -> Any:
    """A stage field that carries run state (set by `prepare`), not configuration: it is
    left out of `config()` and so out of the fingerprint."""
    return field(default="", metadata={"config": False})


@dataclass(frozen=True)
class Stage(ABC):
    """Base of every stage. Subclasses are frozen dataclasses whose fields are the config."""

    name: ClassVar[str]
    version: ClassVar[str]
    output_schema: ClassVar[pa.Schema]
    # The columns a stage reading Parquet needs; the runner quarantines an input shard that
    # lacks them or holds another kind of value in them, and stages read shards with
    # `read_shard`, which casts them to these types (curation/core/screening.py). None: the input
    # is raw files the stage parses.
    input_schema: ClassVar[pa.Schema | None] = None

    def config(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {
            f.name: values[f.name]
            for f in dataclasses.fields(self)
            if f.metadata.get("config", True) and f.metadata.get("fingerprint", True)
        }

    def prepare(
        self, inputs: Sequence[ShardInput], storage: Storage, workdir: str, executor: Any
    ) -> Stage:
        """A global pass before the per-shard map, for rules that look across shards (line
        hashes of a group, first occurrences of a span). It writes what `process` needs under
        `workdir` and returns the stage to map with, usually `replace(self, workdir=workdir)`
        on a `state_field`. The default stage is purely per shard."""
        return self

    def summary(self) -> dict[str, Any]:
        """What the global pass decided, for the manifest (called on the stage `prepare`
        returned). Deterministic JSON values only: the manifest must not change between runs."""
        return {}

    @abstractmethod
    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        """Turn one input shard into kept and dropped rows."""

    def process_batches(self, shard: ShardInput, storage: Storage) -> Iterator[ShardOutput]:
        """What the runner calls: batches it writes as they come, so a shard larger than
        memory (a multi-GB Wikipedia dump) streams. Stages that need it override this and
        define `process` as `ShardOutput.concat(self.process_batches(...))`."""
        yield self.process(shard, storage)
