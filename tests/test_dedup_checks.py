"""The checks of `deduplicated` judge clusters as the stage builds them: connected components,
where a chain of edited copies can leave a removal far from its survivor but close to another
member. A hand-written output partition (kept rows and `_dropped/`) with texts of known exact
Jaccard similarity is what they read."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.dedup_checks import duplicates_verified, jaccard, planted_duplicates
from curation.core.manifest import DROPPED_DIR
from curation.core.storage import Storage

THRESHOLD = 0.72
WORDS = 200  # 196 word 5-grams: each replaced word changes 5 of them


def text(family: str, edits: range = range(0)) -> str:
    """200 distinct words of `family`, with the words at positions 10, 20, ... replaced
    for each number in `edits` (each edit moves the text about 0.05 in Jaccard)."""
    words = [f"{family}{i}" for i in range(WORDS)]
    for e in edits:
        words[10 + 10 * e] = f"edit{e}"
    return " ".join(words)


# A chain: B 0.90 from A, C 0.81 from B, D 0.81 from C but 0.59 from A.
A, B, C, D = text("a"), text("a", range(2)), text("a", range(6)), text("a", range(10))
UNRELATED = text("u")


def kept(doc_id: str, body: str) -> dict:
    return {
        "source": "commoncrawl",
        "id": doc_id,
        "url": f"https://x.example/{doc_id}",
        "text": body,
    }


def removed(doc_id: str, body: str, survivor: str, reason: str = "near_duplicate") -> dict:
    return {
        **kept(doc_id, body),
        "reason": reason,
        "duplicate_of": survivor,
        "duplicate_of_source": "commoncrawl",
    }


COLUMNS = ["source", "id", "url", "text", "reason", "duplicate_of", "duplicate_of_source"]
REMOVED = pa.schema([(name, pa.string()) for name in COLUMNS])


def partition(tmp_path, rows_kept: list[dict], rows_removed: list[dict]) -> str:
    output = tmp_path / "deduplicated"
    (output / DROPPED_DIR).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows_kept), output / "part-00000.parquet")
    pq.write_table(
        pa.Table.from_pylist(rows_removed, REMOVED), output / DROPPED_DIR / "part-00000.parquet"
    )
    return str(output)


def test_the_fixture_texts_have_the_similarities_the_tests_rely_on():
    similarities = [round(jaccard(x, y), 2) for x, y in [(A, B), (B, C), (C, D), (A, D)]]
    assert similarities == [0.9, 0.81, 0.81, 0.59]
    assert jaccard(A, UNRELATED) == 0


def test_a_removal_far_from_its_survivor_passes_through_a_near_copy_in_its_cluster(tmp_path):
    output = partition(
        tmp_path, [kept("a", A)], [removed("b", B, "a"), removed("c", C, "a"), removed("d", D, "a")]
    )
    result = duplicates_verified(Storage("/"), output, THRESHOLD)
    assert result.metadata["lowest_jaccard_to_survivor"].value == pytest.approx(0.593, abs=1e-3)
    assert result.metadata["verified_through_cluster"].value == 1
    assert result.passed, result.metadata


def test_a_removal_near_nothing_in_its_cluster_fails_and_is_named(tmp_path):
    rows = [removed("u", UNRELATED, "a"), removed("d", D, "a")]
    result = duplicates_verified(Storage("/"), partition(tmp_path, [kept("a", A)], rows), THRESHOLD)
    assert result.metadata["below_bound"].text == "commoncrawl:u (0.00); commoncrawl:d (0.59)"
    assert not result.passed


def test_an_exact_duplicate_member_counts_as_a_near_copy(tmp_path):
    rows = [removed("c", C, "a", "exact_duplicate"), removed("d", D, "a")]
    result = duplicates_verified(Storage("/"), partition(tmp_path, [kept("a", A)], rows), THRESHOLD)
    assert result.passed, result.metadata


def planted(copy: str, original: str) -> dict:
    return {"url": f"https://x.example/{copy}", "duplicate_of": f"https://x.example/{original}"}


def test_a_planted_pair_passes_when_it_ends_in_one_cluster(tmp_path):
    """Kept and removed in its favour, or both removed in favour of a third copy."""
    rows = [removed("b", B, "a"), removed("b2", text("a", range(1)), "a")]
    output = partition(tmp_path, [kept("a", A)], rows)
    result = planted_duplicates(
        [planted("b", "a"), planted("b2", "b")], Storage("/"), output, THRESHOLD
    )
    assert result.metadata["judged"].value == 2
    assert result.passed, result.metadata


def test_a_planted_pair_kept_twice_or_split_across_clusters_fails(tmp_path):
    far = text("f")
    rows_kept = [kept("a", A), kept("b", B), kept("f", far)]
    rows = [removed("f2", text("f", range(1)), "x")]  # its survivor is not the other member
    output = partition(tmp_path, rows_kept, rows)
    truth = [planted("b", "a"), planted("f2", "f")]
    result = planted_duplicates(truth, Storage("/"), output, THRESHOLD)
    assert result.metadata["not_in_one_cluster"].text == (
        "commoncrawl: https://x.example/b; commoncrawl: https://x.example/f2"
    )
    assert not result.passed


def test_pairs_near_the_threshold_or_cleaned_apart_are_counted_not_judged(tmp_path):
    """A pair at 0.81 (within the estimate's margin of error of the threshold), a pair
    at 0.59 and a pair one member of which never reached dedup: none is held against the
    stage, and with nothing judged the check fails."""
    near = text("a", range(4))
    output = partition(tmp_path, [kept("a", A), kept("n", near), kept("d", D)], [])
    truth = [planted("n", "a"), planted("d", "a"), planted("gone", "a")]
    result = planted_duplicates(truth, Storage("/"), output, THRESHOLD)
    metadata = {k: v.value for k, v in result.metadata.items()}
    assert round(jaccard(A, near), 2) == 0.81
    assert metadata["near_threshold"] == 1 and metadata["cleaned_apart_upstream"] == 1
    assert metadata["not_both_present"] == 1 and metadata["judged"] == 0
    assert not result.passed
    assert planted_duplicates(None, Storage("/"), output, THRESHOLD).passed
