"""The evaluation sets: where they are, which text of an item is checked, and their n-gram index.

A directory of JSONL files `<task>/<split>.jsonl`, one item per line in the task's own Hugging
Face schema (boolq `{"question", "passage", "idx", "label"}`, gsm8k `{"question", "answer"}`,
...). An item's id is its line number from 0: the doc id the overlap report gives it
(`report.py`), which is lm-eval's doc id when the file keeps the dataset's order.

Which text of an item is checked is lm-eval's `doc_to_decontamination_query`, kept here as data
(`QUERIES`): the task YAML's own query where it has one (boolq's `passage`, piqa's `goal`, arc's
`"Question: {{question}}\\nAnswer:"`), else the question or prompt fields its `doc_to_text`
reads (gsm8k's `question`, humaneval's `prompt`, race's `article`). A key names a task or a
family of tasks (`mmlu` covers `mmlu_anatomy`); the longest matching key wins. A task none
matches is checked on every top-level string field of its rows, in the row's order, joined by
spaces, so an unknown benchmark is still covered, only more broadly.

Which splits: the evaluation splits (`validation`, `test`), and for the few tasks whose
evaluation split has another name the one lm-eval evaluates (`EVALUATED_ON`:
realtoxicityprompts' only split is `train`). Training and few-shot splits (gsm8k `train`,
mmlu `dev`, mbpp `prompt`) are left out unless named: a web page holding a benchmark's
training example does not inflate its score. The stage lists the files it left out.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from curation.core.arrays import load_array, save_array
from curation.core.manifest import fingerprint
from curation.core.storage import Storage
from curation.decontamination.ngrams import tokens, window_hashes

# Task (or family) -> the item's checked text, a `str.format` template over its row.
QUERIES: dict[str, str] = {
    # lm-eval's own `doc_to_decontamination_query` (the task's YAML or task.py).
    "boolq": "{passage}",
    "piqa": "{goal}",
    "arc_easy": "Question: {question}\nAnswer:",
    "arc_challenge": "Question: {question}\nAnswer:",
    "openbookqa": "{question_stem}",
    "winogrande": "{sentence}",
    "winogender": "{sentence}",
    "triviaqa": "{question}",
    "truthfulqa": "{question}",
    "webqs": "{question}",
    "sciq": "{support} {question}",
    "drop": "{passage} {question}",
    "squadv2": "{context}",
    "lambada": "{text}",
    "wikitext": "{page}",
    # No query in lm-eval: the question or prompt fields the task's prompt is made of.
    "hellaswag": "{ctx}",
    "social_iqa": "{context} {question}",
    "siqa": "{context} {question}",
    "nq_open": "{question}",
    "race": "{article}",
    "gsm8k": "{question}",
    "hendrycks_math": "{problem}",
    "minerva_math": "{problem}",
    "humaneval": "{prompt}",
    "mbpp": "{text}",
    "mmlu": "{question}",
    "crows_pairs": "{sent_more} {sent_less}",
    "realtoxicityprompts": "{prompt[text]}",
}
EVALUATION_SPLITS = ("validation", "test")
# Tasks lm-eval evaluates on a split named otherwise (their YAML's `test_split`).
EVALUATED_ON: dict[str, tuple[str, ...]] = {"realtoxicityprompts": ("train",)}
_ITEM_BITS = 32  # an item code is `set number << 32 | line`


class BenchmarkError(ValueError):
    """An evaluation set that cannot be read: the file, the line and what is wrong. Raised,
    not skipped: an item left out is an item whose contamination goes unreported."""


def _family(task: str, table: Mapping[str, object]) -> str | None:
    """The longest key of `table` that is `task` or a prefix of it followed by `_`."""
    keys = [k for k in table if task == k or task.startswith(f"{k}_")]
    return max(keys, key=len) if keys else None


def query_text(task: str, row: Mapping[str, object]) -> str:
    """The text of one item that is checked for overlap (see the module docstring)."""
    family = _family(task, QUERIES)
    if family is None:
        return " ".join(v for v in row.values() if isinstance(v, str))
    return QUERIES[family].format_map(row)


def is_evaluated(task: str, split: str, splits: Iterable[str]) -> bool:
    family = _family(task, EVALUATED_ON)
    return split in splits or (family is not None and split in EVALUATED_ON[family])


@dataclass(frozen=True)
class BenchmarkSet:
    """One split of one task: `<directory>/<task>/<split>.jsonl`."""

    task: str
    split: str
    path: str

    @property
    def name(self) -> str:
        return f"{self.task}/{self.split}"


def split_files(storage: Storage, directory: str) -> list[BenchmarkSet]:
    """Every `<task>/<split>.jsonl` under `directory`, by task then split; none when the
    directory does not exist."""
    found = []
    for task_dir in storage.list_dirs(directory):
        task = posixpath.basename(task_dir)
        if task.startswith((".", "_")):
            continue
        for path in storage.list_files(task_dir, ".jsonl"):
            found.append(BenchmarkSet(task, posixpath.basename(path)[: -len(".jsonl")], path))
    return found


def sets_fingerprint(storage: Storage, directory: str) -> str:
    """The content of every split file under `directory`: a changed or added benchmark
    makes the stage run again."""
    files = split_files(storage, directory)
    return fingerprint([[s.name, storage.sha256(s.path)] for s in files]) if files else ""


def read_queries(storage: Storage, benchmark: BenchmarkSet) -> list[str]:
    """The checked text of every item of `benchmark`, in line order."""
    try:
        lines = storage.read_bytes(benchmark.path).decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise BenchmarkError(f"{benchmark.path}: not UTF-8 ({exc})") from exc
    queries = []
    for number, line in enumerate(lines, start=1):
        where = f"{benchmark.path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{where}: not a JSON object ({exc})") from exc
        if not isinstance(row, dict):
            raise BenchmarkError(f"{where}: not a JSON object")
        try:
            queries.append(query_text(benchmark.task, row))
        except (KeyError, IndexError, TypeError) as exc:
            template = QUERIES[_family(benchmark.task, QUERIES)]
            raise BenchmarkError(
                f"{where}: {benchmark.task}'s checked text is {template!r}, the row lacks {exc}"
            ) from exc
    return queries


def item_code(set_number: int, line: int) -> int:
    return set_number << _ITEM_BITS | line


def split_code(code: int) -> tuple[int, int]:
    """(set number, line) of an item code."""
    return code >> _ITEM_BITS, code & ((1 << _ITEM_BITS) - 1)


@dataclass(frozen=True)
class BenchmarkIndex:
    """Every n-gram of the evaluation sets: `hashes`, sorted and distinct, and for the hash
    at position i the items holding it, `items[offsets[i]:offsets[i + 1]]` (item codes)."""

    hashes: np.ndarray
    offsets: np.ndarray
    items: np.ndarray

    _FILES: ClassVar[tuple[str, ...]] = ("hashes", "offsets", "items")

    @classmethod
    def build(cls, item_hashes: Iterable[tuple[int, np.ndarray]]) -> BenchmarkIndex:
        """From (item code, its window hashes) pairs."""
        pairs = [(code, np.unique(h)) for code, h in item_hashes if len(h)]
        hashes = np.concatenate([h for _, h in pairs] or [np.empty(0, np.uint64)])
        codes = np.concatenate(
            [np.full(len(h), code, np.int64) for code, h in pairs] or [np.empty(0, np.int64)]
        )
        order = np.lexsort((codes, hashes))
        hashes, codes = hashes[order], codes[order]
        distinct, starts = np.unique(hashes, return_index=True)
        offsets = np.append(starts, len(hashes)).astype(np.int64)
        return cls(distinct, offsets, codes)

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, windows: np.ndarray) -> np.ndarray:
        """For each window hash, its position in `hashes`, or -1 when no item holds it."""
        if not len(self.hashes) or not len(windows):
            return np.full(len(windows), -1, np.int64)
        at = np.minimum(np.searchsorted(self.hashes, windows), len(self.hashes) - 1)
        return np.where(self.hashes[at] == windows, at, -1)

    def items_at(self, positions: np.ndarray) -> list[int]:
        """The distinct item codes holding the hashes at `positions`, ascending."""
        slices = [self.items[self.offsets[p] : self.offsets[p + 1]] for p in positions]
        return np.unique(np.concatenate(slices)).tolist() if slices else []

    def save(self, storage: Storage, directory: str) -> None:
        storage.makedirs(directory)
        for name in self._FILES:
            save_array(storage, _array_path(directory, name), getattr(self, name))

    @classmethod
    def load(cls, storage: Storage, directory: str) -> BenchmarkIndex:
        return cls(*(load_array(storage, _array_path(directory, n)) for n in cls._FILES))


def _array_path(directory: str, name: str) -> str:
    return posixpath.join(directory, f"{name}.npy")


@dataclass(frozen=True)
class SetStats:
    """What the index holds of one evaluation set."""

    name: str
    items: int
    items_without_ngram: int  # fewer than n words: undetectable by n-gram overlap
    ngrams: int


def index_sets(
    storage: Storage, sets: list[BenchmarkSet], n: int
) -> tuple[BenchmarkIndex, list[SetStats]]:
    """The n-gram index of `sets` (set number = position in `sets`) and each set's counts."""
    pairs, stats = [], []
    for number, benchmark in enumerate(sets):
        hashes = [window_hashes(tokens(q), n) for q in read_queries(storage, benchmark)]
        pairs += [(item_code(number, line), h) for line, h in enumerate(hashes)]
        stats.append(
            SetStats(
                benchmark.name,
                len(hashes),
                sum(1 for h in hashes if not len(h)),
                len(np.unique(np.concatenate(hashes or [np.empty(0, np.uint64)]))),
            )
        )
    return BenchmarkIndex.build(pairs), stats
