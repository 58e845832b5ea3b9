"""The map and reduce of global dedup: LSH buckets to verified duplicate edges, over files.

Map, per input shard (`MapTask`): reads the shard's signature part (after checking its ids
against the document part), writes its records (signature bytes then digest, one fixed-size
record per row, read back by row number), and makes a bucket row (key, document, class) per
band of every signature plus one keyed by the content digest. A combiner pairs and verifies
documents of the same shard that share a key, and keeps only the first row of each class per
key; those are hash-partitioned by key into `partitions` slices of one file, with an offsets
file saying where each slice starts.

Reduce, per bucket partition (`ReduceTask`): reads its slice of every shard's file, pairs
each member of a bucket with its first members (`dedup_graph.star_pairs`) and keeps the pairs
that verify (`similar`), reading the two records of each from the maps' files.

All files live under the work directory; a task whose last file exists is skipped, so a
resumed run redoes only what it had not finished.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.arrays import save_array
from curation.core.documents import DOCUMENT_SCHEMA
from curation.core.screening import read_shard
from curation.core.storage import Storage
from curation.dedup.corpus import CorpusShard, StaleSignatures
from curation.dedup.graph import (
    BUCKET_ROW,
    ROW_MASK,
    SHARD_SHIFT,
    SourceClasses,
    document_keys,
    star_pairs,
)
from curation.dedup.minhash import band_keys, estimated_jaccard, fmix64
from curation.dedup.signatures import (
    DIGEST_BYTES,
    MinHashSignatures,
    digest_matrix,
    signature_matrix,
)

_VERIFY_PAIRS = 65536  # candidate pairs verified at once: bounds the records held
_DIGEST_TAG = np.uint64(0xD16E57D16E57D16E)
_FILES = {
    "records": ("map", "records"),
    "local": ("map", "edges.npy"),
    "local_counts": ("map", "counts.json"),
    "buckets": ("map", "buckets"),
    "offsets": ("map", "offsets"),  # written last: the map of this shard is done
    "edges": ("reduce", "edges.npy"),  # written last: the reduce of this partition is done
    "counts": ("reduce", "counts.json"),
}


@dataclass(frozen=True)
class BucketPlan:
    """What every task of one run agrees on: banding, verification, partitions, classes."""

    workdir: str
    num_perm: int
    bands: int
    rows: int
    threshold: float
    partitions: int
    classes: SourceClasses

    @property
    def record_bytes(self) -> int:
        return 4 * self.num_perm + DIGEST_BYTES

    def path(self, kind: str, index: int) -> str:
        folder, suffix = _FILES[kind]
        return posixpath.join(self.workdir, folder, f"{index:06d}.{suffix}")

    def makedirs(self, storage: Storage) -> None:
        for folder in {folder for folder, _ in _FILES.values()}:
            storage.makedirs(posixpath.join(self.workdir, folder))


def similar(a: np.ndarray, b: np.ndarray, plan: BucketPlan) -> np.ndarray:
    """Verification of record pairs: the same digest, or a MinHash estimate of the Jaccard
    similarity over the whole signature of at least the threshold."""
    width = 4 * plan.num_perm
    same_digest = np.all(a[:, width:] == b[:, width:], axis=1)
    jaccard = estimated_jaccard(a[:, :width].view("<u4"), b[:, :width].view("<u4"))
    return same_digest | (jaccard >= plan.threshold)


def bucket_rows(
    shard: int, records: np.ndarray, n_words: np.ndarray, classes: np.ndarray, plan: BucketPlan
) -> np.ndarray:
    """The band rows of every document with words, then one digest row per document."""
    docs = document_keys(shard, len(records))
    worded = n_words > 0
    bands = band_keys(records[worded, : 4 * plan.num_perm].view("<u4"), plan.bands, plan.rows)
    digests = records[:, -DIGEST_BYTES:][:, :8].copy().view("<u8").ravel()
    rows = np.empty(bands.size + len(records), dtype=BUCKET_ROW)
    rows["key"] = np.concatenate([bands.ravel(), fmix64(digests ^ _DIGEST_TAG)])
    rows["doc"] = np.concatenate([np.repeat(docs[worded], plan.bands), docs])
    rows["cls"] = np.concatenate([np.repeat(classes[worded], plan.bands), classes])
    return rows


def aligned_signatures(storage: Storage, shard: CorpusShard) -> pa.Table:
    """The shard's signature rows, after checking that they are its documents' rows."""
    columns = ["id", "source", "digest", "signature", "n_words"]
    table = pq.read_table(shard.signatures, filesystem=storage.fs, columns=columns)
    ids = read_shard(DOCUMENT_SCHEMA, shard, storage, ["id"]).column("id")
    if table.num_rows == len(ids) and table.column("id").equals(ids):
        return table
    theirs, ours = table.column("id").to_pylist(), ids.to_pylist()
    pairs = enumerate(zip(theirs, ours, strict=False))
    row = next((i for i, (a, b) in pairs if a != b), min(len(theirs), len(ours)))
    raise StaleSignatures(
        f"{shard.name}: the signature part {shard.signatures} is not aligned with the document "
        f"part {shard.path} ({len(theirs)} vs {len(ours)} rows, first difference at row {row}): "
        f"materialize {MinHashSignatures.name} again"
    )


@dataclass(frozen=True)
class MapTask:
    """One shard's records, its verified local edges, and its partitioned bucket rows."""

    plan: BucketPlan
    storage: Storage

    def __call__(self, item: tuple[int, CorpusShard]) -> int:
        index, shard = item
        plan = self.plan
        if self.storage.exists(plan.path("offsets", index)):  # a resumed run keeps it
            return index
        table = aligned_signatures(self.storage, shard)
        values = signature_matrix(table.column("signature"), plan.num_perm)
        signature_bytes = values.view(np.uint8).reshape(len(values), 4 * plan.num_perm)
        records = np.concatenate([signature_bytes, digest_matrix(table.column("digest"))], axis=1)
        classes = plan.classes.of(table.column("source"))
        rows = bucket_rows(index, records, table.column("n_words").to_numpy(), classes, plan)
        pairs, heads = star_pairs(rows, plan.classes.compatible)
        local = (pairs & ROW_MASK).astype(np.int64)
        edges = pairs[similar(records[local[:, 0]], records[local[:, 1]], plan)]
        self.storage.write_bytes(plan.path("records", index), records.tobytes())
        save_array(self.storage, plan.path("local", index), edges)
        _write_counts(self.storage, plan.path("local_counts", index), len(pairs), len(edges))
        self._write_partitioned(index, rows[heads])
        return index

    def _write_partitioned(self, index: int, rows: np.ndarray) -> None:
        partition = rows["key"] % np.uint64(self.plan.partitions)
        order = np.argsort(partition, kind="stable")
        bounds = np.searchsorted(partition[order], np.arange(self.plan.partitions + 1))
        self.storage.write_bytes(self.plan.path("buckets", index), rows[order].tobytes())
        self.storage.write_bytes(self.plan.path("offsets", index), bounds.astype("<u8").tobytes())


