"""Perplexity cutoffs: the per-language percentiles that split head, middle and tail.

CCNet computed its cutoffs once, on a sample of a crawl's documents, and shipped them as
`cutoff.csv` (one row per percentile 0-100, one column per language); `mine.py` buckets at the
30th and 60th. Here the cutoffs come from a sample of the crawl being processed, scored with
the same models the stage uses: whole shards, in a fixed pseudo-random order, until the sample
holds `sample_documents` rows (CCNet kept the perplexities of at most 1,000,000 documents for
its statistics). The sampled shards' scores are kept beside the cutoffs and `cc_perplexity`
reads them back, so no document is scored twice. Cutoffs can instead come from CCNet's own
`cutoff.csv` (a path or URL) or a configured table, which win over computed ones language by
language.

Layout of a cutoffs directory:

    <dir>/cutoffs.json   language -> [low, high]
    <dir>/scorer.json    the scoring settings (models, languages, scoring, max_chars): the
                         stage that buckets with these cutoffs scores exactly as they were made
    <dir>/scores/        per sampled shard, its perplexities (perplexity.Perplexity.scores_path)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.commoncrawl.crawl_index import read_location
from curation.commoncrawl.langid import CRAWL_LANGUAGES
from curation.commoncrawl.perplexity import Perplexity, available_languages, models_fingerprint
from curation.core.arrays import load_array
from curation.core.executor import ShardExecutor
from curation.core.screening import read_shard, screen
from curation.core.stage import ShardInput, setting
from curation.core.storage import Storage

DEFAULT_PERCENTILES = (30, 60)
SAMPLE_DOCUMENTS = 1_000_000


@dataclass(frozen=True)
class CutoffSettings:
    """How a crawl's documents are scored for its cutoffs (recorded, so `cc_perplexity`
    scores the rest the same way) and where the cutoffs come from."""

    languages: tuple[str, ...] = setting(
        CRAWL_LANGUAGES,
        help="the scored languages: the crawl's kept ones; [] = every language with models",
    )
    scoring: Literal["ccnet", "lines"] = setting(
        "ccnet", help="CCNet's one score per document, or line by line"
    )
    max_chars: int = setting(0, help="score only the first characters of each unit; 0 = all")
    percentiles: tuple[float, ...] = setting(DEFAULT_PERCENTILES, help="the bucket boundaries")
    sample_documents: int = setting(
        SAMPLE_DOCUMENTS,
        help="documents of the crawl scored for the cutoffs (whole shards); 0 = every document",
    )
    cutoff_csv: str = setting(
        "", help="CCNet's cutoff.csv (a path or an http(s) URL): its cutoffs win over computed ones"
    )
    table: dict[str, list[float]] = field(
        default_factory=dict, metadata={"help": "language -> [low, high]: wins over both"}
    )


CUTOFFS_FILE = "cutoffs.json"
SCORER_FILE = "scorer.json"
SCORES_DIR = "scores"
# The fields of `Perplexity` that decide a score: what scorer.json records.
SCORER_FIELDS = ("models_dir", "languages", "scoring", "max_chars", "models_fingerprint")

Cutoffs = dict[str, list[float]]


def row_count(storage: Storage, shard: ShardInput) -> int:
    """From the Parquet footer alone."""
    with storage.fs.open_input_file(shard.path) as stream:
        return pq.read_metadata(stream).num_rows


def sample_shards(
    storage: Storage, inputs: Sequence[ShardInput], documents: int
) -> list[ShardInput]:
    """Whole shards, in an order fixed by their names' hashes (spread over the crawl, the same
    on every run), until they hold `documents` rows; in input order. 0: every shard."""
    if documents <= 0:
        return list(inputs)
    order = sorted(inputs, key=lambda s: hashlib.sha1(s.name.encode()).hexdigest())
    chosen, rows = set(), 0
    for shard in order:
        if rows >= documents:
            break
        chosen.add(shard.name)
        rows += row_count(storage, shard)
    return [shard for shard in inputs if shard.name in chosen]


@dataclass(frozen=True)
class _SaveScores:
    """Map step: one sampled shard scored and its scores saved; picklable for pools."""

    scorer: Perplexity
    storage: Storage

    def __call__(self, shard: ShardInput) -> str:
        self.scorer.save_scores(shard, self.storage)
        return shard.name


def sample_perplexities(
    scorer: Perplexity,
    inputs: Sequence[ShardInput],
    storage: Storage,
    executor: ShardExecutor,
    documents: int = SAMPLE_DOCUMENTS,
) -> dict[str, np.ndarray]:
    """Score the sample into `scorer.scores_dir` (in parallel; a resumed run keeps finished
    shards; files of other inputs or settings are removed) and return the perplexities of
    each scored language (inf for a document with nothing to score). Shards the stage would
    quarantine are not sampled."""
    readable = [shard for shard in inputs if screen(scorer, shard, storage) is None]
    chosen = sample_shards(storage, readable, documents)
    storage.makedirs(scorer.scores_dir)
    list(executor.map_unordered(_SaveScores(scorer, storage), chosen))
    current = {scorer.scores_path(shard) for shard in chosen}
    for path in storage.list_files(scorer.scores_dir, ".npy"):
        if path not in current:
            storage.discard(path)
    values: dict[str, list[np.ndarray]] = {}
    for shard in chosen:
        languages = read_shard(scorer, shard, storage, ["language"])
        scores = load_array(storage, scorer.scores_path(shard))
        for language in sorted(set(languages.column("language").to_pylist())):
            mine = scores[np.asarray(pc.equal(languages.column("language"), language))]
            if not np.isnan(mine).all():
                values.setdefault(language, []).append(mine)
    return {language: np.concatenate(parts) for language, parts in sorted(values.items())}


def compute_cutoffs(
    perplexities_by_language: Mapping[str, Sequence[float]],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> Cutoffs:
    """Per-language perplexity percentiles (p30, p60 by default). Unscorable documents (inf)
    are left out; a language with no finite perplexity gets no cutoffs."""
    cutoffs = {}
    for language, values in sorted(perplexities_by_language.items()):
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            cutoffs[language] = [float(v) for v in np.percentile(finite, list(percentiles))]
    return cutoffs


def parse_cutoff_csv(text: str, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Cutoffs:
    """CCNet's `cutoff.csv`: a header of languages after an empty first cell, then one row per
    integer percentile (`30,190,120,...`). The rows of `percentiles` become the cutoffs."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or len(rows[0]) < 2:
        raise ValueError("cutoff.csv: expected a header row ',lang,lang,...'")
    languages = rows[0][1:]
    by_percentile = {}
    for row in rows[1:]:
        if row:
            if len(row) != len(languages) + 1:
                raise ValueError(f"cutoff.csv: row {row[0]!r} has {len(row) - 1} values")
            by_percentile[float(row[0])] = [float(v) for v in row[1:]]
    missing = [p for p in percentiles if float(p) not in by_percentile]
    if missing:
        raise ValueError(f"cutoff.csv has no row for percentiles {missing}")
    chosen = [by_percentile[float(p)] for p in percentiles]
    return {lang: [values[i] for values in chosen] for i, lang in enumerate(languages)}


