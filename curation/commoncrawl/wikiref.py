"""`cc_wikiref`: RedPajama's Wikipedia-reference classifier, with its corpus dedup fixed.

Positives are crawl pages whose URL a Wikipedia article cites in a `<ref>`; negatives are an
equal number of other crawl pages. A fastText supervised model learns to tell them apart, and
the crawl keeps the pages the classifier calls references (probability of "cited by
Wikipedia" at least 0.5, the paper's reading); RedPajama's 0.25 is a named option.

RedPajama's corpus "dedup" compared objects that never repeat and so removed nothing; here
positives are deduplicated by normalized URL and by text, negatives by text, and a text that is
a positive is never also a negative (a mirror of a cited page would otherwise be both).

Every text the model sees, in training and in the filter, goes through `classifier_line`:
lowercased (the training sets are small; case would split the vocabulary) with every run of
whitespace, newlines included, made one space (fastText reads one example per line).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.commoncrawl.langid import LANGUAGE_FIELDS
from curation.commoncrawl.perplexity import PERPLEXITY_FIELDS
from curation.core.documents import drop_rows, schema_with
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, setting
from curation.core.storage import Storage
from curation.sources.wikipedia import normalize_url

POSITIVE, NEGATIVE = "wiki", "cc"
_LABEL_PREFIX = "__label__"
WIKI_PROB_FIELD = pa.field("wiki_prob", pa.float32())
# P(wiki) at which a page counts as a reference: the classifier's own decision (the paper's
# reading), and RedPajama's lower value, a named option.
REFERENCE_THRESHOLD = 0.5
REDPAJAMA_THRESHOLD = 0.25

Example = tuple[str, str]  # (label, classifier line)


def classifier_line(text: str) -> str:
    """The one-line, lowercased form of a page the model trains on and scores. A literal
    `__label__` in a page would be read by fastText as a label, and NUL separates words for
    fastText but not for Python, so both are blanked out."""
    return " ".join(text.lower().replace(_LABEL_PREFIX, " ").replace("\0", " ").split())


def training_set(
    crawl_documents: Iterable[tuple[str | None, str]],
    cited: set[str],
    seed: int,
    max_negatives_ratio: float = 1.0,
) -> list[Example]:
    """Labelled examples from crawl pages `(url, text)` and the normalized cited URLs.

    Positives, in input order: the first page of each cited normalized URL, unless its text
    already is a positive. Negatives: `max_negatives_ratio` times as many (fewer if there are
    not enough) distinct texts of pages with an uncited URL, drawn by `random.Random(seed)`
    from their sorted list, so the draw depends only on the pages and the seed.
    """
    positives: dict[str, None] = {}
    seen_urls: set[str] = set()
    candidates: set[str] = set()
    for url, text in crawl_documents:
        line = classifier_line(text)
        key = normalize_url(url) if url else None
        if not line:
            continue
        if key in cited:
            if key not in seen_urls:
                seen_urls.add(key)
                positives.setdefault(line)
        else:
            candidates.add(line)
    pool = sorted(candidates.difference(positives))
    n_negatives = min(len(pool), round(max_negatives_ratio * len(positives)))
    negatives = random.Random(seed).sample(pool, n_negatives)
    return [(POSITIVE, line) for line in positives] + [(NEGATIVE, line) for line in negatives]


@dataclass(frozen=True)
class FastTextParams:
    """fastText supervised hyperparameters. 25 epochs, fastText's tutorial value: with fewer,
    a classifier trained on a few hundred pages leaves every probability near the class
    prior, and the 0.5 threshold keeps nearly everything. Word n-grams stay at 1: their
    hashed rows cannot be initialized through `pretrainedVectors` (see `_initial_vectors`)."""

    epoch: int = 25
    lr: float = 0.5
    dim: int = 32
    min_count: int = 2


@dataclass(frozen=True)
class ClassifierSettings(FastTextParams):
    """The classifier's training set and fastText run, and the floor of its held-out check."""

    seed: int = 0
    holdout_fraction: float = 0.2
    negatives_per_positive: float = 1.0
    min_auc: float = setting(
        0.6,
        help="the heldout_auc_above_floor check's floor; the sample's cited pages are a "
        "random draw",
    )


