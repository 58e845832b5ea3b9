"""`_manifest.json`: what a partition directory holds and how it was made.

The manifest is deterministic (no timestamps, no durations, no absolute paths): materializing
the same partition twice gives byte-identical manifests, and the fingerprint changes exactly
when config, code version or inputs change.

This module is the one place that names, reads and writes the file of any output directory
(`read_manifest_text`, `write_manifest`), whatever its kind: a stage partition (`Manifest`,
`read_manifest`), the tokenizer's directory, the token shards
(curation/tokens/shards_manifest.py). Every kind records its run's `fingerprint` at the top
level, which is what reuse compares (`recorded_fingerprint`, curation/core/runner.py
`materialize`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from curation.core.documents import SCHEMA_VERSION
from curation.core.storage import Storage

MANIFEST_NAME = "_manifest.json"
DROPPED_DIR = "_dropped"


def fingerprint(payload: Any) -> str:
    """sha256 of a JSON value in canonical form."""
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass
class ShardRecord:
    """Per-shard counts and output hashes; also the unit of resume."""

    index: int
    input: str
    input_fingerprint: str
    n_in: int
    kept: int
    dropped: dict[str, int]
    bytes_in: int
    bytes_out: int
    part_sha256: str
    histograms: dict[str, dict[str, int]] = field(default_factory=dict)
    # {"reason", "detail"} when screening refused the whole input (curation/core/screening.py).
    quarantined: dict[str, str] | None = None

    @property
    def part_name(self) -> str:
        return part_name(self.index)


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass
class Manifest:
    stage: str
    code_version: str
    config: dict[str, Any]
    inputs: list[dict[str, str]]
    fingerprint: str
    shards: list[ShardRecord]
    schema_version: int = SCHEMA_VERSION
    # What the stage's global pass decided (`Stage.summary`), e.g. the mixture's plan.
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return sum(s.n_in for s in self.shards)

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.shards)

    @property
    def dropped(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.shards:
            total.update(s.dropped)
        return dict(sorted(total.items()))

    @property
    def quarantined(self) -> list[ShardRecord]:
        """The records of the input shards quarantined whole, in input order."""
        return [s for s in self.shards if s.quarantined is not None]

    @property
    def histograms(self) -> dict[str, dict[str, int]]:
        merged: dict[str, Counter[str]] = {}
        for s in self.shards:
            for name, hist in s.histograms.items():
                merged.setdefault(name, Counter()).update(hist)
        return {name: dict(hist.most_common()) for name, hist in sorted(merged.items())}

    @property
    def output_fingerprint(self) -> str:
        """Identifies the content of the kept rows; downstream stages fingerprint on it."""
        return fingerprint([s.part_sha256 for s in self.shards])

    def to_json(self) -> str:
        body = {
            "schema_version": self.schema_version,
            "stage": self.stage,
            "code_version": self.code_version,
            "config": self.config,
            "inputs": self.inputs,
            "fingerprint": self.fingerprint,
            "output_fingerprint": self.output_fingerprint,
            "counts": {
                "in": self.n_in,
                "kept": self.kept,
                "dropped": self.dropped,
            },
            "bytes": {
                "in": sum(s.bytes_in for s in self.shards),
                "out": sum(s.bytes_out for s in self.shards),
            },
            "histograms": self.histograms,
            "summary": self.summary,
            "shards": [asdict(s) for s in self.shards],
        }
        return json.dumps(body, indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        return cls(
            stage=body["stage"],
            code_version=body["code_version"],
            config=body["config"],
            inputs=body["inputs"],
            fingerprint=body["fingerprint"],
            shards=[ShardRecord(**s) for s in body["shards"]],
            schema_version=body["schema_version"],
            summary=body.get("summary", {}),
        )


def read_manifest_text(storage: Storage, directory: str) -> str | None:
    """The text of `directory`'s manifest; None when it has none (not finished)."""
    path = posixpath.join(directory, MANIFEST_NAME)
    if not storage.exists(path):
        return None
    return storage.read_bytes(path).decode()


def write_manifest(storage: Storage, directory: str, text: str) -> None:
    storage.write_bytes(posixpath.join(directory, MANIFEST_NAME), text.encode())


def recorded_fingerprint(storage: Storage, directory: str) -> str | None:
    """The fingerprint of the run that made `directory`; None when it has no manifest. Read
    without parsing the rest, so an output in an older layout is simply not current."""
    text = read_manifest_text(storage, directory)
    return None if text is None else json.loads(text).get("fingerprint")


def read_manifest(storage: Storage, output: str) -> Manifest | None:
    """The stage manifest of partition `output`; None when it is not finished."""
    text = read_manifest_text(storage, output)
    return None if text is None else Manifest.from_json(text)
