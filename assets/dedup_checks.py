"""Checks of `deduplicated` against the text itself, not the signatures it was decided on.

MinHash decides on estimates; these checks recompute the exact Jaccard similarity of word
5-gram sets for the pairs that matter: every removal (was it really a near-copy of what was
kept?) and, on the sample world, every planted duplicate pair (did exactly one survive?).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity

from assets.ground_truth import PLANTED_FILE, read_truth
from assets.resources import DataRoot
from curation.core.manifest import DROPPED_DIR
from curation.core.storage import Storage
from curation.dedup.minhash import shingle_hashes
from curation.recipe import DUPLICATES_VERIFIED, PLANTED_DUPLICATES

# A removal must be this close to the threshold in exact Jaccard: the signature estimate of
# 112 values has a standard error of about 0.04 near 0.72, so 3 of them.
VERIFY_MARGIN = 0.12


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the two texts' word 5-gram sets."""
    x, y = shingle_hashes(a), shingle_hashes(b)
    union = len(np.union1d(x, y))
    return len(np.intersect1d(x, y)) / union if union else 1.0


def _rows(storage: Storage, path: str, columns: list[str]) -> pa.Table:
    return pq.read_table(path, filesystem=storage.fs, columns=columns)


def duplicates_verified(storage: Storage, output: str, threshold: float) -> AssetCheckResult:
    """Every document removed as a near duplicate is, in exact Jaccard, within the margin of
    the threshold to the document kept in its place: distinct pages that only share
    boilerplate must not be lost."""
    dropped = _rows(
        storage,
        posixpath.join(output, DROPPED_DIR),
        ["id", "source", "text", "reason", "duplicate_of", "duplicate_of_source"],
    )
    dropped = dropped.filter(pc.equal(dropped.column("reason"), "near_duplicate"))
    kept = _rows(storage, output, ["id", "source", "text"])
    kept = kept.filter(pc.is_in(kept.column("id"), dropped.column("duplicate_of")))
    columns = (kept.column(c).to_pylist() for c in ("id", "source", "text"))
    texts = {(i, s): t for i, s, t in zip(*columns, strict=True)}
    worst: list[tuple[float, str]] = []
    for row in dropped.to_pylist():
        similarity = jaccard(row["text"], texts[(row["duplicate_of"], row["duplicate_of_source"])])
        worst.append((similarity, f"{row['source']}:{row['id']} ~ {row['duplicate_of']}"))
    worst.sort()
    failing = [f"{name} ({s:.2f})" for s, name in worst if s < threshold - VERIFY_MARGIN]
    return AssetCheckResult(
        check_name=DUPLICATES_VERIFIED,
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "near_duplicates_removed": len(worst),
            "lowest_jaccard": round(worst[0][0], 3) if worst else "none",
            "below_bound": "; ".join(failing[:5]) or "none",
        },
    )


def _by_url(table: pa.Table) -> dict[tuple[str, str], str]:
    columns = (table.column(c).to_pylist() for c in ("source", "url", "text"))
    return {(s, u): t for s, u, t in zip(*columns, strict=True) if u}


def planted_duplicates(
    data_root: DataRoot, storage: Storage, output: str, threshold: float, crawls: Iterable[str]
) -> AssetCheckResult:
    """Each planted duplicate pair (a mirror copy, a previous release of a page) that reached
    dedup as two documents of one corpus, and is still a near copy after the earlier stages
    cleaned both, ends with exactly one member kept. Pairs the earlier stages already
    collapsed, or cleaned apart (exact Jaccard under the threshold), are counted, not judged."""
    truth = [row for crawl in crawls for row in (read_truth(data_root, crawl, PLANTED_FILE) or [])]
    pairs = [(row["url"], row["duplicate_of"]) for row in truth if row["duplicate_of"]]
    if not pairs:
        return AssetCheckResult(
            check_name=PLANTED_DUPLICATES, passed=True, metadata={"ground_truth": "none"}
        )
    columns = ["source", "url", "text"]
    kept = _by_url(_rows(storage, output, columns))
    seen = {**_by_url(_rows(storage, posixpath.join(output, DROPPED_DIR), columns)), **kept}
    planted_urls = {url for pair in pairs for url in pair}
    judged, cleaned_apart, not_both, wrong = 0, 0, 0, []
    for corpus in sorted({source for source, url in seen if url in planted_urls}):
        for copy, original in pairs:
            a, b = (corpus, copy), (corpus, original)
            if a not in seen or b not in seen:
                not_both += 1
                continue
            if jaccard(seen[a], seen[b]) < threshold:
                cleaned_apart += 1
                continue
            judged += 1
            if (a in kept) + (b in kept) != 1:
                wrong.append(f"{corpus}: {copy}")
    return AssetCheckResult(
        check_name=PLANTED_DUPLICATES,
        passed=judged > 0 and not wrong,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "planted_pairs": len(pairs),
            "judged": judged,
            "cleaned_apart_upstream": cleaned_apart,
            "not_both_present": not_both,
            "not_exactly_one_kept": "; ".join(wrong[:5]) or "none",
        },
    )


def cluster_examples(summary: dict) -> str:
    """The largest clusters as a table: what a person checks the rules by."""
    lines = [
        "| cluster | size | source | crawl | decision | text (start) |",
        "|---|---:|---|---|---|---|",
    ]
    for n, cluster in enumerate(summary.get("example_clusters", []), 1):
        for doc in cluster["documents"]:
            text = doc["text"].replace("|", "\\|")
            lines.append(
                f"| {n} | {cluster['size']} | {doc['source']} | {doc['crawl'] or ''} "
                f"| {doc['decision']} | {text} |"
            )
    return "\n".join(lines) if len(lines) > 2 else "no duplicate clusters"
