"""The array algorithms of global dedup: candidate pairs from LSH buckets, hash partitions of
keys, and which document of a cluster survives. Arrays of document keys in, arrays out; no
files (the clusters themselves are computed over files: curation/dedup/components.py).

A document key is a uint64, `shard << 32 | row`: ordering keys orders documents by input shard,
then row, and a key says where to read the document back.

Sources may be declared independent (never deduplicated against each other). Each document
carries a small class number: 0 for a source named in no independent pair, 1.. for the sources
named in one (`SourceClasses`); `compatible[i, j]` says whether classes i and j may be linked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_ROW = np.dtype([("key", "<u8"), ("doc", "<u8"), ("cls", "u1")])
SHARD_SHIFT = np.uint64(32)
ROW_MASK = np.uint64(0xFFFFFFFF)


def document_keys(shard: int, rows: int) -> np.ndarray:
    return (np.uint64(shard) << SHARD_SHIFT) | np.arange(rows, dtype=np.uint64)


@dataclass(frozen=True)
class SourceClasses:
    """Class numbers of sources for the independence rule, and which classes may be linked."""

    names: tuple[str, ...]  # the sources named in an independent pair, sorted
    independent: np.ndarray  # (classes x classes) bool

    @classmethod
    def from_pairs(cls, pairs: Iterable[Sequence[str]]) -> SourceClasses:
        pairs = [tuple(p) for p in pairs]
        for pair in pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"an independent pair names two different sources, not {pair}")
        names = tuple(sorted({s for p in pairs for s in p}))
        independent = np.zeros((len(names) + 1, len(names) + 1), dtype=bool)
        for a, b in pairs:
            i, j = names.index(a) + 1, names.index(b) + 1
            independent[i, j] = independent[j, i] = True
        return cls(names, independent)

    @property
    def compatible(self) -> np.ndarray:
        return ~self.independent

    def of(self, sources: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The class of every source: 1 + its index in `names`, or 0."""
        index = pc.index_in(pa.array(sources, pa.string()), pa.array(self.names, pa.string()))
        return pc.add(index, 1).fill_null(0).to_numpy().astype(np.uint8)


def star_pairs(rows: np.ndarray, compatible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs among bucket rows (`BUCKET_ROW`), and the rows that head a bucket.

    Rows with one key form a bucket. Each member is paired with the first member (smallest
    document key) of every class it is compatible with: a bucket of k documents of one class
    gives k - 1 pairs, a star, instead of all k(k-1)/2, and still connects all of them. Two
    members of independent classes are never paired, yet both pair with a compatible third.

    Returns the distinct pairs, (m x 2) uint64 document keys, smaller first, and a mask of
    the rows that are the first of their class in their bucket: a map-side combiner passes
    only those on, since any later member is already linked to one of them.
    """
    heads = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return np.empty((0, 2), np.uint64), heads
    order = np.lexsort((rows["doc"], rows["key"]))
    keys, docs, classes = rows["key"][order], rows["doc"][order], rows["cls"][order]
    bucket = np.cumsum(np.concatenate([[True], keys[1:] != keys[:-1]])) - 1
    pairs = []
    for cls in range(len(compatible)):
        members = np.flatnonzero(classes == cls)
        if not len(members):
            continue
        firsts = members[np.concatenate([[True], np.diff(bucket[members]) != 0])]
        heads[order[firsts]] = True
        first_of = np.full(bucket[-1] + 1, -1, dtype=np.int64)
        first_of[bucket[firsts]] = firsts
        linked = np.flatnonzero(compatible[classes, cls])
        target = first_of[bucket[linked]]
        keep = (target >= 0) & (target != linked)
        pairs.append(np.stack([docs[target[keep]], docs[linked[keep]]], axis=1))
    return distinct_pairs(np.concatenate(pairs)), heads


def distinct_pairs(pairs: np.ndarray) -> np.ndarray:
    """Undirected pairs, smaller key first, each once, without self-pairs; sorted."""
    pairs = np.sort(pairs.reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def survivors(
    component: np.ndarray, best_first: np.ndarray, classes: np.ndarray, independent: np.ndarray
) -> np.ndarray:
    """For every node, the node it gives way to: itself when it is kept.

    `best_first` lists the nodes in keep-policy order. Each component keeps its best node
    and drops every member whose class is not independent of it; the members left (those
    independent of it) repeat the rule among themselves. So a component keeps one document,
    or one per group of mutually independent sources that it links through a third source.
    """
    keeper = np.full(len(component), -1, dtype=np.int64)
    best_of = np.full(len(component), -1, dtype=np.int64)
    pending = best_first
    while len(pending):
        groups = component[pending]
        best = pending[np.unique(groups, return_index=True)[1]]
        keeper[best] = best
        best_of[component[best]] = best
        theirs = best_of[groups]
        gives_way = (keeper[pending] < 0) & ~independent[classes[pending], classes[theirs]]
        keeper[pending[gives_way]] = theirs[gives_way]
        pending = pending[keeper[pending] < 0]
    return keeper
