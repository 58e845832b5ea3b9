"""`commoncrawl[crawl]`: exact document dedup, the last step of the CommonCrawl branch.

A document whose text (whitespace normalized) was already seen earlier in the crawl is dropped;
"earlier" is shard order, then row order, so the kept copy never depends on how many workers
ran or in which order shards finished.

The global pass is a first-occurrence pass, shared with C4's span dedup (c4.py), in memory
bounded by configuration. `prepare` maps every shard to one numpy array of keys (here the SHA-1
of each document) and splits it into hash partitions of the key; each partition is reduced on
its own, its shards in shard order, with `np.unique(..., return_index=True)`, whose indices are
those of the first occurrences; a last map gathers each shard's rows back into one boolean
array: "this key is its first occurrence in the crawl". A key's copies all fall in one
partition, so the answer does not depend on how many there are; their number is what bounds
memory: one per `bytes_per_partition` of input (8 GiB by default: a few million documents),
so a reduce holds the keys of about that much input, whatever the size of the crawl.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import posixpath
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
    partition_of,
    save_array,
    shard_array_path,
)
from curation.core.documents import drop_rows
from curation.core.exchange import Exchange
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, run_setting, state_field
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


BYTES_PER_PARTITION = 8 << 30  # of input shards, per key partition of the global pass
PARTITION_HELP = (
    "input bytes per key partition of the first-occurrence pass: its memory bound (a reduce "
    "holds the keys of about this much input); the output does not depend on it"
)


def first_occurrence_pass(
    inputs: Sequence[ShardInput],
    storage: Storage,
    workdir: str,
    executor: Any,
    shard_keys: ShardArray,
    bytes_per_partition: int = BYTES_PER_PARTITION,
) -> None:
    """Write, for every shard, the first-occurrence mask of the keys `shard_keys` gives it.

    `shard_keys(shard, storage, workdir)` runs in the executor's workers (so it must pickle,
    e.g. a bound method of a stage) and may write its own extra files under `workdir`. The
    keys are reduced in hash partitions, one per `bytes_per_partition` of input."""
    storage.makedirs(workdir)
    total = sum(shard.bytes for shard in inputs)
    plan = KeyPartitions(storage, workdir, tuple(inputs), max(1, -(-total // bytes_per_partition)))
    list(executor.map_unordered(ShardArrayTask(shard_keys, storage, workdir, "keys"), inputs))
    dtypes = set(executor.map_unordered(plan.split, range(len(inputs))))
    if len(dtypes) > 1:
        raise ValueError(f"the shards' keys differ in type: {sorted(map(str, dtypes))}")
    reduce = functools.partial(plan.reduce, dtypes.pop() if dtypes else np.dtype(np.uint64))
    list(executor.map_unordered(reduce, range(plan.partitions)))
    list(executor.map_unordered(plan.gather, range(len(inputs))))


@dataclass(frozen=True)
class KeyPartitions:
    """The partitioned reduce of the first-occurrence pass, over two `Exchange`s: shard `s`
    sends each key, with its row, to its hash partition (`split`); partition `p` finds the
    first occurrences among its keys, shards in order, and sends each shard its rows of them
    (`reduce`); shard `s` makes its mask from those rows (`gather`). A step holds one
    shard's keys or one partition's, never the crawl's."""

    storage: Storage
    workdir: str
    shards: tuple[ShardInput, ...]
    partitions: int

    def _exchange(self, name: str, senders: int, receivers: int, schema: pa.Schema) -> Exchange:
        folder = posixpath.join(self.workdir, name)
        return Exchange(self.storage, folder, senders, receivers, schema)

    def _keys(self, dtype: np.dtype) -> Exchange:
        schema = pa.schema([("key", _arrow_type(dtype)), ("row", pa.int64())])
        return self._exchange("keys", len(self.shards), self.partitions, schema)

    def _firsts(self) -> Exchange:
        schema = pa.schema([("row", pa.int64())])
        return self._exchange("firsts", self.partitions, len(self.shards), schema)

    def _shard_keys(self, shard: int) -> np.ndarray:
        return load_array(self.storage, shard_array_path(self.workdir, self.shards[shard], "keys"))

    def split(self, shard: int) -> np.dtype:
        keys = self._shard_keys(shard)
        rows = pa.table({"key": _to_arrow(keys), "row": np.arange(len(keys), dtype=np.int64)})
        self._keys(keys.dtype).send(shard, rows, partition_of(_key_bits(keys), self.partitions))
        return keys.dtype

    def reduce(self, dtype: np.dtype, partition: int) -> None:
        sent = list(self._keys(dtype).gather(partition))
        keys = [_from_arrow(t.column("key"), dtype) for t in sent]
        firsts = [
            t.column("row").to_numpy()[first]
            for t, first in zip(sent, first_occurrence_masks(keys), strict=True)
        ]
        self._firsts().write(partition, (pa.table({"row": rows}) for rows in firsts))

    def gather(self, shard: int) -> None:
        mask = np.zeros(len(self._shard_keys(shard)), dtype=bool)
        for sent in self._firsts().gather(shard):
            mask[sent.column("row").to_numpy()] = True
        save_array(self.storage, shard_array_path(self.workdir, self.shards[shard], "first"), mask)


def _arrow_type(dtype: np.dtype) -> pa.DataType:
    return pa.binary(dtype.itemsize) if dtype.kind == "S" else pa.from_numpy_dtype(dtype)


def _to_arrow(keys: np.ndarray) -> pa.Array:
    if keys.dtype.kind != "S":
        return pa.array(keys)
    buffer = pa.py_buffer(np.ascontiguousarray(keys).tobytes())
    return pa.Array.from_buffers(_arrow_type(keys.dtype), len(keys), [None, buffer])


def _from_arrow(column: pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    array = column.combine_chunks()
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    if dtype.kind != "S":
        return array.to_numpy(zero_copy_only=False).astype(dtype)
    width = dtype.itemsize
    data = array.buffers()[1]
    start = array.offset * width
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=start)


def _key_bits(keys: np.ndarray) -> np.ndarray:
    """64 bits of each key to partition by: the integer itself, or a digest's first 8 bytes."""
    if keys.dtype.kind in "iu":
        return keys.astype(np.uint64)
    width = keys.dtype.itemsize
    head = np.zeros((len(keys), 8), dtype=np.uint8)
    head[:, : min(8, width)] = keys.view(np.uint8).reshape(len(keys), width)[:, :8]
    return head.view("<u8").ravel()


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

    bytes_per_partition: int = run_setting(BYTES_PER_PARTITION, help=PARTITION_HELP)
    workdir: str = state_field()

    def prepare(self, inputs, storage, workdir, executor) -> ExactDedup:
        first_occurrence_pass(
            inputs, storage, workdir, executor, self.shard_keys, self.bytes_per_partition
        )
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
