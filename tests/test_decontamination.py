"""Benchmark decontamination: lm-eval's 13-grams, the three policies, lm-eval's report format,
the stage's contract (counts, determinism, a missing benchmark directory) and the check that
judges the sample's planted items. lm-eval's own decontamination code is the reference."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lm_eval.decontamination.decontaminate import get_train_overlap
from lm_eval.decontamination.janitor import Janitor, word_ngrams

from assets.decontamination import planted_benchmarks
from assets.resources import DataRoot
from curation.core.documents import Document, documents_table
from curation.core.executor import LocalExecutor
from curation.core.inputs import file_shard
from curation.core.runner import run_stage
from curation.corpus.data_card import StageOutput, build_card
from curation.decontamination.benchmarks import (
    BenchmarkError,
    BenchmarkIndex,
    is_evaluated,
    query_text,
)
from curation.decontamination.matcher import find_overlap
from curation.decontamination.ngrams import normalize, token_spans, tokens, window_hashes
from curation.decontamination.policy import Rules
from curation.decontamination.report import report_dir, write_report
from curation.decontamination.stage import Decontaminated, NothingChecked, contaminated_items

PASSAGE = (
    "The stable release receives security fixes and important corrections only. New upstream "
    "versions reach the testing and unstable branches first, and a new stable release follows "
    "roughly every two years."
)
QUESTION = "A farmer has 15 cows and buys 5 more, then sells 3. How many cows does he have?"
FILLER = "Packages are configured once and then kept up to date by the administrator. " * 6
TEXTS = [
    "Hello, World!  It's a -- test... of ünïcode CAFÉ «quotes» tabs\there\u00a0nbsp\x1cseparated",
    PASSAGE.upper().replace(" ", "  ").replace(",", " , ") + " -- and more words after it",
    "a - b -- c ... d ' e " * 5,
]


def reference_ngrams(text: str) -> list[str]:
    """lm-eval's n-grams of a text, as `get_train_overlap` makes them."""
    return list(word_ngrams(Janitor().normalize_string(text), 13))


def our_ngrams(text: str) -> list[str]:
    """Our windows, read back through their character spans."""
    spans = token_spans(text)
    return [
        " ".join(normalize(text[a:b]) for a, b in spans[i : i + 13])
        for i in range(len(tokens(text)) - 12)
    ]


@pytest.mark.parametrize("text", TEXTS)
def test_normalization_and_13grams_are_lm_evals(text):
    assert normalize(text) == Janitor().normalize_string(text)
    assert our_ngrams(text) == reference_ngrams(text)
    assert len(window_hashes(tokens(text))) == len(reference_ngrams(text))


def test_a_document_overlaps_exactly_when_lm_eval_finds_a_shared_13gram():
    words = PASSAGE.split()
    index = BenchmarkIndex.build([(7, window_hashes(tokens(PASSAGE)))])
    documents = {
        "copy, other case and punctuation": FILLER + PASSAGE.lower().replace(".", "!") + FILLER,
        "13 words": " ".join(words[5:18]),
        "12 words": " ".join(words[5:17]),
        "every 12-gram, never 13": " | ".join(" ".join(words[i : i + 12]) for i in range(0, 24)),
        "unrelated": FILLER,
    }
    for name, text in documents.items():
        shared = set(reference_ngrams(text)) & set(reference_ngrams(PASSAGE))
        overlap = find_overlap(index, text, 13)
        assert (overlap is not None) == bool(shared), name
        if overlap:
            assert overlap.items == [7]
            found = {g for a, b in overlap.spans for g in reference_ngrams(text[a:b])}
            assert found & shared == shared, name


def test_the_checked_text_is_lm_evals_decontamination_query():
    boolq = {"question": "is it stable", "passage": "The passage.", "idx": 0, "label": 1}
    assert query_text("boolq", boolq) == "The passage."
    assert query_text("arc_easy", {"question": "Why?"}) == "Question: Why?\nAnswer:"
    assert query_text("mmlu_anatomy", {"question": "Q", "choices": ["x"]}) == "Q"
    rtp = {"prompt": {"text": "The meeting was"}, "challenging": False}
    assert query_text("realtoxicityprompts", rtp) == "The meeting was"
    unknown = {"id": "x-1", "premise": "A man sleeps.", "label": 0, "meta": {"a": "b"}}
    assert query_text("new_task", unknown) == "x-1 A man sleeps."
    assert is_evaluated("gsm8k", "test", ("validation", "test"))
    assert not is_evaluated("gsm8k", "train", ("validation", "test"))
    assert is_evaluated("realtoxicityprompts", "train", ("validation", "test"))


