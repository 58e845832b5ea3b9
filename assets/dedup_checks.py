"""Checks of `deduplicated` against the text itself, not the signatures it was decided on.

MinHash decides on estimates; these checks recompute the exact Jaccard similarity of word
5-gram sets for the pairs that matter: every removal (was it really a near copy of something
in its cluster?) and, on the sample world, every planted duplicate pair (did it end in one
cluster?).

Clusters are connected components of verified pairs, as in every MinHash dedup that clusters
with union-find: a chain of edited copies can run through the original, so a removal need not
be close to the survivor itself, only to some member. On the sample each chain is one pair;
on a scale world (`llamapipe sample scale`) every copy of a pair joins one cluster.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity

from curation.core.manifest import DROPPED_DIR
from curation.core.storage import Storage
from curation.dedup.minhash import shingle_hashes
from curation.recipe import DUPLICATES_VERIFIED, PLANTED_DUPLICATES

# The signature estimate of 112 values has a standard error of about 0.04 near 0.72; 3 of them
# is the band where the exact Jaccard does not decide: a removal must be no further below the
# threshold, a planted pair must be this far above it to be judged.
VERIFY_MARGIN = 0.12

Key = tuple[str, str]  # (source, id): ids are unique within a source only


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the two texts' word 5-gram sets."""
    x, y = shingle_hashes(a), shingle_hashes(b)
    union = len(np.union1d(x, y))
    return len(np.intersect1d(x, y)) / union if union else 1.0


def _cluster(row: dict) -> Key:
    """The cluster of a row of the output or of `_dropped`: its survivor's key."""
    if row.get("duplicate_of") is None:
        return row["source"], row["id"]
    return row["duplicate_of_source"], row["duplicate_of"]


def _removed(storage: Storage, output: str, columns: list[str]) -> list[dict]:
    """The rows dedup removed (exact or near duplicates): with their cluster's survivor."""
    table = pq.read_table(
        posixpath.join(output, DROPPED_DIR),
        filesystem=storage.fs,
        columns=["source", "id", "reason", "duplicate_of", "duplicate_of_source", *columns],
    )
    return table.filter(pc.is_valid(table.column("duplicate_of"))).to_pylist()


def _kept_texts(storage: Storage, output: str, keys: set[Key]) -> dict[Key, str]:
    table = pq.read_table(output, filesystem=storage.fs, columns=["source", "id", "text"])
    table = table.filter(pc.is_in(table.column("id"), pa.array(sorted({i for _, i in keys}))))
    return {(r["source"], r["id"]): r["text"] for r in table.to_pylist()}


def _closest(row: dict, others: list[dict], bound: float, best: float) -> float:
    """The highest exact Jaccard of `row` to any of `others`, or `best` if none is higher,
    stopping at the first that reaches `bound` (a cluster of a large crawl can hold
    thousands of copies)."""
    for other in others:
        if other is not row:
            best = max(best, jaccard(row["text"], other["text"]))
            if best >= bound:
                break
    return best


def duplicates_verified(storage: Storage, output: str, threshold: float) -> AssetCheckResult:
    """Every document removed as a near duplicate is, in exact Jaccard, within the margin of
    the threshold to the document kept in its cluster or, failing that, to another member
    removed in the same cluster: distinct pages that only share boilerplate must not be lost."""
    bound = threshold - VERIFY_MARGIN
    removed = _removed(storage, output, ["text"])
    near = [row for row in removed if row["reason"] == "near_duplicate"]
    survivors = _kept_texts(storage, output, {_cluster(row) for row in near})
    to_survivor = {id(row): jaccard(row["text"], survivors[_cluster(row)]) for row in near}
    unverified = [row for row in near if to_survivor[id(row)] < bound]
    members = defaultdict(list)
    for row in removed:
        members[_cluster(row)].append(row)
    closest = sorted(
        (
            _closest(row, members[_cluster(row)], bound, to_survivor[id(row)]),
            f"{row['source']}:{row['id']}",
        )
        for row in unverified
    )
    failing = [f"{name} ({s:.2f})" for s, name in closest if s < bound]
    return AssetCheckResult(
        check_name=DUPLICATES_VERIFIED,
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "near_duplicates_removed": len(near),
            "lowest_jaccard_to_survivor": round(min(to_survivor.values()), 3) if near else "none",
            "verified_through_cluster": len(unverified) - len(failing),
            "below_bound": "; ".join(failing[:5]) or "none",
        },
    )


def planted_duplicates(
    truth: list[dict] | None, storage: Storage, output: str, threshold: float
) -> AssetCheckResult:
    """Each planted duplicate pair (a mirror copy, a previous release of a page) that reached
    dedup as two documents of one corpus, and is still a near copy after the earlier stages
    cleaned both, ends in one cluster: one member kept and the other removed in its favour,
    or both removed in favour of the same third copy (the scale world's copies of the pair).
    Counted, not judged: pairs the earlier stages already collapsed or cleaned apart (exact
    Jaccard under the threshold), and pairs within the margin above it, which the signature
    estimate misses about as often as not at the threshold itself. `truth`: the crawls'
    planted rows (None: nothing to judge)."""
    pairs = [(row["url"], row["duplicate_of"]) for row in truth or [] if row["duplicate_of"]]
    if not pairs:
        return AssetCheckResult(
            check_name=PLANTED_DUPLICATES, passed=True, metadata={"ground_truth": "none"}
        )
    planted = {url for pair in pairs for url in pair}
    kept = pq.read_table(output, filesystem=storage.fs, columns=["source", "id", "url", "text"])
    kept = kept.filter(pc.is_in(kept.column("url"), pa.array(sorted(planted))))
    removed = [row for row in _removed(storage, output, ["url", "text"]) if row["url"] in planted]
    seen = {(row["source"], row["url"]): row for row in [*removed, *kept.to_pylist()]}
    judged, cleaned_apart, near_threshold, not_both, wrong = 0, 0, 0, 0, []
    for corpus in sorted({source for source, _ in seen}):
        for copy, original in pairs:
            a, b = seen.get((corpus, copy)), seen.get((corpus, original))
            if a is None or b is None:
                not_both += 1
            elif (similarity := jaccard(a["text"], b["text"])) < threshold:
                cleaned_apart += 1
            elif similarity < threshold + VERIFY_MARGIN:
                near_threshold += 1
            else:
                judged += 1
                if _cluster(a) != _cluster(b):
                    wrong.append(f"{corpus}: {copy}")
    return AssetCheckResult(
        check_name=PLANTED_DUPLICATES,
        passed=judged > 0 and not wrong,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "planted_pairs": len(pairs),
            "judged": judged,
            "cleaned_apart_upstream": cleaned_apart,
            "near_threshold": near_threshold,
            "not_both_present": not_both,
            "not_in_one_cluster": "; ".join(wrong[:5]) or "none",
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
