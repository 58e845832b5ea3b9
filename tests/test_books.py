"""Books: Gutenberg wrapper removed, bad files quarantined, one book kept per >90% cluster."""

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from datasketch import MinHash, MinHashLSH

from curation.core.documents import document_id
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.sources.book_candidates import BandPartitions, candidate_search, signature_pairs
from curation.sources.books import (
    BooksClean,
    book_shards,
    candidate_pairs,
    content_overlap,
    minhash_signature,
    overlapping_pairs,
    shingle_hashes,
    strip_gutenberg,
    verify_books,
)
from sample_world.books import Work, build_books, gutenberg_text

VOCABULARY = [f"w{i}" for i in range(2000)]


def words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


def write_books(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return root


def run_books(tmp_path: Path, books: Path, stage: BooksClean | None = None):
    """Kept and dropped rows by file, after checking that every book is accounted for."""
    storage = Storage(str(tmp_path))
    shards = book_shards(storage, str(books))
    out = tmp_path / "out"
    manifest = run_stage(stage or BooksClean(), shards, str(out), storage, LocalExecutor(1))
    kept = {json.loads(r["meta"])["file"]: r for r in pq.read_table(out).to_pylist()}
    dropped = {
        json.loads(r["meta"])["file"]: r for r in pq.read_table(out / "_dropped").to_pylist()
    }
    assert manifest.n_in == len(kept) + len(dropped) == len(shards)
    return kept, dropped


def clean(tmp_path: Path, files: dict[str, str | bytes], stage: BooksClean | None = None):
    return run_books(tmp_path, write_books(tmp_path / "books", files), stage)


def work(body: str, title: str = "A Book", language: str = "fr") -> Work:
    return Work("c", title, "Some One", language, body, "test")


def test_gutenberg_header_and_footer_are_stripped_and_the_header_read():
    body = words(300, 1)
    book = strip_gutenberg(gutenberg_text(work(body), 12345, "May 1, 2001"))
    assert book.text == f"A BOOK\n\nBY SOME ONE\n\n\n{body}"
    assert (book.title, book.language, book.boilerplate_removed) == ("A Book", "fr", True)


def test_a_gutenberg_book_without_markers_is_kept_whole_and_flagged(tmp_path):
    text = gutenberg_text(work(words(300, 1)), 12345, "May 1, 2001", markers=False)
    marked = gutenberg_text(work(words(300, 2), "Other"), 54321, "May 1, 2001")
    kept, _ = clean(tmp_path, {"gutenberg/pg12345.txt": text, "gutenberg/pg54321.txt": marked})
    unmarked = kept["gutenberg/pg12345.txt"]
    assert unmarked["text"] == text.strip()
    assert json.loads(unmarked["meta"])["gutenberg_boilerplate_removed"] is False
    meta = json.loads(kept["gutenberg/pg54321.txt"]["meta"])
    assert meta == {
        "collection": "gutenberg",
        "file": "gutenberg/pg54321.txt",
        "gutenberg_boilerplate_removed": True,
        "language": "fr",
        "title": "Other",
    }
    assert kept["gutenberg/pg54321.txt"]["id"] == document_id("books", "pg54321")


def test_empty_and_undecodable_books_are_quarantined(tmp_path):
    empty = gutenberg_text(work(""), 1, "May 1, 2001")
    _, dropped = clean(
        tmp_path,
        {"gutenberg/pg00001.txt": empty, "books3/latin.txt": "déjà vu".encode("latin-1")},
    )
    assert {name: row["reason"] for name, row in dropped.items()} == {
        "gutenberg/pg00001.txt": "empty_book",
        "books3/latin.txt": "invalid_encoding",
    }


def edit(text: str, seed: int, n: int) -> str:
    """`n` adjacent-word swaps, as a corrected edition has."""
    rng = random.Random(seed)
    tokens = text.split(" ")
    for i in rng.sample(range(len(tokens) - 1), n):
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return " ".join(tokens)


def editions(body: str) -> dict[str, str]:
    """Three editions of one book: the Gutenberg one, one with a short and one with a long
    new preface, each with a few corrections."""
    return {
        "gutenberg/pg00001.txt": gutenberg_text(work(body), 1, "May 1, 2001"),
        "books3/second.txt": "Preface to the second edition.\n\n" + edit(body, 2, 20),
        "books3/third.txt": "A new and much longer preface. " * 20 + edit(body, 3, 20),
    }


def test_near_duplicate_editions_form_one_cluster_and_the_longest_is_kept(tmp_path):
    files = editions(words(4000, 1)) | {"books3/other.txt": words(4000, 9)}
    kept, dropped = clean(tmp_path, files)
    assert set(kept) == {"books3/third.txt", "books3/other.txt"}
    third = document_id("books", "third")
    assert {name: json.loads(row["meta"])["duplicate_of"] for name, row in dropped.items()} == {
        "gutenberg/pg00001.txt": third,
        "books3/second.txt": third,
    }
    assert {row["reason"] for row in dropped.values()} == {"near_duplicate_book"}


def test_equally_long_duplicates_keep_the_smallest_id(tmp_path):
    body = words(3000, 1)
    kept, _ = clean(tmp_path, {"books3/a.txt": body, "books3/b.txt": body})
    assert [row["id"] for row in kept.values()] == [
        min(document_id("books", "a"), document_id("books", "b"))
    ]


def test_distinct_books_sharing_chapters_are_both_kept(tmp_path):
    shared, appendix = words(2000, 1), words(300, 4)
    files = {
        "books3/a.txt": f"{words(800, 2)} {shared} {appendix}",
        "books3/b.txt": f"{shared} {words(800, 3)} {appendix}",
    }
    kept, dropped = clean(tmp_path, files, BooksClean(lsh_threshold=0.3))
    assert set(kept) == set(files) and not dropped


def test_content_overlap_is_containment_in_the_smaller_book():
    a = shingle_hashes(words(2000, 1))
    assert content_overlap(a[:500], a) == 1.0
    assert content_overlap(a, a[:1000]) == 1.0
    assert content_overlap(a, shingle_hashes(words(2000, 2))) == 0.0


def test_the_exact_check_rejects_an_lsh_false_positive():
    shared = words(1500, 1)
    texts = {"a": f"{shared} {words(500, 2)}", "b": f"{shared} {words(500, 3)}"}
    shingles = {key: shingle_hashes(text) for key, text in texts.items()}
    signatures = {key: minhash_signature(s, 128, 1) for key, s in shingles.items()}
    assert candidate_pairs(signatures, 0.3, 128) == [("a", "b")]
    assert 0.7 < content_overlap(shingles["a"], shingles["b"]) < 0.9
    assert overlapping_pairs([("a", "b")], shingles.__getitem__, 0.9) == []


def test_verify_books_reports_markers_and_kept_duplicates():
    body = words(3000, 1)
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "text": [body, edit(body, 1, 10), "*** END OF THE PROJECT GUTENBERG EBOOK X ***"],
        }
    )
    problems = verify_books(table)
    assert len(problems) == 2
    assert "marker" in problems[0] and "a and b" in problems[1]
    assert verify_books(table.slice(0, 1)) == []


