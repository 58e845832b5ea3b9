"""`decontaminated`: the deduplicated corpus with benchmark overlaps handled, before the mixture.

The paper evaluates on BoolQ, PIQA, HellaSwag, TriviaQA, RACE, GSM8k, HumanEval, MMLU,
TruthfulQA and more; a web page, a Wikipedia article or a forum answer that holds a test item
inflates its score. This stage finds 13-gram overlaps (`ngrams.py`: lm-eval's normalization)
between every document and the evaluation sets in `benchmarks` (`benchmarks.py`), then applies
the policy (`policy.py`: GPT-3's span removal by default).

Global pass (`prepare`): index the evaluation sets' n-grams (a sorted hash array: benchmarks
are small), then map over the shards writing each one's overlapping rows (`matcher.py`). Its
summary, in the manifest, is per evaluation set: items, items too short to have an n-gram,
n-grams, and the ids of the items found in the corpus (what the overlap report, `report.py`,
is written from). Then `process`, per shard: kept rows get `benchmark_overlap`, the items
(`task/split/line`) the document held before the policy, empty when none; dropped rows have
reason `benchmark_overlap:<task>` (the task most of its items come from).

No evaluation sets (the directory is missing or holds no evaluation split) is not an error:
every document passes unchanged, the summary's `warning` says nothing was checked (the asset
logs and shows it, and fails its `benchmarks_indexed` check) and a `NothingChecked` warning
goes to stderr.

Histograms (documents): `overlap_by_benchmark`, `overlap_by_corpus`,
`overlap_by_benchmark_in_corpus` ("boolq in wikipedia") and `overlap_outcome` (spans removed,
dropped, flagged).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import posixpath
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from curation.core.documents import DOCUMENT_SCHEMA, drop_rows
from curation.core.executor import ShardExecutor
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, setting, state_field
from curation.core.storage import Storage
from curation.decontamination.benchmarks import (
    EVALUATION_SPLITS,
    BenchmarkIndex,
    SetStats,
    index_sets,
    is_evaluated,
    split_code,
    split_files,
)
from curation.decontamination.matcher import find_overlap, read_matches, write_matches
from curation.decontamination.ngrams import N
from curation.decontamination.policy import Rules
from curation.dedup.near_dedup import DEDUPLICATED_SCHEMA, conform

OVERLAP_COLUMN = "benchmark_overlap"
REASON_PREFIX = "benchmark_overlap:"
DECONTAMINATED_SCHEMA = pa.schema(
    [*DEDUPLICATED_SCHEMA, pa.field(OVERLAP_COLUMN, pa.list_(pa.string()), nullable=False)]
)
HISTOGRAMS = (  # documents with an overlap, counted four ways
    "overlap_by_benchmark",
    "overlap_by_corpus",
    "overlap_by_benchmark_in_corpus",
    "overlap_outcome",
)
_INDEX_DIR = "index"
_MATCHES_DIR = "matches"


class NothingChecked(UserWarning):
    """No evaluation set was found: the stage passed every document through unchecked.
    A warning on stderr too, for `llamapipe stage`, whose output shows no summary."""


def item_names(summary: dict[str, Any], codes: Sequence[int]) -> list[str]:
    """`task/split/line` of item codes, from the summary's list of sets."""
    sets = summary["sets"]
    return [f"{sets[s]['set']}/{line}" for s, line in map(split_code, codes)]


def contaminated_items(summary: dict[str, Any]) -> dict[str, list[int]]:
    """`{"task/split": ids}` of every indexed evaluation set: the overlap report's content."""
    return {s["set"]: s["contaminated"] for s in summary.get("sets", [])}


