"""`cc_perplexity`: CCNet's KenLM perplexity, per-language cutoffs and head/middle/tail buckets.

A document's perplexity is CCNet's: every non-empty `lm_normalize`d line is tokenized with the
language's SentencePiece model and scored by its KenLM model (`score` includes `</s>`), and

    perplexity = 10 ** (-sum(log10 p) / sum(n_pieces + 1))   over the lines, rounded to 0.1.

Buckets split each language at its own percentiles (30th and 60th, computed by the cutoffs
asset over the crawl with `perplexities` + `compute_cutoffs`): head < p30 <= middle < p60 <=
tail. Languages without cutoffs have no model: bucket `all`.

Scoring is batched per shard and language: one SentencePiece call for all lines, then one
`score` call per line, and numpy sums per document.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import kenlm
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sentencepiece as spm

from curation.documents import drop_rows, schema_with
from curation.langid import LANGUAGE_FIELDS
from curation.lm_train import model_files
from curation.normalize import lm_normalize_lines
from curation.stage import ShardInput, ShardOutput, Stage
from curation.storage import Storage

INPUT_SCHEMA = schema_with(LANGUAGE_FIELDS)
PERPLEXITY_FIELDS = [pa.field("perplexity", pa.float32()), pa.field("bucket", pa.string())]
UNMODELLED_BUCKET = "all"
DEFAULT_PERCENTILES = (30, 60)
# Only the first 10,000 characters of a line are scored: a line's perplexity is an average
# over its pieces, which a long prefix estimates well, and a 2 MB line without newlines then
# costs milliseconds instead of seconds of Python normalization and SentencePiece encoding.
MAX_CHARS_PER_LINE = 10_000


@cache
def load_kenlm(path: str) -> kenlm.Model:
    """Once per process and path (a model is loaded, not re-read, for every shard)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"KenLM model not found: {path}")
    return kenlm.Model(path)


@cache
def load_tokenizer(path: str) -> spm.SentencePieceProcessor:
    if not os.path.exists(path):
        raise FileNotFoundError(f"SentencePiece model not found: {path}")
    return spm.SentencePieceProcessor(model_file=path)


def scored_lines(texts: Sequence[str], max_chars_per_line: int) -> tuple[np.ndarray, list[str]]:
    """The non-empty normalized lines of every text, and the index of the text each came from."""
    owners: list[int] = []
    lines: list[str] = []
    for i, text in enumerate(texts):
        normalized = lm_normalize_lines(text, max_chars_per_line)
        owners.extend([i] * len(normalized))
        lines.extend(normalized)
    return np.array(owners, dtype=np.int64), lines


class DocumentScorer:
    """The perplexity of documents under one language's SentencePiece + KenLM models."""

    def __init__(
        self,
        kenlm_path: str | os.PathLike,
        sp_path: str | os.PathLike,
        max_chars_per_line: int = MAX_CHARS_PER_LINE,
    ):
        self.model = load_kenlm(os.fspath(kenlm_path))
        self.tokenizer = load_tokenizer(os.fspath(sp_path))
        self.max_chars_per_line = max_chars_per_line

    @classmethod
    def for_language(
        cls, models_dir: str, language: str, max_chars_per_line: int = MAX_CHARS_PER_LINE
    ) -> DocumentScorer:
        files = model_files(models_dir, language)
        return cls(files.kenlm, files.tokenizer, max_chars_per_line)

    def perplexity(self, text: str) -> float:
        return float(self.perplexities([text])[0])

    def perplexities(self, texts: Sequence[str]) -> np.ndarray:
        """One perplexity per text; a text without a scorable line gets inf (bucket tail)."""
        owners, lines = scored_lines(texts, self.max_chars_per_line)
        pieces = self.tokenizer.encode(lines, out_type=str)
        log10 = np.fromiter((self.model.score(" ".join(p)) for p in pieces), np.float64)
        lengths = np.fromiter((len(p) + 1 for p in pieces), np.float64)  # + 1: </s>
        total_log10 = np.bincount(owners, weights=log10, minlength=len(texts))
        total_length = np.bincount(owners, weights=lengths, minlength=len(texts))
        with np.errstate(divide="ignore", invalid="ignore"):
            ppl = np.where(total_length > 0, 10.0 ** (-total_log10 / total_length), np.inf)
        return np.round(ppl, 1)


def available_languages(models_dir: str) -> list[str]:
    """Languages with both model files under `models_dir`."""
    if not os.path.isdir(models_dir):
        return []
    return sorted(
        lang
        for lang in os.listdir(models_dir)
        if model_files(models_dir, lang).tokenizer.exists()
        and model_files(models_dir, lang).kenlm.exists()
    )


def perplexities(
    table: pa.Table, models_dir: str, max_chars_per_line: int = MAX_CHARS_PER_LINE
) -> dict[str, np.ndarray]:
    """Perplexity of every document of `table` (with `language` and `text` columns) whose
    language has a model, grouped by language: the input of `compute_cutoffs`."""
    languages = table.column("language")
    result = {}
    for language in available_languages(models_dir):
        texts = table.filter(pc.equal(languages, language)).column("text").to_pylist()
        if texts:
            scorer = DocumentScorer.for_language(models_dir, language, max_chars_per_line)
            result[language] = scorer.perplexities(texts)
    return result