def read_cutoff_csv(location: str, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Cutoffs:
    """`parse_cutoff_csv` of a file at a path or an http(s) URL."""
    return parse_cutoff_csv(read_location(location, timeout=60.0).decode("utf-8"), percentiles)


def crawl_cutoffs(
    scorer: Perplexity,
    inputs: Sequence[ShardInput],
    storage: Storage,
    executor: ShardExecutor,
    sample_documents: int = SAMPLE_DOCUMENTS,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    configured: Mapping[str, Sequence[float]] | None = None,
) -> tuple[Cutoffs, dict[str, np.ndarray]]:
    """Cutoffs of the scored languages (configured ones winning), and the sample's
    perplexities they came from."""
    scores = sample_perplexities(scorer, inputs, storage, executor, sample_documents)
    cutoffs = compute_cutoffs(scores, percentiles) | {
        lang: list(c) for lang, c in (configured or {}).items()
    }
    scored = scorer.scored_languages(storage)
    return {lang: cutoffs[lang] for lang in sorted(cutoffs) if lang in scored}, scores


def write_cutoffs(storage: Storage, directory: str, scorer: Perplexity, cutoffs: Cutoffs) -> str:
    """cutoffs.json and scorer.json in `directory`; returns the cutoffs file's path."""
    settings = {name: getattr(scorer, name) for name in SCORER_FIELDS}
    settings["languages"] = list(settings["languages"])
    storage.write_bytes(
        posixpath.join(directory, SCORER_FILE), json.dumps(settings, indent=2).encode()
    )
    path = posixpath.join(directory, CUTOFFS_FILE)
    storage.write_bytes(path, json.dumps(cutoffs, indent=2, sort_keys=True).encode())
    return path


def read_cutoffs(storage: Storage, directory: str, **stage_options) -> Perplexity:
    """The stage that buckets with the cutoffs in `directory`, scoring as they were made and
    reading back the sample's scores; `stage_options` are its own (keep_buckets, ...)."""
    settings = json.loads(storage.read_bytes(posixpath.join(directory, SCORER_FILE)))
    cutoffs = json.loads(storage.read_bytes(posixpath.join(directory, CUTOFFS_FILE)))
    settings["languages"] = tuple(settings["languages"])
    return Perplexity(
        **settings,
        cutoffs=cutoffs,
        scores_dir=posixpath.join(directory, SCORES_DIR),
        **stage_options,
    )


def scorer_for(
    storage: Storage,
    models_dir: str,
    directory: str,
    languages: Sequence[str] = (),
    **settings,
) -> Perplexity:
    """The scorer of a cutoffs directory: `languages` (every language with models when
    empty), fingerprinted by the models' contents, saving scores under `directory`."""
    local = storage.path(models_dir)
    modelled = available_languages(storage, local)
    chosen = tuple(languages) or tuple(modelled)
    missing = [lang for lang in chosen if lang not in modelled]
    if missing:
        raise FileNotFoundError(
            f"no perplexity models for {missing} in {local}: train them (lm_tokenizer and "
            "kenlm_model, or `llamapipe train-lm`) or install CCNet's released models"
        )
    return Perplexity(
        models_dir,
        languages=chosen,
        models_fingerprint=models_fingerprint(storage, local, chosen),
        scores_dir=posixpath.join(directory, SCORES_DIR),
        **settings,
    )
