"""The overlap report in lm-eval's decontamination format, so the harness can mark items.

lm-eval's `get_train_overlap` (lm_eval/decontamination/decontaminate.py) reads `info.json`
(`{"ngram_size": 13}`) from the n-grams directory it is given, then for each task and set
loads `data/<task>/<set>_<n>grams_limit<limit>.overlaps` (relative to the working directory)
when the file exists: a pickled Python set of the contaminated doc ids. With a file for every
set it scans nothing and returns `{task: ids}`; its evaluator reported metrics on the items
outside those sets as the "decontaminated" score. The report here is that layout, one file per
evaluation set (an empty set where nothing was found), `<set>` being the split's file name and
`<limit>` `None` (every item). Run the harness from the report directory (`data/` is relative)
with `--decontamination_ngrams_path` set to it.

Ids are the items' line numbers in the split file (`benchmarks.py`). lm-eval 0.3's evaluator,
the last to call `get_train_overlap`, named the sets `test` or `val` and numbered a task's docs
after shuffling them with seed 42; a harness of that vintage needs its ids mapped.
`overlaps.json` holds the same sets in JSON for every other reader.

An item is listed when any training document held one of its n-grams before the policy
applied: under `remove` and `drop` the n-grams are gone from the corpus, but a paraphrase or a
shorter copy may not be, so the conservative score leaves those items out all the same.
"""

from __future__ import annotations

import json
import pickle
import posixpath
from collections.abc import Mapping, Sequence

from curation.core.runner import publish, staging_path
from curation.core.storage import Storage

INFO_FILE = "info.json"
JSON_FILE = "overlaps.json"
_PICKLE_PROTOCOL = 4  # fixed: the same sets give the same bytes on every Python


def report_dir(output: str) -> str:
    """Where the report of a partition goes: beside it, as `<partition>.overlaps`, so the
    partition itself stays exactly what the runner published."""
    return output.rstrip("/") + ".overlaps"


def overlaps_name(task: str, split: str, ngram_size: int) -> str:
    """lm-eval's path of a set's overlaps file, relative to where the harness runs."""
    return f"data/{task}/{split}_{ngram_size}grams_limitNone.overlaps"


def report_files(contaminated: Mapping[str, Sequence[int]], ngram_size: int) -> dict[str, bytes]:
    """Relative path -> bytes of the report, from `{"task/split": sorted ids}`."""
    files = {
        INFO_FILE: json.dumps({"ngram_size": ngram_size}).encode(),
        JSON_FILE: (json.dumps(dict(sorted(contaminated.items())), indent=1) + "\n").encode(),
    }
    for name, ids in sorted(contaminated.items()):
        task, split = name.split("/")
        files[overlaps_name(task, split, ngram_size)] = pickle.dumps(
            set(sorted(ids)), protocol=_PICKLE_PROTOCOL
        )
    return files


def write_report(
    storage: Storage, directory: str, contaminated: Mapping[str, Sequence[int]], ngram_size: int
) -> None:
    """The report as `directory`, replaced whole (a reader never sees half of one)."""
    staging = staging_path(directory)
    storage.remove_tree(staging)
    for name, data in report_files(contaminated, ngram_size).items():
        path = posixpath.join(staging, name)
        storage.makedirs(posixpath.dirname(path))
        storage.write_bytes(path, data)
    publish(storage, staging, directory, last=INFO_FILE)
