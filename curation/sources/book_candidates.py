"""The candidate search of the books dedup, in bounded memory: LSH band rows partitioned on disk.

Two books are a candidate pair when their MinHash signatures agree on every value of one LSH
band, with datasketch's banding for the threshold (`dedup.minhash.banding_for`): the pairs
`MinHashLSH` returns. A band is one 64-bit key (`dedup.minhash.band_keys`; two bands' keys
colliding would only add a candidate, which the exact check still decides), so a book is
`bands` rows (key, book). Senders, each a run of books of about `bytes_per_partition` of input,
hash-partition their rows by key through the all-to-all `Exchange`; each partition is reduced
alone into the pairs of books sharing a key. Every pair of a bucket, not a star as the corpus
dedup makes: the exact overlap check that follows may reject some of a bucket's pairs and
confirm others, and the clusters are built from those it confirms.

A reduce holds the band rows of about `bytes_per_partition` of books (a few hundred bytes a
book); nothing holds every book's signature. Only the candidate pairs, few, come back whole.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa

from curation.core.arrays import partition_of
from curation.core.exchange import Exchange
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.dedup.graph import distinct_pairs
from curation.dedup.minhash import band_keys, banding_for

BYTES_PER_PARTITION = 64 << 30  # of books, per band partition: ~100k books, ~50 MB of rows
PARTITION_HELP = (
    "input bytes per band partition of the near-duplicate search: its memory bound (a reduce "
    "holds the LSH band rows of about this much input); the output does not depend on it"
)
_ROWS = pa.schema([("key", pa.uint64()), ("book", pa.int64())])

# A sender's books: (sender, index of its first input, those inputs, their sizes, 0 for a book
# without text).
SenderBooks = tuple[int, int, Sequence[ShardInput], np.ndarray]


def bucket_pairs(keys: np.ndarray, books: np.ndarray) -> np.ndarray:
    """Every pair of books sharing a key, as (m x 2) int64, smaller first, each once, sorted."""
    order = np.lexsort((books, keys))
    keys, books = keys[order], books[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    sizes = np.diff(np.append(starts, len(keys)))
    pairs = [np.empty((0, 2), np.int64)]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        first, second = np.triu_indices(size, 1)
        members = books[start : start + size]
        pairs.append(np.stack([members[first], members[second]], axis=1))
    return distinct_pairs(np.concatenate(pairs).astype(np.int64))


def signature_pairs(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """The candidate pairs among the rows of a (books x num_perm) signature matrix, in memory:
    for a few books (an asset check), where the stage partitions the same search."""
    bands, rows = banding_for(threshold, signatures.shape[1])
    keys = band_keys(signatures, bands, rows)
    return bucket_pairs(keys.ravel(), np.repeat(np.arange(len(signatures)), bands))


@dataclass(frozen=True)
class BandPartitions:
    """The partitioned search over one `Exchange`: sender `s` sends the band rows of its books
    to their key's partition (`split`); partition `p` pairs the books sharing a key among the
    rows it received (`reduce`). `signature_of(shard)` loads a book's signature (picklable)."""

    storage: Storage
    workdir: str
    partitions: int  # and as many senders
    bands: int
    rows: int
    signature_of: Callable[[ShardInput], np.ndarray]

    @classmethod
    def plan(
        cls,
        storage: Storage,
        workdir: str,
        signature_of: Callable[[ShardInput], np.ndarray],
        input_bytes: int,
        bytes_per_partition: int,
        lsh: tuple[float, int],
    ) -> BandPartitions:
        """One partition, and one sender, per `bytes_per_partition` of input; the banding of
        `lsh`, (threshold, num_perm)."""
        parts = max(1, -(-input_bytes // bytes_per_partition))
        return cls(storage, workdir, parts, *banding_for(*lsh), signature_of)

    def _exchange(self) -> Exchange:
        folder = posixpath.join(self.workdir, "bands")
        return Exchange(self.storage, folder, self.partitions, self.partitions, _ROWS)

    def split(self, item: SenderBooks) -> None:
        sender, first, shards, sizes = item
        books = np.flatnonzero(sizes)
        signatures = [self.signature_of(shards[i]) for i in books.tolist()]
        width = self.bands * self.rows
        values = np.stack(signatures) if signatures else np.empty((0, width), np.uint64)
        keys = band_keys(values, self.bands, self.rows).ravel()
        table = pa.table({"key": keys, "book": np.repeat(first + books, self.bands)}, _ROWS)
        self._exchange().send(sender, table, partition_of(keys, self.partitions))

    def reduce(self, partition: int) -> np.ndarray:
        sent = pa.concat_tables(self._exchange().gather(partition))
        return bucket_pairs(sent.column("key").to_numpy(), sent.column("book").to_numpy())


def candidate_search(
    plan: BandPartitions, inputs: Sequence[ShardInput], sizes: np.ndarray, executor: Any
) -> np.ndarray:
    """The candidate pairs (input indices, distinct and sorted) among the books of `inputs`
    with a size (bytes; 0: a book without text, not searched). Sender `s` takes the books that
    start in the `s`-th of `plan.partitions` equal runs of those bytes, in input order."""
    run = max(1, -(-int(sizes.sum()) // plan.partitions))
    owner = np.minimum((np.cumsum(sizes) - sizes) // run, plan.partitions - 1)
    bounds = np.searchsorted(owner, np.arange(plan.partitions + 1)).tolist()
    items = [
        (sender, lo, inputs[lo:hi], sizes[lo:hi])
        for sender, (lo, hi) in enumerate(pairwise(bounds))
    ]
    list(executor.map_unordered(plan.split, items))
    found = executor.map_unordered(plan.reduce, range(plan.partitions))
    return distinct_pairs(np.concatenate([np.empty((0, 2), np.int64), *found]))