def test_remove_cuts_only_the_overlap_and_keeps_the_rest_intact():
    text = FILLER + PASSAGE + " " + FILLER
    start = text.index(PASSAGE)
    exact = Rules("remove", window_chars=0, min_piece_chars=0)
    assert exact.apply(text, [(start, start + len(PASSAGE))]) == FILLER + "\n " + FILLER
    gpt3 = Rules()  # 200 characters each side, pieces under 200 dropped
    pieces = gpt3.apply(text, [(start, start + len(PASSAGE))]).split("\n")
    assert pieces == [FILLER[: start - 200], FILLER[200 - 1 :]]
    assert gpt3.apply(PASSAGE, [(0, 10)]) is None  # nothing of 200 characters is left
    many = [(i * 1000, i * 1000 + 10) for i in range(11)]
    assert gpt3.apply("x" * 12_000, many) is None  # cut in more than 10 places
    assert gpt3.apply("x" * 12_000, many[:10]) is not None


def write_benchmarks(root, sets: dict[str, list[dict]]) -> None:
    for name, rows in sets.items():
        path = root / "benchmarks" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def corpus(tmp_path):
    """Evaluation sets and one shard: a page quoting a BoolQ passage, a forum post quoting a
    GSM8k question (train split: not an evaluation set), a clean page and a page holding
    both a test question and a passage."""
    write_benchmarks(
        tmp_path,
        {
            "boolq/validation": [{"question": "q", "passage": "Short.", "idx": 0, "label": 0}]
            + [{"question": "is it", "passage": PASSAGE, "idx": 1, "label": 1}],
            "gsm8k/test": [{"question": QUESTION, "answer": "17"}],
            "gsm8k/train": [{"question": FILLER, "answer": "none"}],
        },
    )
    texts = [FILLER + PASSAGE + " " + FILLER, QUESTION, FILLER, QUESTION + " " + PASSAGE]
    docs = [
        Document(f"d{i}", source, text, f"https://example.org/{i}")
        for i, (source, text) in enumerate(
            zip(["commoncrawl", "stackexchange", "c4", "wikipedia"], texts, strict=True)
        )
    ]
    path = tmp_path / "deduplicated.parquet"
    pq.write_table(documents_table(docs), path)
    return tmp_path, path


def run(root, path, out="out", **config):
    storage_root = DataRoot(root=str(root)).storage()
    stage = Decontaminated(benchmarks="benchmarks", **config)
    output = str(root / out)
    shard = file_shard(storage_root, str(path))
    manifest = run_stage(stage, [shard], output, storage_root, LocalExecutor(1), force=True)
    kept = pq.read_table(output).to_pylist()
    dropped = pq.read_table(f"{output}/_dropped").to_pylist()
    assert manifest.n_in == len(kept) + len(dropped)
    assert manifest.kept + sum(manifest.dropped.values()) == manifest.n_in
    return manifest, {r["id"]: r for r in kept}, {r["id"]: r for r in dropped}


def test_remove_edits_overlapping_documents_and_counts_by_benchmark_and_corpus(corpus):
    manifest, kept, dropped = run(*corpus, window_chars=0, min_piece_chars=0)
    assert kept["d0"]["text"] == FILLER + "\n " + FILLER
    assert kept["d0"]["benchmark_overlap"] == ["boolq/validation/1"]
    assert kept["d2"]["text"] == FILLER and kept["d2"]["benchmark_overlap"] == []
    assert dropped["d1"]["reason"] == "benchmark_overlap:gsm8k"  # nothing left of it
    assert dropped["d3"]["benchmark_overlap"] == ["boolq/validation/1", "gsm8k/test/0"]
    histograms = manifest.histograms
    assert histograms["overlap_by_benchmark"] == {"boolq": 2, "gsm8k": 2}
    assert histograms["overlap_by_corpus"] == {"commoncrawl": 1, "stackexchange": 1, "wikipedia": 1}
    assert histograms["overlap_by_benchmark_in_corpus"]["gsm8k in stackexchange"] == 1
    assert contaminated_items(manifest.summary) == {
        "boolq/validation": [1],
        "gsm8k/test": [0],
    }
    assert manifest.summary["left_out"] == ["gsm8k/train"]
    assert "1 evaluation items have fewer than 13 words" in manifest.summary["warning"]


def test_drop_writes_dropped_rows_with_the_benchmark_as_reason(corpus):
    manifest, kept, dropped = run(*corpus, policy="drop")
    assert set(kept) == {"d2"}
    assert dropped["d0"]["reason"] == "benchmark_overlap:boolq"
    assert dropped["d0"]["text"] == FILLER + PASSAGE + " " + FILLER
    assert manifest.dropped == {"benchmark_overlap:boolq": 2, "benchmark_overlap:gsm8k": 1}


def test_flag_keeps_every_text_and_annotates_it(corpus):
    manifest, kept, dropped = run(*corpus, policy="flag")
    assert not dropped
    assert kept["d0"]["text"] == FILLER + PASSAGE + " " + FILLER
    assert kept["d0"]["benchmark_overlap"] == ["boolq/validation/1"]
    assert manifest.histograms["overlap_outcome"] == {"flagged": 3}


