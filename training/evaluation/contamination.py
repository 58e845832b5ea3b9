"""Benchmark items the training corpus held, and each suite row's value without them.

The `decontaminated` stage writes an overlap report (curation/decontamination/report.py):
`overlaps.json`, `{"<dataset>/<split>": [line numbers]}` of every item some training document
shared a 13-gram with. Given it, the suite runner marks those items in each row and reports
the value over the others too (`clean_value`), as lm-eval's old decontamination path did. An
item's id is its line in the local copy the stage read, so a row is marked only where the
harness evaluated that copy line for line (same number of documents, no filtering); anywhere
else it says why it is not.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from curation.core.storage import Storage
from curation.decontamination.report import JSON_FILE


def load_contamination(location: str) -> dict[str, set[int]]:
    """The report's sets, from its directory or its `overlaps.json`, on a disk or a store."""
    directory = posixpath.dirname(location) if location.endswith(".json") else location
    storage = Storage(directory)
    report = json.loads(storage.read_bytes(storage.path(JSON_FILE)))
    return {name: set(ids) for name, ids in report.items()}


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def clean_samples(
    samples: list[dict], ids: set[int], local_copy: Path, documents: int
) -> list[dict] | str:
    """The samples whose item is not in `ids`, when the harness's `documents` are the lines of
    `local_copy` in order (else why they cannot be matched)."""
    lines = _lines(local_copy)
    if documents != lines:
        return f"not matched: {documents} documents, {lines} lines in {local_copy.name}"
    return [s for s in samples if s["doc_id"] not in ids]