@dataclass(frozen=True)
class ClassifierReport:
    """Held-out quality of a trained classifier, and where it was saved."""

    model_path: str
    train_positives: int
    train_negatives: int
    heldout_positives: int
    heldout_negatives: int
    precision: float  # at probability >= 0.5
    recall: float
    auc: float
    heldout_positive_scores: np.ndarray = field(repr=False)
    heldout_negative_scores: np.ndarray = field(repr=False)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the probability that a random positive scores
    above a random negative, a tie counting one half (tied scores share their average rank).
    NaN when either class is absent."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based ranks
    rank_sum = average_rank[inverse][labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Precision and recall of `scores >= threshold`; 0.0 where undefined (nothing predicted
    or no positives), so a report stays JSON-serializable."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    true_positives = int((predicted & labels).sum())
    precision = true_positives / predicted.sum() if predicted.any() else 0.0
    recall = true_positives / labels.sum() if labels.any() else 0.0
    return float(precision), float(recall)


def in_holdout(line: str, fraction: float) -> bool:
    """Split by a hash of the text: deterministic, independent of example order, and copies
    of one text always land on the same side."""
    digest = hashlib.sha1(line.encode()).digest()[:8]
    return int.from_bytes(digest, "little") < fraction * 2**64


def train_classifier(
    examples: Sequence[Example],
    out_path: str,
    seed: int,
    holdout_fraction: float = 0.2,
    params: FastTextParams = FastTextParams(),
) -> ClassifierReport:
    """Train on the examples outside the held-out split, evaluate on the rest, save the model
    to the local path `out_path` (fastText `.bin`, not quantized).

    One thread and a fixed seed make training deterministic (fastText's Hogwild updates are
    not, with more threads); the training file is shuffled with the seed, since fastText reads
    it in order and positives-then-negatives would bias the last updates of each epoch.
    """
    train = [e for e in examples if not in_holdout(e[1], holdout_fraction)]
    heldout = [e for e in examples if in_holdout(e[1], holdout_fraction)]
    random.Random(seed).shuffle(train)
    model = _fit(train, seed, params)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    model.save_model(tmp)
    os.replace(tmp, out_path)

    labels = np.array([label == POSITIVE for label, _ in heldout], dtype=bool)
    scores = positive_probabilities(model, [line for _, line in heldout])
    precision, recall = precision_recall(labels, scores, REFERENCE_THRESHOLD)
    n_train_pos = sum(label == POSITIVE for label, _ in train)
    return ClassifierReport(
        model_path=out_path,
        train_positives=n_train_pos,
        train_negatives=len(train) - n_train_pos,
        heldout_positives=int(labels.sum()),
        heldout_negatives=int((~labels).sum()),
        precision=precision,
        recall=recall,
        auc=roc_auc(labels, scores),
        heldout_positive_scores=scores[labels],
        heldout_negative_scores=scores[~labels],
    )


def _fit(train: Sequence[Example], seed: int, params: FastTextParams):
    import fasttext

    with tempfile.TemporaryDirectory() as tmp:
        path, vectors = os.path.join(tmp, "train.txt"), os.path.join(tmp, "init.vec")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{_LABEL_PREFIX}{label} {line}\n" for label, line in train)
        _initial_vectors([line for _, line in train], params, seed, vectors)
        return fasttext.train_supervised(
            input=path,
            pretrainedVectors=vectors,
            epoch=params.epoch,
            lr=params.lr,
            dim=params.dim,
            minCount=params.min_count,
            wordNgrams=1,
            thread=1,
            seed=seed,
            verbose=0,
        )


def _initial_vectors(lines: Sequence[str], params: FastTextParams, seed: int, path: str) -> None:
    """Write the initial input vectors of every word fastText will train.

    fasttext-numpy2 initializes only the first tenth of the input matrix when it trains with
    fewer than 10 threads (`DenseMatrix::uniform` gives each thread one tenth) and leaves the
    rest as whatever memory held: NaN, or weights that differ from run to run. Vectors given
    as `pretrainedVectors` overwrite every row, so the vocabulary fastText would build (words
    seen `min_count` times, plus its end-of-line token `</s>`) gets fastText's intended
    initialization, uniform in +-1/dim, drawn with the seed.
    """
    counts = Counter(word for line in lines for word in line.split())
    words = ["</s>", *sorted(w for w, n in counts.items() if n >= params.min_count)]
    bound = 1.0 / params.dim
    rng = np.random.default_rng(seed)
    vectors = rng.uniform(-bound, bound, (len(words), params.dim)).astype(np.float32)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{len(words)} {params.dim}\n")
        for word, vector in zip(words, vectors, strict=True):
            f.write(f"{word} {' '.join(map(repr, vector.tolist()))}\n")


def positive_probabilities(model, lines: Sequence[str]) -> np.ndarray:
    """P(wiki) for each classifier line (already one line each)."""
    labels, probs = model.predict(list(lines), k=-1)
    positive = f"{_LABEL_PREFIX}{POSITIVE}"
    scores = [
        dict(zip(ls, ps, strict=True)).get(positive, 0.0)
        for ls, ps in zip(labels, probs, strict=True)
    ]
    # fastText's softmax can return 1.00001: keep probabilities in [0, 1].
    return np.clip(np.array(scores, dtype=np.float32), 0.0, 1.0)


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@cache
def load_classifier(path: str, sha256: str):
    """The model at `path`, cached by path and content digest (the cache key only), so a model
    retrained in place is loaded again."""
    import fasttext

    return fasttext.load_model(path)


def decile(p: float) -> str:
    """The histogram bin of a probability: `0.0` for [0, 0.1), ..., `0.9` for [0.9, 1]."""
    return f"{min(int(p * 10), 9) / 10:.1f}"


@dataclass(frozen=True)
class WikiRefFilter(Stage):
    """Annotate `wiki_prob`; keep documents with `wiki_prob >= threshold`.

    The default threshold, 0.5, keeps what the classifier calls a reference (the paper
    discards pages "not classified as references"); RedPajama kept `wiki_prob >= 0.25`
    (`REDPAJAMA_THRESHOLD`).

    `model` is the classifier `train_classifier` saved: a path relative to the data root (as
    the assets pass it, so manifests do not depend on where the root is) or absolute. Its
    content digest is part of `config()`, so retraining it in place recomputes the stage:
    `model_sha256` when given, else computed from `model` (then an absolute path).
    """

    name: ClassVar[str] = "cc_wikiref"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = schema_with(
        [*LANGUAGE_FIELDS, *PERPLEXITY_FIELDS, WIKI_PROB_FIELD]
    )
    input_schema: ClassVar[pa.Schema] = schema_with([*LANGUAGE_FIELDS, *PERPLEXITY_FIELDS])

    model: str
    threshold: float = REFERENCE_THRESHOLD
    model_sha256: str = ""

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model_sha256": self.model_sha256 or file_sha256(self.model)}

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
        lines = [classifier_line(t) for t in table.column("text").to_pylist()]
        model_file = storage.local_copy(storage.path(self.model))
        model = load_classifier(model_file, self.config()["model_sha256"])
        probs = positive_probabilities(model, lines)
        table = table.append_column(WIKI_PROB_FIELD, pa.array(probs, pa.float32()))
        keep = pc.greater_equal(table.column(WIKI_PROB_FIELD.name), self.threshold)
        low = table.filter(pc.invert(keep))
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(keep),
            dropped=drop_rows(low, self.name, ["below_wikiref_threshold"] * low.num_rows),
            histograms={"wiki_prob_decile": Counter(decile(p) for p in probs.tolist())},
        )


def cited_url_set(storage: Storage, articles: str) -> set[str]:
    """Normalized URLs cited in any `<ref>` of a `wikipedia` partition's articles."""
    table = pq.read_table(articles, filesystem=storage.fs, columns=["meta"])
    return {
        normalize_url(url)
        for meta in table.column("meta").to_pylist()
        for url in json.loads(meta).get("cited_urls", [])
    }


def crawl_pages(storage: Storage, documents: str) -> list[tuple[str | None, str]]:
    """(url, text) of every document of a partition directory, in partition order."""
    table = pq.read_table(documents, filesystem=storage.fs, columns=["url", "text"])
    return list(zip(table.column("url").to_pylist(), table.column("text").to_pylist(), strict=True))