def test_a_rerun_is_byte_identical(corpus):
    root, path = corpus
    run(root, path, "a")
    run(root, path, "b")
    files = sorted(p.relative_to(root / "a") for p in (root / "a").rglob("*") if p.is_file())
    assert len(files) == 3  # part, dropped part, manifest
    for name in files:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name


def test_without_evaluation_sets_everything_passes_and_the_summary_says_so(corpus):
    root, path = corpus
    (root / "benchmarks").rename(root / "elsewhere")
    with pytest.warns(NothingChecked, match="nothing was checked"):
        manifest, kept, dropped = run(root, path, policy="drop")
    assert len(kept) == 4 and not dropped
    assert manifest.summary["indexed_ngrams"] == 0
    assert "nothing was checked" in manifest.summary["warning"]


def test_an_empty_part_passes_through(corpus):
    root, _ = corpus
    empty = root / "empty.parquet"
    pq.write_table(documents_table([]), empty)
    manifest, kept, dropped = run(root, empty)
    assert manifest.n_in == 0 and not kept and not dropped


def test_a_broken_benchmark_row_is_an_error_naming_the_line(corpus):
    root, path = corpus
    write_benchmarks(root, {"boolq/validation": [{"question": "q", "idx": 0}]})
    with pytest.raises(BenchmarkError, match=r"validation.jsonl:1: boolq's checked text"):
        run(root, path)


def test_the_report_reads_back_through_lm_evals_own_reader(corpus, monkeypatch):
    root, path = corpus
    manifest, _, _ = run(root, path)
    directory = report_dir(str(root / "out"))
    storage = DataRoot(root=str(root)).storage()
    write_report(storage, directory, contaminated_items(manifest.summary), 13)
    monkeypatch.chdir(directory)
    docs = {("boolq", "validation"): ["Short.", PASSAGE], ("gsm8k", "test"): [QUESTION]}
    assert get_train_overlap(docs, directory, None) == {"boolq": {1}, "gsm8k": {0}}


def test_the_planted_check_fails_when_an_item_is_missed_or_a_near_miss_caught(corpus):
    root, path = corpus
    manifest, _, _ = run(root, path)
    page, near = "https://example.org/0", "https://example.org/2"
    caught = {"corpus": "crawl", "url": page, "item": "boolq/validation/1", "kind": "contaminated"}
    clean = {"corpus": "crawl", "url": near, "item": "boolq/validation/1", "kind": "near_miss"}
    storage, output = DataRoot(root=str(root)).storage(), str(root / "out")

    def problems(*truth: dict) -> str:
        result = planted_benchmarks(list(truth), storage, output, manifest.summary)
        assert result.passed == (result.metadata["problems"].value == "none")
        return result.metadata["problems"].value

    assert problems(caught, clean) == "none"
    assert "gsm8k/test/0 not caught" in problems(dict(caught, item="gsm8k/test/0"))
    assert "near miss caught as boolq/validation/1" in problems(dict(clean, url=page))
    assert "did not reach the stage" in problems(dict(caught, url="https://example.org/lost"))
    assert planted_benchmarks(None, storage, output, manifest.summary).passed


def test_the_data_card_shows_what_was_found_by_benchmark_and_corpus(corpus):
    manifest, _, _ = run(*corpus)
    card = build_card([StageOutput("decontaminated", "all", manifest)]).markdown
    assert "## Benchmark decontamination: decontaminated[all]" in card
    assert "policy `remove`; documents: dropped 2, spans_removed 1." in card
    assert "| boolq | 2 | 1 | 1 | 2 |" in card and "| gsm8k | 1 | 0 | 1 | 2 |" in card
    assert "| stackexchange | 1 |" in card
    assert "⚠ 1 evaluation items have fewer than 13 words" in card


def test_the_command_line_reads_relative_sets_and_writes_the_report(corpus):
    """`llamapipe stage decontaminated` run where the sets live, with a relative
    `--benchmarks`: the sets are found (not looked for under /) and lm-eval's report lands
    beside the partition, as the asset writes it."""
    root, path = corpus
    (root / "deduplicated").mkdir()
    path.rename(root / "deduplicated" / path.name)
    llamapipe = Path(sys.executable).parent / "llamapipe"
    args = ["stage", "decontaminated", "--benchmarks", "benchmarks", "--workers", "1"]
    result = subprocess.run(
        [llamapipe, *args, "--input", "deduplicated", "--output", "cli"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "decontaminated: in 4, kept 2, dropped 2" in result.stdout
    overlaps = json.loads((root / "cli.overlaps" / "overlaps.json").read_text())
    assert overlaps == {"boolq/validation": [1], "gsm8k/test": [0]}
