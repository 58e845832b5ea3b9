"""CCNet line dedup: every rule with a case that fails without it."""

import numpy as np
import pyarrow.parquet as pq

from curation.commoncrawl.line_dedup import LineDedup, duplicated_hashes, hash_lines
from curation.core.documents import Document, documents_table
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput

UNIQUE = [
    f"Paragraph {word} explains how the {word} subsystem schedules its work across the machine."
    for word in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
]


def shard(tmp_path, name: str, texts: list[str]) -> ShardInput:
    docs = [Document(f"{name}-{i}", "t", text, None) for i, text in enumerate(texts)]
    path = tmp_path / f"{name}.parquet"
    pq.write_table(documents_table(docs), path)
    return ShardInput(name, str(path), name, path.stat().st_size)


def run(storage, tmp_path, shards, **config):
    out = tmp_path / "out"
    manifest = run_stage(LineDedup(**config), shards, str(out), storage, LocalExecutor(1))
    kept = {d["id"]: d["text"] for d in pq.read_table(out).to_pylist()}
    dropped = {d["id"]: d["reason"] for d in pq.read_table(out / "_dropped").to_pylist()}
    return manifest, kept, dropped


def test_a_line_in_two_documents_is_removed_from_both_first_occurrence_included(storage, tmp_path):
    a = "\n".join(["Accept all cookies", UNIQUE[0], UNIQUE[1], UNIQUE[2]])
    b = "\n".join(["ACCEPT ALL COOKIES", UNIQUE[3], UNIQUE[4], UNIQUE[5]])
    _, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [a, b])], min_chars=10)
    assert kept["s0-0"] == "\n".join(UNIQUE[:3])
    assert kept["s0-1"] == "\n".join(UNIQUE[3:])


def test_ccnet_keeps_lines_that_differ_in_ascii_punctuation_apart(storage, tmp_path):
    """CCNet's normalize_for_dedup removes only its Unicode punctuation table: "!" and "/"
    stay in the key, so these are two lines each, not duplicates."""
    a = "\n".join(["Accept all cookies!", UNIQUE[0], "Home / About"])
    b = "\n".join(["Accept all cookies", UNIQUE[1], "home about"])
    _, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [a, b])], min_chars=10)
    assert kept == {"s0-0": a, "s0-1": b}


def test_project_broad_key_also_merges_ascii_punctuation_variants(storage, tmp_path):
    """This project's option `normalization: broad`, not CCNet's behaviour."""
    a = "\n".join(["Accept all cookies!", UNIQUE[0], "Home / About"])
    b = "\n".join(["Accept all cookies", UNIQUE[1], "home about"])
    shards = [shard(tmp_path, "s0", [a, b])]
    _, kept, _ = run(storage, tmp_path, shards, min_chars=10, normalization="broad")
    assert kept == {"s0-0": UNIQUE[0], "s0-1": UNIQUE[1]}


def test_repeats_inside_one_document_keep_their_first_occurrence(storage, tmp_path):
    a = "\n".join([UNIQUE[0], UNIQUE[1], UNIQUE[0], UNIQUE[2]])
    manifest, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [a])], min_chars=10)
    assert kept["s0-0"] == "\n".join(UNIQUE[:3])
    assert manifest.histograms["lines"]["removed_repeat_in_document"] == 1


def test_digits_count_as_zero_so_dated_footers_collide(storage, tmp_path):
    a = "\n".join(["© 2021 Example Corp.", UNIQUE[0], UNIQUE[1]])
    b = "\n".join(["© 2023 Example Corp.", UNIQUE[2], UNIQUE[3]])
    _, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [a, b])], min_chars=10)
    assert "Example Corp" not in kept["s0-0"] + kept["s0-1"]


def test_duplicates_only_count_within_a_group_of_shards(storage, tmp_path):
    shards = [
        shard(tmp_path, "s0", ["\n".join(["Shared footer line here", UNIQUE[0]])]),
        shard(tmp_path, "s1", ["\n".join(["Shared footer line here", UNIQUE[1]])]),
    ]
    _, together, _ = run(storage, tmp_path / "a", shards, min_chars=10, group_size=2)
    assert "Shared footer" not in together["s0-0"]
    _, apart, _ = run(storage, tmp_path / "b", shards, min_chars=10, group_size=1)
    assert apart["s0-0"].startswith("Shared footer line here")


def test_a_document_left_without_a_line_is_dropped_as_ccnet_drops_it(storage, tmp_path):
    """CCNet's DuplicatesRemover returns None when no line of a document survives, and keeps
    every other document, however short."""
    nav = "Home\nAbout\nContact\nAccept all cookies"
    long_doc = "\n".join([nav, *UNIQUE])
    short_doc = "\n".join([nav, "Short and unique."])
    shards = [shard(tmp_path, "s0", [nav, long_doc, short_doc])]
    manifest, kept, dropped = run(storage, tmp_path, shards)
    assert dropped == {"s0-0": "no_line_left"}
    assert kept == {"s0-1": "\n".join(UNIQUE), "s0-2": "Short and unique."}
    assert manifest.n_in == 3


def test_project_min_chars_also_drops_documents_left_short(storage, tmp_path):
    """This project's option `min_chars`, not CCNet's behaviour."""
    nav = "Home\nAbout\nContact\nAccept all cookies"
    short_doc = "\n".join([nav, "Short and unique."])
    shards = [shard(tmp_path, "s0", [nav, "\n".join([nav, *UNIQUE]), short_doc])]
    _, kept, dropped = run(storage, tmp_path, shards, min_chars=300)
    assert dropped == {"s0-0": "no_line_left", "s0-2": "too_short_after_dedup"}
    assert list(kept) == ["s0-1"]


def test_group_state_is_numpy_uint64_hashes_not_python_strings():
    hashes, counts = hash_lines(["a\nb", "a\nc", "a\na"])
    assert hashes.dtype == np.uint64 and counts.tolist() == [2, 2, 2]
    duplicates = duplicated_hashes([(hashes, counts)])
    assert duplicates.dtype == np.uint64
    assert duplicates.tolist() == [hash_lines(["a"])[0][0]]


def test_a_page_of_one_enormous_line_is_handled_not_a_crash(storage, tmp_path):
    enormous = "word " * 400_000  # 2 MB, no newline
    manifest, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [enormous, UNIQUE[0]])])
    assert kept["s0-0"] == enormous
    assert manifest.n_in == 2
