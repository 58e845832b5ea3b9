"""The Wikipedia-reference classifier: its corpus, its metrics, its training, its filter."""

import math
import random

import fasttext
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from archives import annotated_shard

from curation.commoncrawl.wikiref import (
    NEGATIVE,
    POSITIVE,
    WikiRefFilter,
    classifier_line,
    positive_probabilities,
    precision_recall,
    roc_auc,
    train_classifier,
    training_set,
)
from curation.core.runner import run_stage
from curation.core.stage import ShardInput

WIKI_WORDS = ["history", "century", "empire", "river", "species", "treaty", "dynasty"]
SHOP_WORDS = ["cheap", "price", "discount", "cart", "shipping", "coupon", "checkout"]
COMMON = ["the", "of", "and", "a", "in", "to", "is", "was", "for", "with"]


def text(rng: random.Random, topic: list[str]) -> str:
    lines = [" ".join(rng.choices(topic + COMMON, k=12)) for _ in range(3)]
    return "\n".join(lines).capitalize()


def crawl(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` encyclopedic pages on wiki.example and `n` shop pages on shop.example."""
    rng = random.Random(seed)
    wiki = [(f"https://wiki.example/{i}", text(rng, WIKI_WORDS)) for i in range(n)]
    shop = [(f"https://shop.example/{i}", text(rng, SHOP_WORDS)) for i in range(n)]
    return wiki + shop


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    pages = crawl(150)
    cited = {url for url, _ in pages if url.startswith("https://wiki.example")}
    path = str(tmp_path_factory.mktemp("wikiref") / "wikiref.bin")
    train_classifier(training_set(pages, cited, seed=0), path, seed=0)
    return path


def test_classifier_lines_are_one_lowercase_line_without_label_markers():
    assert classifier_line("Title\n\nA __LABEL__wiki  body\x00text.") == "title a wiki body text."


def test_positives_are_deduplicated_by_normalized_url_and_by_text():
    body, other = "A cited page about rivers.", "Another cited page, about dynasties."
    pages = [
        ("https://www.wiki.example/river/", body),
        ("https://wiki.example/river#history", "The same URL, captured again later."),
        ("https://wiki.example/copy", body.upper()),  # another cited URL, the same text
        ("https://wiki.example/dynasty", other),
        ("https://mirror.example/river", body),  # uncited mirror: never a negative
        *[(f"https://shop.example/{i}", f"Shop page {i}.") for i in range(10)],
    ]
    cited = {
        "https://wiki.example/river",
        "https://wiki.example/copy",
        "https://wiki.example/dynasty",
    }
    examples = training_set(pages, cited, seed=0)
    positives = [line for label, line in examples if label == POSITIVE]
    negatives = [line for label, line in examples if label == NEGATIVE]
    assert positives == [classifier_line(body), classifier_line(other)]
    assert len(negatives) == 2 and all(line.startswith("shop page") for line in negatives)


def test_negatives_are_deterministic_distinct_and_as_many_as_asked():
    pages = crawl(20) + [("https://shop.example/again", crawl(20)[25][1])]
    cited = {f"https://wiki.example/{i}" for i in range(5)}
    examples = training_set(pages, cited, seed=7)
    negatives = [line for label, line in examples if label == NEGATIVE]
    assert len(negatives) == 5 == len(set(negatives))
    shuffled = random.Random(1).sample(pages, len(pages))
    assert sorted(training_set(shuffled, cited, seed=7)) == sorted(examples)
    assert training_set(pages, cited, seed=8) != examples
    doubled = training_set(pages, cited, seed=7, max_negatives_ratio=2.0)
    assert sum(label == NEGATIVE for label, _ in doubled) == 10


def test_roc_auc_against_a_hand_computed_example_with_ties():
    # positives 0.9, 0.5, 0.1 against negatives 0.9, 0.2: of the six pairs, (0.9, 0.2) and
    # (0.5, 0.2) are won, (0.9, 0.9) is tied (one half), the rest lost: 2.5 / 6.
    labels = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert roc_auc(labels, np.array([0.9, 0.9, 0.5, 0.2, 0.1])) == pytest.approx(2.5 / 6)
    assert roc_auc(labels, np.array([0.9, 0.1, 0.8, 0.2, 0.7])) == 1.0
    assert roc_auc(labels, np.array([0.1, 0.9, 0.2, 0.8, 0.3])) == 0.0
    assert roc_auc(labels, np.full(5, 0.4)) == 0.5
    assert math.isnan(roc_auc(np.ones(3, dtype=bool), np.array([0.1, 0.2, 0.3])))


def test_precision_and_recall_at_a_threshold():
    labels = np.array([1, 1, 1, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    assert precision_recall(labels, scores, 0.5) == pytest.approx((2 / 3, 2 / 3))
    assert precision_recall(labels, scores, 0.95) == (0.0, 0.0)


def test_a_separable_corpus_gives_a_held_out_auc_above_0_9_and_identical_retraining(tmp_path):
    pages = crawl(150)
    cited = {url for url, _ in pages if url.startswith("https://wiki.example")}
    examples = training_set(pages, cited, seed=0)
    first = train_classifier(examples, str(tmp_path / "a.bin"), seed=0)
    second = train_classifier(examples, str(tmp_path / "b.bin"), seed=0)
    assert first.auc > 0.9 and first.heldout_positives > 10 and first.heldout_negatives > 10
    assert first.train_positives + first.heldout_positives == 150
    lines = [line for _, line in examples]
    a, b = (fasttext.load_model(str(tmp_path / n)) for n in ("a.bin", "b.bin"))
    assert np.array_equal(positive_probabilities(a, lines), positive_probabilities(b, lines))
    assert np.array_equal(first.heldout_positive_scores, second.heldout_positive_scores)


def shard(tmp_path, texts: list[str]) -> ShardInput:
    upstream = pa.schema([f for f in WikiRefFilter.output_schema if f.name != "wiki_prob"])
    return annotated_shard(tmp_path / "ppl.parquet", texts, upstream)


def test_the_filter_keeps_exactly_the_pages_at_or_above_the_threshold(
    storage, tmp_path, model_path
):
    texts = [t for _, t in crawl(10, seed=3)]
    probs = positive_probabilities(
        fasttext.load_model(model_path), [classifier_line(t) for t in texts]
    )
    threshold = float(np.sort(probs)[len(probs) // 2])  # a threshold some pages sit exactly on
    out = tmp_path / "out"
    stage = WikiRefFilter(model=model_path, threshold=threshold)
    manifest = run_stage(stage, [shard(tmp_path, texts)], str(out), storage)
    kept, dropped = pq.read_table(out).to_pylist(), pq.read_table(out / "_dropped").to_pylist()
    assert sorted(r["text"] for r in kept) == sorted(
        t for t, p in zip(texts, probs, strict=True) if p >= threshold
    )
    assert all(r["reason"] == "below_wikiref_threshold" for r in dropped)
    assert all(r["wiki_prob"] < threshold for r in dropped) and len(dropped) > 0
    assert sum(manifest.histograms["wiki_prob_decile"].values()) == len(texts)
    assert pq.read_table(out).schema.field("wiki_prob").type == pa.float32()
    assert len(manifest.config["model_sha256"]) == 64
