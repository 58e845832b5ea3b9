"""`dedup_signatures`: one MinHash signature, content digest and word count per document.

The per-document half of global dedup (curation/dedup/near_dedup.py), as its own stage so that it
is materialized once per upstream partition (each crawl, each curated source): a new crawl
computes only its own signatures, and the global pass reads them back without any text.

Output rows, one per input row in input order, all kept: `id`, `source`, `digest` (20-byte
SHA-1 of the whitespace-normalized text, `exact_dedup.content_digest`), `signature` (num_perm
little-endian uint32 in one binary value: a list<uint32> costs offsets and levels per row for
nothing, and a fixed-size binary type cannot follow num_perm in a class-level schema) and
`n_words`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.commoncrawl.exact_dedup import content_digest
from curation.core.documents import DOCUMENT_SCHEMA, drop_rows
from curation.core.screening import iter_shard
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage
from curation.dedup.minhash import signatures

DIGEST_BYTES = 20
SIGNATURE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("digest", pa.binary(DIGEST_BYTES), nullable=False),
        pa.field("signature", pa.binary(), nullable=False),
        pa.field("n_words", pa.int64(), nullable=False),
    ]
)
_BATCH = 4096  # documents per batch: bounds the text held at once


@dataclass(frozen=True)
class MinHashSignatures(Stage):
    """One MinHash signature, content digest and word count per document (all kept)."""

    name: ClassVar[str] = "dedup_signatures"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = SIGNATURE_SCHEMA
    input_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    num_perm: int = 112
    seed: int = 1
    shingle_words: int = 5

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        return ShardOutput.concat(self.process_batches(shard, storage))

    def process_batches(self, shard: ShardInput, storage: Storage) -> Iterator[ShardOutput]:
        for documents in iter_shard(self, shard, storage, ["id", "source", "text"], _BATCH):
            yield self._output(documents)

    def _output(self, documents: pa.Table) -> ShardOutput:
        kept = self.signature_table(documents)
        return ShardOutput(kept.num_rows, kept, drop_rows(kept.slice(0, 0), self.name, []))

    def signature_table(self, documents: pa.Table) -> pa.Table:
        """The signature rows of a table with `id`, `source` and `text`."""
        texts = documents.column("text")
        values, n_words = signatures(texts, self.num_perm, self.seed, self.shingle_words)
        digests = [content_digest(text) for text in texts.to_pylist()]
        return pa.table(
            {
                "id": documents.column("id"),
                "source": documents.column("source"),
                "digest": pa.array(digests, pa.binary(DIGEST_BYTES)),
                "signature": binary_rows(values),
                "n_words": pa.array(n_words, pa.int64()),
            },
            schema=SIGNATURE_SCHEMA,
        )


def binary_rows(values: np.ndarray) -> pa.Array:
    """Each row of a uint32 matrix as one little-endian binary value, built without a copy
    per row."""
    width = values.shape[1] * 4
    offsets = np.arange(len(values) + 1, dtype=np.int32) * width
    data = np.ascontiguousarray(values, dtype="<u4").tobytes()
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.binary(), len(values), buffers)


def signature_matrix(column: pa.ChunkedArray, num_perm: int) -> np.ndarray:
    """The `signature` column back as a (rows x num_perm) uint32 matrix."""
    array = column.combine_chunks().cast(pa.binary())
    n = len(array)
    if not n:
        return np.empty((0, num_perm), np.uint32)
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset : array.offset + n + 1]
    if array.null_count or np.any(np.diff(offsets) != 4 * num_perm):
        raise ValueError(f"signatures are not all {num_perm} uint32 values")
    data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.view("<u4").reshape(n, num_perm)


def digest_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """The `digest` column as a (rows x 20) uint8 matrix."""
    array = column.combine_chunks().cast(pa.binary(DIGEST_BYTES))
    if not len(array):
        return np.empty((0, DIGEST_BYTES), np.uint8)
    data = np.frombuffer(array.buffers()[1], np.uint8)[array.offset * DIGEST_BYTES :]
    return data[: len(array) * DIGEST_BYTES].reshape(-1, DIGEST_BYTES)