@dataclass(frozen=True)
class Decontaminated(Stage):
    """Documents sharing a 13-gram with an evaluation set: spans removed (GPT-3's rule, the
    default), dropped, or flagged; each row names the benchmark items it held."""

    name: ClassVar[str] = "decontaminated"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DECONTAMINATED_SCHEMA
    input_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    benchmarks: str = setting(
        "benchmarks",
        help="directory of evaluation sets, <task>/<split>.jsonl in each task's own schema; "
        "relative to the data root, absolute as is. Missing: nothing is checked (said loudly)",
    )
    splits: tuple[str, ...] = setting(
        EVALUATION_SPLITS,
        help="split files that are evaluation sets (plus the split lm-eval evaluates where it "
        "has another name); add train or dev to remove those too",
    )
    policy: str = setting(
        "remove",
        help="remove: cut the overlaps out (GPT-3, lm-eval's Janitor); drop: drop the "
        "document; flag: only annotate",
    )
    window_chars: int = setting(200, help="remove: characters cut on each side of an overlap")
    min_piece_chars: int = setting(200, help="remove: shorter pieces left are discarded")
    max_spans: int = setting(10, help="remove: a document cut in more places is dropped")
    ngram_size: int = setting(N, help="words per n-gram (13: GPT-3 and lm-eval)")
    benchmarks_fingerprint: str = setting(
        "", help="content of the evaluation sets (the asset computes it): re-run when it changes"
    )
    workdir: str = state_field()
    pass_summary: str = state_field()

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))  # JSON gives lists
        self.rules()  # validates the policy and its numbers
        if self.ngram_size < 1:
            raise ValueError(f"ngram_size must be positive, not {self.ngram_size}")

    def rules(self) -> Rules:
        return Rules(self.policy, self.window_chars, self.min_piece_chars, self.max_spans)

    def _matches_path(self, shard: ShardInput) -> str:
        return posixpath.join(self.workdir, _MATCHES_DIR, f"{shard.name}.parquet")

    def scan(self, shard: ShardInput, storage: Storage) -> None:
        """The map of the global pass: the shard's overlapping rows into its matches file
        (kept when a resumed run finds it)."""
        path = self._matches_path(shard)
        if storage.exists(path):
            return
        index = BenchmarkIndex.load(storage, posixpath.join(self.workdir, _INDEX_DIR))
        texts = read_shard(self, shard, storage, ["text"]).column("text").to_pylist()
        found = {row: find_overlap(index, text, self.ngram_size) for row, text in enumerate(texts)}
        write_matches(storage, path, {row: o for row, o in found.items() if o is not None})

    def prepare(self, inputs, storage, workdir, executor) -> Decontaminated:
        stage = dataclasses.replace(self, workdir=workdir)
        files = split_files(storage, storage.path(self.benchmarks))
        sets = [f for f in files if is_evaluated(f.task, f.split, self.splits)]
        index, stats = index_sets(storage, sets, self.ngram_size)
        found = stage._scan_all(index, inputs, storage, executor) if len(index) else set()
        summary = {
            "indexed_ngrams": len(index),
            "contaminated_items": len(found),
            "warning": self._warning(len(index), stats),
            "sets": [
                {
                    "set": s.name,
                    "items": s.items,
                    "items_without_ngram": s.items_without_ngram,
                    "ngrams": s.ngrams,
                    "contaminated": sorted(line for n, line in found if n == number),
                }
                for number, s in enumerate(stats)
            ],
            "left_out": [f.name for f in files if f not in sets],
        }
        if not len(index):
            warnings.warn(summary["warning"], NothingChecked, stacklevel=2)
        return dataclasses.replace(stage, pass_summary=json.dumps(summary))

    def _scan_all(
        self,
        index: BenchmarkIndex,
        inputs: Sequence[ShardInput],
        storage: Storage,
        executor: ShardExecutor,
    ) -> set[tuple[int, int]]:
        """Every shard scanned against `index`; the (set number, line) of each item found."""
        index.save(storage, posixpath.join(self.workdir, _INDEX_DIR))
        storage.makedirs(posixpath.join(self.workdir, _MATCHES_DIR))
        list(executor.map_unordered(functools.partial(self.scan, storage=storage), inputs))
        return {
            split_code(code)
            for shard in inputs
            for overlap in read_matches(storage, self._matches_path(shard)).values()
            for code in overlap.items
        }

    def _warning(self, ngrams: int, stats: list[SetStats]) -> str:
        if not ngrams:
            return (
                f"no evaluation set with a {self.ngram_size}-gram under {self.benchmarks!r}: "
                "nothing was checked, every document passes unchanged"
            )
        short = sum(s.items_without_ngram for s in stats)
        if short:
            return (
                f"{short} evaluation items have fewer than {self.ngram_size} words: no "
                "n-gram overlap can find them"
            )
        return ""

    def summary(self) -> dict[str, Any]:
        return json.loads(self.pass_summary) if self.pass_summary else {}

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = conform(read_shard(self, shard, storage))
        summary = self.summary()
        overlaps = (
            read_matches(storage, self._matches_path(shard))
            if summary.get("indexed_ngrams")
            else {}
        )
        rules, texts = self.rules(), table.column("text").to_pylist()
        sources = table.column("source").to_pylist()
        outcomes: list[str | None] = []  # the text kept, None when dropped
        items: list[list[str]] = []
        histograms: dict[str, Counter[str]] = {name: Counter() for name in HISTOGRAMS}
        for row, (text, source) in enumerate(zip(texts, sources, strict=True)):
            overlap = overlaps.get(row)
            outcomes.append(rules.apply(text, overlap.spans) if overlap else text)
            items.append(item_names(summary, overlap.items) if overlap else [])
            if overlap:
                _count(histograms, items[-1], source, self._outcome(outcomes[-1]))
        table = table.append_column(
            DECONTAMINATED_SCHEMA.field(OVERLAP_COLUMN), pa.array(items, pa.list_(pa.string()))
        )
        keep = [outcome is not None for outcome in outcomes]
        kept = table.filter(pa.array(keep, pa.bool_()))
        kept = kept.set_column(
            kept.schema.get_field_index("text"),
            DOCUMENT_SCHEMA.field("text"),
            pa.array([o for o in outcomes if o is not None], pa.string()),
        )
        reasons = [REASON_PREFIX + _main_task(i) for i, k in zip(items, keep, strict=True) if not k]
        dropped = table.filter(pa.array([not k for k in keep], pa.bool_()))
        return ShardOutput(
            n_in=table.num_rows,
            kept=kept,
            dropped=drop_rows(dropped, self.name, reasons),
            histograms=histograms,
        )

    def _outcome(self, text: str | None) -> str:
        if text is None:
            return "dropped"
        return "flagged" if self.policy == "flag" else "spans_removed"


def _task(item: str) -> str:
    return item.split("/")[0]


def _main_task(items: Sequence[str]) -> str:
    """The task most of a document's items come from (ties: the first by name)."""
    counts = Counter(map(_task, items))
    return min(counts, key=lambda task: (-counts[task], task))


def _count(
    histograms: dict[str, Counter[str]], items: list[str], source: str, outcome: str
) -> None:
    tasks = sorted(set(map(_task, items)))
    histograms["overlap_by_benchmark"].update(tasks)
    histograms["overlap_by_corpus"][source] += 1
    histograms["overlap_by_benchmark_in_corpus"].update(f"{t} in {source}" for t in tasks)
    histograms["overlap_outcome"][outcome] += 1
