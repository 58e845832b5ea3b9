"""`cc_line_dedup`: CCNet's line-level deduplication within groups of shards.

A line whose normalized form appears in two or more documents of the same group of shards is
boilerplate (navigation, footers, cookie banners) and is removed from every document, the
first occurrence included. A line repeated inside one document keeps its first occurrence.
A document left without a line is dropped, as CCNet drops it; `min_chars` (0, as CCNet)
also drops documents left shorter than that.

The key is CCNet's `normalize_for_dedup` (lowercase, digits 0, its punctuation table and
control characters removed), hashed as CCNet does. `normalization: broad` selects this
project's wider key (every Unicode punctuation and format character removed, whitespace
squeezed), which also merges lines that differ only in ASCII punctuation.

Two passes, memory bounded by one group: `prepare` hashes every line (SHA-1 of the normalized
line, first 8 bytes, as a uint64) into one numpy file per shard, then per group counts the
documents containing each hash (`np.unique`) and keeps the sorted array of duplicates.
`process` reloads a shard's hashes and drops lines found in its group's array.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.commoncrawl.normalize import broad_dedup_key, normalize_for_dedup
from curation.core.arrays import load_array, save_array
from curation.core.documents import DOCUMENT_SCHEMA, drop_rows
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, state_field
from curation.core.storage import Storage

_GROUPS_FILE = "groups.json"
_EXAMPLES = 20
# The line keys by name: CCNet's (the default) and this project's broader reading.
LINE_KEYS: dict[str, Callable[[str], str]] = {
    "ccnet": normalize_for_dedup,
    "broad": broad_dedup_key,
}


def line_hash(line: str, key: Callable[[str], str] = normalize_for_dedup) -> int:
    """CCNet's line hash: the first 8 bytes of the key's SHA-1, read as a little-endian uint64."""
    return int.from_bytes(hashlib.sha1(key(line).encode()).digest()[:8], "little")


def hash_lines(
    texts: Sequence[str], key: Callable[[str], str] = normalize_for_dedup
) -> tuple[np.ndarray, np.ndarray]:
    """All line hashes of all documents, concatenated, and the number of lines per document."""
    counts = np.zeros(len(texts), dtype=np.int64)
    hashes: list[int] = []
    for i, text in enumerate(texts):
        lines = text.split("\n")
        counts[i] = len(lines)
        hashes.extend(line_hash(line, key) for line in lines)
    return np.array(hashes, dtype=np.uint64), counts


def _hashes_path(workdir: str, shard: ShardInput, array: str) -> str:
    return posixpath.join(workdir, f"{shard.name}.{array}.npy")


def _group_path(workdir: str, group: int) -> str:
    return posixpath.join(workdir, f"group-{group:05d}.duplicates.npy")


def _load_hashes(
    storage: Storage, workdir: str, shard: ShardInput
) -> tuple[np.ndarray, np.ndarray]:
    hashes = load_array(storage, _hashes_path(workdir, shard, "hashes"))
    return hashes, load_array(storage, _hashes_path(workdir, shard, "counts"))


@dataclass(frozen=True)
class _HashShard:
    """Map step of `prepare`: one shard's line hashes to a file; picklable for pools."""

    storage: Storage
    workdir: str
    normalization: str

    def __call__(self, shard: ShardInput) -> str:
        counts_path = _hashes_path(self.workdir, shard, "counts")
        if not self.storage.exists(counts_path):  # a resumed run keeps finished shards
            texts = read_shard(DOCUMENT_SCHEMA, shard, self.storage, ["text"])
            key = LINE_KEYS[self.normalization]
            hashes, counts = hash_lines(texts.column("text").to_pylist(), key)
            save_array(self.storage, _hashes_path(self.workdir, shard, "hashes"), hashes)
            save_array(self.storage, counts_path, counts)  # written last: the shard is done
        return shard.name


def duplicated_hashes(per_shard: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sorted hashes present in two or more documents of the group."""
    per_document = []
    for hashes, counts in per_shard:
        documents = np.repeat(np.arange(len(counts)), counts)
        pairs = np.unique(np.stack([documents.astype(np.uint64), hashes]), axis=1)
        per_document.append(pairs[1])
    if not per_document:
        return np.array([], dtype=np.uint64)
    values, seen = np.unique(np.concatenate(per_document), return_counts=True)
    return values[seen >= 2]


@dataclass(frozen=True)
class LineDedup(Stage):
    name: ClassVar[str] = "cc_line_dedup"
    version: ClassVar[str] = "2"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA
    input_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    group_size: int = 50
    min_chars: int = 0
    normalization: str = "ccnet"  # a key of LINE_KEYS
    workdir: str = state_field()

    def __post_init__(self) -> None:
        if self.normalization not in LINE_KEYS:
            raise ValueError(f"normalization must be one of {sorted(LINE_KEYS)}")

    def prepare(self, inputs, storage, workdir, executor) -> LineDedup:
        storage.makedirs(workdir)
        task = _HashShard(storage, workdir, self.normalization)
        list(executor.map_unordered(task, inputs))
        groups = {}
        for group, start in enumerate(range(0, len(inputs), self.group_size)):
            members = inputs[start : start + self.group_size]
            loaded = [_load_hashes(storage, workdir, s) for s in members]
            save_array(storage, _group_path(workdir, group), duplicated_hashes(loaded))
            groups.update({s.name: group for s in members})
        storage.write_bytes(posixpath.join(workdir, _GROUPS_FILE), json.dumps(groups).encode())
        return dataclasses.replace(self, workdir=workdir)

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
        groups = json.loads(storage.read_bytes(posixpath.join(self.workdir, _GROUPS_FILE)))
        duplicates = load_array(storage, _group_path(self.workdir, groups[shard.name]))
        hashes, counts = _load_hashes(storage, self.workdir, shard)
        is_duplicate = np.isin(hashes, duplicates)

        texts, reasons, stats, removed = [], [], Counter(), Counter()
        offsets = np.concatenate([[0], np.cumsum(counts)])
        for i, text in enumerate(table.column("text").to_pylist()):
            lines = text.split("\n")
            span = slice(offsets[i], offsets[i + 1])
            kept = _kept_lines(lines, hashes[span], is_duplicate[span], stats, removed)
            texts.append("\n".join(kept))
            reasons.append(self._drop_reason(kept, texts[-1]))

        table = table.set_column(
            table.schema.get_field_index("text"), "text", pa.array(texts, pa.string())
        )
        mask = pa.array([reason is None for reason in reasons], pa.bool_())
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(mask),
            dropped=drop_rows(
                table.filter(pc.invert(mask)), self.name, [r for r in reasons if r is not None]
            ),
            histograms={
                "lines": stats,
                "removed_lines": Counter(dict(removed.most_common(_EXAMPLES))),
            },
        )

    def _drop_reason(self, kept_lines: list[str], text: str) -> str | None:
        if not kept_lines:
            return "no_line_left"
        return "too_short_after_dedup" if len(text) < self.min_chars else None


def _kept_lines(
    lines: list[str],
    hashes: np.ndarray,
    duplicate: np.ndarray,
    stats: Counter[str],
    removed: Counter[str],
) -> list[str]:
    kept, seen = [], set()
    for line, h, dup in zip(lines, hashes.tolist(), duplicate.tolist(), strict=True):
        if dup:
            stats["removed_duplicate"] += 1
            if line.strip():
                removed[line.strip()[:100]] += 1
        elif h in seen:
            stats["removed_repeat_in_document"] += 1
        else:
            seen.add(h)
            kept.append(line)
            stats["kept"] += 1
    return kept