@pytest.fixture(scope="module")
def sample_books(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    build_books(root / "books", REPO / ".cache" / "debian", seed=0)
    return root


def test_every_planted_cluster_of_the_sample_keeps_exactly_one_book(sample_books):
    truth = [json.loads(line) for line in (sample_books / "books" / "books.jsonl").open()]
    kept, dropped = run_books(sample_books, sample_books / "books")
    kept_per_cluster = Counter(r["cluster"] for r in truth if r["file"] in kept)
    clusters = defaultdict(list)
    for row in truth:
        clusters[row["cluster"]].append(row["file"])
    assert any(len(files) > 2 for files in clusters.values())
    assert {cluster: kept_per_cluster[cluster] for cluster in clusters if cluster} == {
        cluster: 1 for cluster in clusters if cluster
    }
    assert {r["file"]: r["expected_drop"] for r in truth if r["expected_drop"]} == {
        name: row["reason"]
        for name, row in dropped.items()
        if row["reason"] != "near_duplicate_book"
    }
    assert verify_books(pa.Table.from_pylist(list(kept.values()))) == []


def lsh_pairs(signatures: dict, threshold: float, num_perm: int) -> list[tuple[str, str]]:
    """The candidate pairs of datasketch's MinHashLSH, what the stage used before its band
    search was partitioned: the reference the partitioned search must reproduce."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    minhashes = {
        key: MinHash(num_perm=num_perm, hashvalues=sig, scheme="affine64")
        for key, sig in signatures.items()
    }
    for key, minhash in minhashes.items():
        lsh.insert(key, minhash)
    return sorted(
        {(min(k, o), max(k, o)) for k, m in minhashes.items() for o in lsh.query(m) if o != k}
    )


def edition_signatures(n: int, seed: int) -> dict[str, np.ndarray]:
    """Signatures of `n` books, each sharing a random share of its text with the one before."""
    rng = random.Random(seed)
    text, signatures = words(600, seed), {}
    for i in range(n):
        keep = rng.randrange(0, 600)
        text = " ".join(text.split(" ")[:keep] + words(600 - keep, seed * 1000 + i).split(" "))
        signatures[f"b{i:03d}"] = minhash_signature(shingle_hashes(text), 128, 1)
    return signatures


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_the_band_search_finds_exactly_the_pairs_of_datasketch_lsh(threshold):
    signatures = edition_signatures(60, 7)
    pairs = candidate_pairs(signatures, threshold, 128)
    assert pairs == lsh_pairs(signatures, threshold, 128) and len(pairs) > 5


def test_the_partitioned_band_search_equals_the_one_in_memory(storage, tmp_path):
    signatures = list(edition_signatures(40, 3).values())
    shards = [ShardInput(f"b{i}", f"b{i}.txt", "", 1000) for i in range(41)]
    sizes = np.array([1000] * 40 + [0])  # the last book has no text: not searched
    expected = signature_pairs(np.stack(signatures), 0.5)
    for bound, partitions in [(10**9, 1), (8000, 5), (1000, 40)]:
        workdir = str(tmp_path / f"bound-{bound}")
        signature_of = dict(zip(shards, signatures, strict=False)).__getitem__
        plan = BandPartitions.plan(storage, workdir, signature_of, 40_000, bound, (0.5, 128))
        found = candidate_search(plan, shards, sizes, LocalExecutor(1))
        assert len(storage.list_files(f"{workdir}/bands", ".offsets")) == partitions
        assert found.tolist() == expected.tolist() and len(expected) > 5


def test_a_memory_bound_leaves_the_books_byte_identical(tmp_path):
    body = words(4000, 1)
    files = editions(body) | {"books3/copy.txt": body}
    files |= {f"books3/other{i}.txt": words(3000, 10 + i) for i in range(6)}
    books = write_books(tmp_path / "books", files)
    storage, outputs = Storage(str(tmp_path)), {}
    # Many partitions in worker processes (the plan pickles), one inline.
    for name, bound, workers in [("one", None, 1), ("many", 20_000, 2)]:
        stage = BooksClean() if bound is None else BooksClean(bytes_per_partition=bound)
        out = tmp_path / name
        shards = book_shards(storage, str(books))
        run_stage(stage, shards, str(out), storage, LocalExecutor(workers))
        outputs[name] = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.*")}
    dropped = pq.read_table(tmp_path / "many" / "_dropped").column("reason").to_pylist()
    assert outputs["one"] == outputs["many"] and dropped == ["near_duplicate_book"] * 3
