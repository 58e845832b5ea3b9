"""Finding a document's overlaps with the evaluation sets, and keeping them per shard.

A document overlaps an item when one of its n-gram windows is one of the item's (the same
relation lm-eval's `get_train_overlap` tests from the item's side). Most documents share
nothing: their window hashes are looked up in the sorted index (a binary search per window,
vectorized) and that is all. Only a document with a hit is split again with character
offsets, to say where the colliding windows are; overlapping windows are merged into spans.

The global pass writes one matches file per input shard (the rows that overlap, their items
and spans), which the policy then reads, so the texts are hashed once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.storage import Storage
from curation.decontamination.benchmarks import BenchmarkIndex
from curation.decontamination.ngrams import token_spans, tokens, window_hashes
from curation.decontamination.policy import Span, merge_spans

MATCHES_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("items", pa.list_(pa.int64()), nullable=False),
        pa.field("starts", pa.list_(pa.int64()), nullable=False),
        pa.field("ends", pa.list_(pa.int64()), nullable=False),
    ]
)


@dataclass(frozen=True)
class Overlap:
    """What one document shares with the evaluation sets: the item codes whose n-grams it
    holds and the character spans of its colliding windows, merged, in order."""

    items: list[int]
    spans: list[Span]


def find_overlap(index: BenchmarkIndex, text: str, n: int) -> Overlap | None:
    """The document's overlap, or None when it shares no n-gram with any item."""
    positions = index.find(window_hashes(tokens(text), n))
    hits = np.flatnonzero(positions >= 0)
    if not len(hits):
        return None
    spans = token_spans(text)
    windows = zip(spans[hits, 0].tolist(), spans[hits + n - 1, 1].tolist(), strict=True)
    return Overlap(index.items_at(positions[hits]), merge_spans(list(windows)))


def write_matches(storage: Storage, path: str, overlaps: dict[int, Overlap]) -> None:
    """The overlapping rows of one shard, by row number."""
    rows = sorted(overlaps)
    table = pa.Table.from_pydict(
        {
            "row": rows,
            "items": [overlaps[r].items for r in rows],
            "starts": [[s for s, _ in overlaps[r].spans] for r in rows],
            "ends": [[e for _, e in overlaps[r].spans] for r in rows],
        },
        schema=MATCHES_SCHEMA,
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    storage.write_bytes(path, buffer.getvalue())


def read_matches(storage: Storage, path: str) -> dict[int, Overlap]:
    table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
    return {
        row["row"]: Overlap(row["items"], list(zip(row["starts"], row["ends"], strict=True)))
        for row in table.to_pylist()
    }
