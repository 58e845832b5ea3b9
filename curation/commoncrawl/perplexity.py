"""`cc_perplexity`: CCNet's KenLM perplexity and head/middle/tail buckets per language.

As CCNet's `mine.py` ran it (`scoring: ccnet`, the default): the whole document goes through
CCNet's `normalize` (which removes newlines, so the document is one line), is cut into pieces
by the language's SentencePiece model, and is scored once by its KenLM model, `<s>` and `</s>`
included:

    perplexity = 10 ** (-log10 p(document) / (n_pieces + 1)),   rounded to 0.1.

`scoring: lines` is this project's earlier reading: every non-empty line normalized and scored
on its own, the log-probabilities and lengths summed over the lines. `max_chars` cuts each
scored unit (the document, or each line) to its first characters; 0, the default, scores
everything, as CCNet did.

Buckets split each language at its own cutoffs (perplexity_cutoffs.py): head < p30
<= middle < p60 <= tail. A document whose language is not scored, or has no cutoffs, is in
bucket `all`. A document with nothing to score (only control characters) is infinitely
perplexing, so tail: CCNet would have left it unscored in `all`, which keeps it.

Scoring is batched per shard and language: one SentencePiece call for every unit, one KenLM
`score` per unit, numpy sums per document. Scores the cutoffs step already computed for a
shard (same input bytes, same models and settings) are read back instead of computed again:
each document is scored once.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import kenlm
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sentencepiece as spm

from curation.commoncrawl.langid import LANGUAGE_FIELDS
from curation.commoncrawl.normalize import normalize
from curation.commoncrawl.perplexity_models import model_files
from curation.core.arrays import load_array, save_array
from curation.core.documents import drop_rows, schema_with
from curation.core.manifest import fingerprint
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, state_field
from curation.core.storage import Storage

INPUT_SCHEMA = schema_with(LANGUAGE_FIELDS)
PERPLEXITY_FIELDS = [pa.field("perplexity", pa.float32()), pa.field("bucket", pa.string())]
UNBUCKETED = "all"
SCORING_MODES = ("ccnet", "lines")


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


def scoring_units(
    texts: Sequence[str], scoring: str, max_chars: int = 0
) -> tuple[np.ndarray, list[str]]:
    """The normalized strings KenLM scores, and the index of the text each came from: one per
    text (`ccnet`) or one per non-empty line (`lines`). Empty units are left out."""
    cut = (lambda s: s[:max_chars]) if max_chars else (lambda s: s)
    owners: list[int] = []
    units: list[str] = []
    for i, text in enumerate(texts):
        parts = [text] if scoring == "ccnet" else text.splitlines()
        for part in parts:
            if normalized := normalize(cut(part)):
                owners.append(i)
                units.append(normalized)
    return np.array(owners, dtype=np.int64), units


class DocumentScorer:
    """The perplexity of documents under one language's SentencePiece + KenLM models."""

    def __init__(
        self,
        kenlm_path: str | os.PathLike,
        sp_path: str | os.PathLike,
        scoring: str = "ccnet",
        max_chars: int = 0,
    ):
        if scoring not in SCORING_MODES:
            raise ValueError(f"scoring must be one of {SCORING_MODES}, got {scoring!r}")
        self.model = load_kenlm(os.fspath(kenlm_path))
        self.tokenizer = load_tokenizer(os.fspath(sp_path))
        self.scoring, self.max_chars = scoring, max_chars

    @classmethod
    def for_language(
        cls, models_dir: str, language: str, scoring: str = "ccnet", max_chars: int = 0
    ) -> DocumentScorer:
        files = model_files(models_dir, language)
        return cls(files.kenlm, files.tokenizer, scoring, max_chars)

    def perplexity(self, text: str) -> float:
        return float(self.perplexities([text])[0])

    def perplexities(self, texts: Sequence[str]) -> np.ndarray:
        """One perplexity per text; a text with nothing to score gets inf."""
        owners, units = scoring_units(texts, self.scoring, self.max_chars)
        pieces = [" ".join(p) for p in self.tokenizer.encode(units, out_type=str)]
        log10 = np.fromiter((self.model.score(p) for p in pieces), np.float64, len(pieces))
        # CCNet counts the whitespace-separated tokens of the piece string, plus </s>.
        lengths = np.fromiter((len(p.split()) + 1 for p in pieces), np.float64, len(pieces))
        total_log10 = np.bincount(owners, weights=log10, minlength=len(texts))
        total_length = np.bincount(owners, weights=lengths, minlength=len(texts))
        with np.errstate(divide="ignore", invalid="ignore"):
            ppl = np.where(total_length > 0, 10.0 ** (-total_log10 / total_length), np.inf)
        return np.array([round(value, 1) for value in ppl.tolist()], dtype=np.float64)


def available_languages(storage: Storage, models_dir: str) -> list[str]:
    """Languages with both model files under `models_dir` (a path in `storage`)."""
    languages = map(posixpath.basename, storage.list_dirs(models_dir))
    return sorted(
        language
        for language in languages
        if all(map(storage.exists, _model_paths(models_dir, language)))
    )


