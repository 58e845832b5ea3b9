"""`commoncrawl[crawl]`: exact document dedup, the last step of the CommonCrawl branch.

A document whose text (whitespace normalized) was already seen earlier in the crawl is dropped;
"earlier" is shard order, then row order, so the kept copy never depends on how many workers
ran or in which order shards finished.

The global pass is a first-occurrence pass, shared with C4's span dedup (c4.py):
`prepare` maps every shard to one numpy array of keys (here the SHA-1 of each document), then
reduces all arrays in shard order with `np.unique(..., return_index=True)`, whose indices are
those of the first occurrences, into one boolean array per shard: "this key is its first
occurrence in the crawl". The reduce holds every key of the crawl in memory at once (20 bytes a
document here); beyond one machine it would be split by key prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.commoncrawl.wikiref import WikiRefFilter
from curation.core.arrays import (
    ShardArray,
    ShardArrayTask,
    load_array,
    save_array,
    shard_array_path,
)
from curation.core.documents import drop_rows
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, state_field
from curation.core.storage import Storage


def first_occurrence_masks(per_shard: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For the key arrays of all shards in shard order, whether each key is the first of its
    value across all of them (earlier shard, then earlier position, wins)."""
    if not per_shard:
        return []
    keys = np.concatenate(per_shard)
    first = np.zeros(len(keys), dtype=bool)
    first[np.unique(keys, return_index=True)[1]] = True
    return np.split(first, np.cumsum([len(k) for k in per_shard])[:-1])


def first_occurrence_pass(
    inputs: Sequence[ShardInput],
    storage: Storage,
    workdir: str,
    executor: Any,
    shard_keys: ShardArray,
) -> None:
    """Write, for every shard, the first-occurrence mask of the keys `shard_keys` gives it.

    `shard_keys(shard, storage, workdir)` runs in the executor's workers (so it must pickle,
    e.g. a bound method of a stage) and may write its own extra files under `workdir`."""
    storage.makedirs(workdir)
    list(executor.map_unordered(ShardArrayTask(shard_keys, storage, workdir, "keys"), inputs))
    keys = [load_array(storage, shard_array_path(workdir, s, "keys")) for s in inputs]
    for shard, mask in zip(inputs, first_occurrence_masks(keys), strict=True):
        save_array(storage, shard_array_path(workdir, shard, "first"), mask)


def first_occurrences(storage: Storage, workdir: str, shard: ShardInput) -> np.ndarray:
    """The mask `first_occurrence_pass` wrote for `shard`, aligned with its keys."""
    return load_array(storage, shard_array_path(workdir, shard, "first"))


def content_digest(text: str) -> bytes:
    """SHA-1 of the text with runs of whitespace made one space and the ends stripped, so that
    copies differing only in line breaks or trailing spaces count as the same document."""
    return hashlib.sha1(" ".join(text.split()).encode()).digest()


@dataclass(frozen=True)
class ExactDedup(Stage):
    """Keep the first copy of every document text in the crawl; drop the others."""

    name: ClassVar[str] = "commoncrawl"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = WikiRefFilter.output_schema
    input_schema: ClassVar[pa.Schema] = WikiRefFilter.output_schema

    workdir: str = state_field()

    def prepare(self, inputs, storage, workdir, executor) -> ExactDedup:
        first_occurrence_pass(inputs, storage, workdir, executor, self.shard_keys)
        return dataclasses.replace(self, workdir=workdir)

    def shard_keys(self, shard: ShardInput, storage: Storage, workdir: str) -> np.ndarray:
        texts = read_shard(self, shard, storage, ["text"])
        digests = [content_digest(t) for t in texts.column("text").to_pylist()]
        return np.array(digests, dtype="S20")

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
        first = pa.array(first_occurrences(storage, self.workdir, shard))
        if len(first) != table.num_rows:
            raise RuntimeError(f"{shard.name} changed since the first-occurrence pass")
        duplicates = table.filter(pc.invert(first))
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(first),
            dropped=drop_rows(duplicates, self.name, ["exact_duplicate"] * duplicates.num_rows),
        )