def compute_cutoffs(
    perplexities_by_language: Mapping[str, Sequence[float]],
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> dict[str, tuple[float, float]]:
    """Per-language perplexity percentiles (p30, p60 by default). Unscorable documents (inf)
    are left out; a language with no finite perplexity gets no cutoffs."""
    cutoffs = {}
    for language, values in sorted(perplexities_by_language.items()):
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = np.percentile(finite, percentiles)
            cutoffs[language] = (float(low), float(high))
    return cutoffs


def bucket(perplexity: float, cutoffs: Sequence[float]) -> str:
    """head < p30 <= middle < p60 <= tail (NaN and inf: tail)."""
    low, high = cutoffs
    if perplexity < low:
        return "head"
    if perplexity < high:
        return "middle"
    return "tail"


@dataclass(frozen=True)
class Perplexity(Stage):
    """Annotate `perplexity` and `bucket`; keep `keep_buckets` (and unmodelled languages when
    `keep_unmodelled`).

    Which languages are modelled is decided by `cutoffs` alone (the asset passes cutoffs for
    every language it trained), so the output is a function of the config; a language in
    `cutoffs` whose model files are missing is an error, not a silent `all`. The runner
    fingerprints config, not files: pass `models_fingerprint` (see `models_fingerprint()`)
    so retrained models rerun the stage.
    """

    name: ClassVar[str] = "cc_perplexity"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = schema_with([*LANGUAGE_FIELDS, *PERPLEXITY_FIELDS])
    input_schema: ClassVar[pa.Schema] = INPUT_SCHEMA

    models_dir: str
    cutoffs: dict[str, list[float]] = field(default_factory=dict)
    keep_buckets: tuple[str, ...] = ("head", "middle")
    keep_unmodelled: bool = True
    max_chars_per_line: int = MAX_CHARS_PER_LINE
    models_fingerprint: str = ""

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = pq.read_table(shard.path, filesystem=storage.fs, columns=INPUT_SCHEMA.names)
        languages = table.column("language").to_pylist()
        scores = self._score(table, languages)
        modelled = np.array([lang in self.cutoffs for lang in languages], dtype=bool)
        buckets = [
            bucket(score, self.cutoffs[lang]) if lang in self.cutoffs else UNMODELLED_BUCKET
            for lang, score in zip(languages, scores, strict=True)
        ]
        table = table.append_column(
            PERPLEXITY_FIELDS[0], pa.array(scores.astype(np.float32), mask=~modelled)
        )
        table = table.append_column(PERPLEXITY_FIELDS[1], pa.array(buckets, pa.string()))
        reasons = [self._drop_reason(b) for b in buckets]
        keep = pa.array([r is None for r in reasons], pa.bool_())
        dropped = table.filter(pc.invert(keep))
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(keep),
            dropped=drop_rows(dropped, self.name, [r for r in reasons if r is not None]),
            histograms={
                "bucket": Counter(f"{lang}/{b}" for lang, b in zip(languages, buckets, strict=True))
            },
        )

    def _score(self, table: pa.Table, languages: list[str]) -> np.ndarray:
        """Perplexity per row; NaN for languages without a model."""
        scores = np.full(table.num_rows, np.nan)
        texts = table.column("text")
        for language in sorted(set(languages) & set(self.cutoffs)):
            rows = np.array([i for i, lang in enumerate(languages) if lang == language])
            scorer = DocumentScorer.for_language(self.models_dir, language, self.max_chars_per_line)
            scores[rows] = scorer.perplexities(texts.take(rows).to_pylist())
        return scores

    def _drop_reason(self, bucket_name: str) -> str | None:
        if bucket_name == UNMODELLED_BUCKET:
            return None if self.keep_unmodelled else "no_language_model"
        return None if bucket_name in self.keep_buckets else f"{bucket_name}_bucket"


def models_fingerprint(models_dir: str, languages: Sequence[str]) -> str:
    """A content hash of the models of `languages`, for `Perplexity.models_fingerprint`."""
    digest = hashlib.sha256()
    for language in sorted(languages):
        files = model_files(models_dir, language)
        for path in (files.tokenizer, files.kenlm):
            digest.update(f"{language}/{path.name}\0".encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def crawl_cutoffs(
    storage: Storage,
    documents: str,
    models_dir: str,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    overrides: Mapping[str, Sequence[float]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Cutoffs for a crawl from its language-identified documents (a partition directory),
    with configured `overrides` winning, and the perplexities they came from."""
    table = pq.read_table(documents, filesystem=storage.fs, columns=["text", "language"])
    scores = perplexities(table, models_dir)
    computed = {lang: list(c) for lang, c in compute_cutoffs(scores, percentiles).items()}
    return computed | {lang: list(c) for lang, c in (overrides or {}).items()}, scores
