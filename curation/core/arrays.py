"""numpy arrays as files on a `Storage`: the state of the global passes (hashes, masks).

`allow_pickle=False`: these files live in shared staging directories and are only numbers.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from curation.core.stage import ShardInput
from curation.core.storage import Storage

ShardArray = Callable[[ShardInput, Storage, str], np.ndarray]


def save_array(storage: Storage, path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    storage.write_bytes(path, buffer.getvalue())


def load_array(storage: Storage, path: str) -> np.ndarray:
    return np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)


def shard_array_path(workdir: str, shard: ShardInput, kind: str) -> str:
    return posixpath.join(workdir, f"{shard.name}.{kind}.npy")


@dataclass(frozen=True)
class ShardArrayTask:
    """The map step of a global pass: `compute(shard, storage, workdir)` saved as the shard's
    `kind` array under `workdir`. A shard whose array exists is skipped, so a resumed run keeps
    finished shards. Picklable for process pools when `compute` is (e.g. a stage's method)."""

    compute: ShardArray
    storage: Storage
    workdir: str
    kind: str

    def __call__(self, shard: ShardInput) -> str:
        path = shard_array_path(self.workdir, shard, self.kind)
        if not self.storage.exists(path):
            save_array(self.storage, path, self.compute(shard, self.storage, self.workdir))
        return shard.name


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The hash partition (0 .. partitions - 1) of every 64-bit key: a document key, a
    component label, a content hash's first 8 bytes.

    Keys like `shard << 32 | row` have row numbers in their low bits: they are mixed first
    (splitmix64's finalizer, a bijection), so that the rows of one shard and the shards spread
    evenly. Not `curation.dedup.minhash.fmix64`, which would make every worker of the dedup
    cluster step import datasketch, about a second per map."""
    x = keys.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x % np.uint64(partitions)).astype(np.int64)
