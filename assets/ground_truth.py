"""Checks against planted ground truth, for crawls that ship it (the sample world does).

A real crawl has no ground truth: these checks then pass with `ground_truth: none`, so the
asset's check list is the same for every partition.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter

import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity

from assets.resources import DataRoot
from curation.commoncrawl.line_dedup import LINE_KEYS
from curation.core.storage import Storage
from curation.recipe import BOILERPLATE_REMOVED, LOREM_REMOVED, SPAM_REMOVED

PLANTED_FILE = "planted.jsonl"
BOILERPLATE_FILE = "boilerplate.jsonl"


def read_truth(data_root: DataRoot, crawl: str, name: str) -> list[dict] | None:
    path = posixpath.join(posixpath.dirname(data_root.crawl_archives(crawl, "wet")), name)
    storage = data_root.storage()
    if not storage.exists(path):
        return None
    return [json.loads(line) for line in storage.read_bytes(path).decode().splitlines()]


def _parts(storage: Storage, partition: str) -> dict[str, str]:
    """A partition's kept part files by name (`_dropped/` is a directory: not listed)."""
    return {posixpath.basename(p): p for p in storage.list_files(partition, ".parquet")}


def _texts(storage: Storage, part: str) -> dict[str, str]:
    table = pq.read_table(part, filesystem=storage.fs, columns=["id", "text"])
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))


def _no_truth(name: str) -> AssetCheckResult:
    return AssetCheckResult(check_name=name, passed=True, metadata={"ground_truth": "none"})


def boilerplate_removed(
    data_root: DataRoot, crawl: str, output: str, upstream: str, normalization: str
) -> AssetCheckResult:
    """Planted template lines are gone; lines unique in the crawl (by the line-dedup key the
    stage used) survive in kept documents.

    One part file at a time, each output part beside the upstream part of the same name (the
    runner writes one part per input shard): the memory is one pair of parts and the count
    of each distinct line key, not the crawl's text (at 0.95 GB of scale world, reading both
    partitions whole held 2.7 GB)."""
    planted = read_truth(data_root, crawl, BOILERPLATE_FILE)
    if planted is None:
        return _no_truth(BOILERPLATE_REMOVED)
    storage = data_root.storage()
    boilerplate = {row["line"] for row in planted}
    dedup_key = LINE_KEYS[normalization]
    before_parts, after_parts = _parts(storage, upstream), _parts(storage, output)
    if unmatched := sorted(set(after_parts) - set(before_parts)):
        raise ValueError(f"{output}: parts without an upstream part of that name: {unmatched}")
    keys = Counter()
    for part in before_parts.values():
        for text in _texts(storage, part).values():
            keys.update({dedup_key(x) for x in text.split("\n")})
    left = Counter()
    unique_lost = unique_total = 0
    for name, part in after_parts.items():
        before = _texts(storage, before_parts[name])
        for doc_id, text in _texts(storage, part).items():
            lines = text.split("\n")
            left.update(line for line in lines if line in boilerplate)
            kept = {dedup_key(line) for line in lines}
            unique = {k for k in {dedup_key(x) for x in before[doc_id].split("\n")} if keys[k] == 1}
            unique_total += len(unique)
            unique_lost += len(unique - kept)
    return AssetCheckResult(
        check_name=BOILERPLATE_REMOVED,
        passed=not left and unique_lost == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "planted_boilerplate_lines": len(boilerplate),
            "boilerplate_left": sum(left.values()),
            "examples_left": ", ".join(list(left)[:5]) or "none",
            "unique_lines_checked": unique_total,
            "unique_lines_lost": unique_lost,
        },
    )


# CCNet's perplexity filter must catch keyword spam and filler; C4's rules are only meant to
# catch filler ("lorem ipsum"): keyword spam with full sentences passes them, as in C4.
PLANTED_KINDS = {SPAM_REMOVED: ("spam", "lorem"), LOREM_REMOVED: ("lorem",)}


def planted_removed(data_root: DataRoot, crawl: str, output: str, name: str) -> AssetCheckResult:
    """No planted page of the kinds `name` covers is among the kept documents of `output`
    (dropped here or by an earlier stage)."""
    planted = read_truth(data_root, crawl, PLANTED_FILE)
    if planted is None:
        return _no_truth(name)
    spam = {row["url"] for row in planted if row["kind"] in PLANTED_KINDS[name]}
    table = pq.read_table(output, filesystem=data_root.storage().fs, columns=["url"])
    left = sorted(spam & set(table.column("url").to_pylist()))
    return AssetCheckResult(
        check_name=name,
        passed=not left,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "planted": len(spam),
            "still_kept": len(left),
            "examples": ", ".join(left[:5]) or "none",
        },
    )