@dataclass(frozen=True)
class ReduceTask:
    """One bucket partition's candidate pairs across all shards, verified, as edges."""

    plan: BucketPlan
    storage: Storage
    shards: int

    def __call__(self, partition: int) -> int:
        plan = self.plan
        if self.storage.exists(plan.path("edges", partition)):  # a resumed run keeps it
            return partition
        rows = np.concatenate([self._rows(index, partition) for index in range(self.shards)])
        pairs, _ = star_pairs(rows, plan.classes.compatible)
        chunks = [pairs[i : i + _VERIFY_PAIRS] for i in range(0, len(pairs), _VERIFY_PAIRS)]
        edges = np.concatenate([np.empty((0, 2), np.uint64)] + [c[self._verify(c)] for c in chunks])
        _write_counts(self.storage, plan.path("counts", partition), len(pairs), len(edges))
        save_array(self.storage, plan.path("edges", partition), edges)
        return partition

    def _rows(self, index: int, partition: int) -> np.ndarray:
        """This partition's slice of one shard's bucket rows."""
        with self.storage.fs.open_input_file(self.plan.path("offsets", index)) as f:
            lo, hi = (int(x) for x in np.frombuffer(f.read_at(16, 8 * partition), "<u8"))
        size = BUCKET_ROW.itemsize
        if lo == hi:
            return np.empty(0, BUCKET_ROW)
        with self.storage.fs.open_input_file(self.plan.path("buckets", index)) as f:
            return np.frombuffer(f.read_at((hi - lo) * size, lo * size), BUCKET_ROW)

    def _verify(self, pairs: np.ndarray) -> np.ndarray:
        docs = np.unique(pairs)
        records = read_records(self.storage, self.plan, docs)
        a, b = np.searchsorted(docs, pairs[:, 0]), np.searchsorted(docs, pairs[:, 1])
        return similar(records[a], records[b], self.plan)


def read_records(storage: Storage, plan: BucketPlan, docs: np.ndarray) -> np.ndarray:
    """The maps' records of sorted document keys, read row by row from each shard's file."""
    width = plan.record_bytes
    out = np.empty((len(docs), width), np.uint8)
    shards = docs >> SHARD_SHIFT
    bounds = np.flatnonzero(np.concatenate([[True], shards[1:] != shards[:-1], [True]]))
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        with storage.fs.open_input_file(plan.path("records", int(shards[start]))) as f:
            for i in range(start, end):
                offset = int(docs[i] & ROW_MASK) * width
                out[i] = np.frombuffer(f.read_at(width, offset), np.uint8)
    return out


def _write_counts(storage: Storage, path: str, candidates: int, verified: int) -> None:
    storage.write_bytes(path, json.dumps({"candidates": candidates, "verified": verified}).encode())


def edge_files(plan: BucketPlan, shards: int) -> list[str]:
    """Every file of verified edges: the maps' local ones, then the reduces'. A pair sharing
    several bands is in several of them; the cluster step reads each file on its own."""
    paths = [plan.path("local", i) for i in range(shards)]
    return paths + [plan.path("edges", p) for p in range(plan.partitions)]


def pair_counts(storage: Storage, plan: BucketPlan, shards: int) -> Counter[str]:
    """Candidate pairs checked and verified, by the maps' combiners and by the reduces."""
    paths = [plan.path("local_counts", i) for i in range(shards)]
    paths += [plan.path("counts", p) for p in range(plan.partitions)]
    total: Counter[str] = Counter()
    for path in paths:
        total.update(json.loads(storage.read_bytes(path)))
    return total
