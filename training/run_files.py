"""The files rank 0 keeps while it trains: `metrics.jsonl` and `tensorboard/`, which it appends
to, and `result.json`.

With the output directory on a disk they live there. An object store cannot append, so with
the output directory on a store (`s3://bucket/run`) they live in a local directory under the
cache and are copied to the output directory at every checkpoint and at the end; a run that
resumes, on this machine or another, first takes `metrics.jsonl` back from the store, which
is the run's record (a local copy from an older run of the same name would be wrong).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

from curation.core.storage import Storage, cache_dir

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
SUITES_FILE = "suites.jsonl"  # the paper's suites at each checkpoint (`eval_suites`)


class RunFiles:
    """Where a run's metrics and result are written (`local`), and their copy on a store."""

    def __init__(self, output_dir: str):
        self.output = output_dir
        self.on_store = "://" in output_dir
        if self.on_store:
            key = hashlib.sha256(output_dir.encode()).hexdigest()[:16]
            self.local = Path(cache_dir(), "runs", key)
        else:
            self.local = Path(output_dir)

    def _remote(self, *parts: str) -> tuple[Storage, str]:
        storage = Storage(self.output)
        return storage, posixpath.join(storage.base, *parts)

    def pull(self) -> None:
        """Take the run's metrics from the store (no-op on a disk)."""
        self.local.mkdir(parents=True, exist_ok=True)
        if not self.on_store:
            return
        storage, metrics = self._remote(METRICS_FILE)
        local = self.local / METRICS_FILE
        if storage.exists(metrics):
            local.write_bytes(storage.read_bytes(metrics))
        else:
            local.unlink(missing_ok=True)

    def push(self) -> None:
        """Copy the local files to the store (no-op on a disk)."""
        if self.on_store:
            storage, path = self._remote()
            storage.upload(str(self.local), path)

    def write_result(self, result: dict) -> None:
        tmp = self.local / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(self.local / RESULT_FILE)
        self.push()