def _model_paths(models_dir: str, language: str) -> tuple[str, str]:
    files = model_files(models_dir, language)
    return files.tokenizer.as_posix(), files.kenlm.as_posix()


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
    """Annotate `perplexity` and `bucket`; keep `keep_buckets` (and bucket `all` when
    `keep_unmodelled`).

    `languages` are the scored languages, each of which must have models under `models_dir`
    (a path relative to the data root, or absolute); () scores every language that has them.
    The runner fingerprints config, not files: pass `models_fingerprint` (see
    `models_fingerprint()`) so retrained models rerun the stage. `scores_dir` is where the
    cutoffs step left the scores of the shards it sampled; it is not configuration (reused
    scores equal computed ones), so it is not fingerprinted.
    """

    name: ClassVar[str] = "cc_perplexity"
    version: ClassVar[str] = "2"
    output_schema: ClassVar[pa.Schema] = schema_with([*LANGUAGE_FIELDS, *PERPLEXITY_FIELDS])
    input_schema: ClassVar[pa.Schema] = INPUT_SCHEMA

    models_dir: str
    cutoffs: dict[str, list[float]] = field(default_factory=dict)
    languages: tuple[str, ...] = ()
    keep_buckets: tuple[str, ...] = ("head", "middle")
    keep_unmodelled: bool = True
    scoring: str = "ccnet"  # one of SCORING_MODES
    max_chars: int = 0
    models_fingerprint: str = ""
    scores_dir: str = state_field()

    def __post_init__(self) -> None:
        if self.scoring not in SCORING_MODES:
            raise ValueError(f"scoring must be one of {SCORING_MODES}, got {self.scoring!r}")

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage, INPUT_SCHEMA.names)
        languages = table.column("language").to_pylist()
        scores = self.shard_scores(shard, storage, table)
        buckets = [
            bucket(score, self.cutoffs[lang]) if lang in self.cutoffs else UNBUCKETED
            for lang, score in zip(languages, scores.tolist(), strict=True)
        ]
        perplexity = pa.array(scores.astype(np.float32), mask=np.isnan(scores))
        table = table.append_column(PERPLEXITY_FIELDS[0], perplexity)
        table = table.append_column(PERPLEXITY_FIELDS[1], pa.array(buckets, pa.string()))
        reasons = [self._drop_reason(b, s) for b, s in zip(buckets, scores.tolist(), strict=True)]
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

    def scored_languages(self, storage: Storage) -> tuple[str, ...]:
        return self.languages or tuple(available_languages(storage, storage.path(self.models_dir)))

    def shard_scores(self, shard: ShardInput, storage: Storage, table: pa.Table) -> np.ndarray:
        """Perplexity per row (NaN for languages not scored): read back when the cutoffs step
        scored this shard already, computed otherwise."""
        saved = self.scores_path(shard)
        if saved and storage.exists(saved):
            return load_array(storage, saved)
        return self.score_table(table, storage)

    def score_table(self, table: pa.Table, storage: Storage) -> np.ndarray:
        languages = table.column("language").to_pylist()
        texts = table.column("text")
        scores = np.full(table.num_rows, np.nan)
        models = storage.path(self.models_dir)
        for language in sorted(set(languages) & set(self.scored_languages(storage))):
            rows = np.array([i for i, lang in enumerate(languages) if lang == language])
            tokenizer, kenlm_model = map(storage.local_copy, _model_paths(models, language))
            scorer = DocumentScorer(kenlm_model, tokenizer, self.scoring, self.max_chars)
            scores[rows] = scorer.perplexities(texts.take(rows).to_pylist())
        return scores

    def scores_path(self, shard: ShardInput) -> str:
        """Where this shard's scores are kept: named by the input's bytes and every setting
        that changes a score, so a file is never read for another input or another model."""
        if not self.scores_dir:
            return ""
        key = fingerprint(
            {
                "input": shard.fingerprint,
                "languages": list(self.languages),
                "scoring": self.scoring,
                "max_chars": self.max_chars,
                "models": self.models_fingerprint,
            }
        )
        return posixpath.join(self.scores_dir, f"{shard.name}.{key[:16]}.npy")

    def save_scores(self, shard: ShardInput, storage: Storage) -> None:
        """Score a shard for the cutoffs and keep its scores for the stage to read back; a
        shard already scored (a resumed run) is left as it is."""
        path = self.scores_path(shard)
        if not storage.exists(path):
            table = read_shard(self, shard, storage, ["text", "language"])
            save_array(storage, path, self.score_table(table, storage))

    def _drop_reason(self, bucket_name: str, score: float) -> str | None:
        if bucket_name == UNBUCKETED:
            if self.keep_unmodelled:
                return None
            return "no_language_model" if np.isnan(score) else "no_cutoffs"
        return None if bucket_name in self.keep_buckets else f"{bucket_name}_bucket"


def models_fingerprint(storage: Storage, models_dir: str, languages: Sequence[str]) -> str:
    """A content hash of the models of `languages`, for `Perplexity.models_fingerprint`."""
    digest = hashlib.sha256()
    for language in sorted(languages):
        for path in _model_paths(models_dir, language):
            digest.update(f"{language}/{posixpath.basename(path)}\0".encode())
            for chunk in storage.chunks(path):
                digest.update(chunk)
    return digest.hexdigest()
