"""Checks every stage asset carries, computed from the files on disk, not from memory.

`counts_conserve` re-counts the rows in the written part files and dropped files, so a stage
that loses rows between processing and writing, or a manifest that lies, fails it.
"""

from __future__ import annotations

import posixpath

import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from curation.manifest import DROPPED_DIR, Manifest
from curation.storage import Storage

COUNTS_CONSERVE = "counts_conserve"
OUTPUT_SCHEMA = "output_schema"


def stage_check_specs(asset: str, *extra: str) -> list[AssetCheckSpec]:
    """The checks every stage carries, plus `extra` ones (name, asset-specific, described
    where their results are computed)."""
    key = AssetKey(asset)
    return [
        *(AssetCheckSpec(name, asset=key) for name in extra),
        AssetCheckSpec(
            COUNTS_CONSERVE,
            asset=key,
            description="in == kept + dropped, re-counted from the written files; "
            "and in == upstream kept",
        ),
        AssetCheckSpec(
            OUTPUT_SCHEMA, asset=key, description="every part file has the stage's schema"
        ),
    ]


def _rows(storage: Storage, path: str) -> int:
    with storage.fs.open_input_file(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


def counts_conserve(
    storage: Storage, output: str, manifest: Manifest, upstream_kept: int | None
) -> AssetCheckResult:
    parts = [posixpath.join(output, s.part_name) for s in manifest.shards]
    dropped_parts = [posixpath.join(output, DROPPED_DIR, s.part_name) for s in manifest.shards]
    kept_on_disk = sum(_rows(storage, p) for p in parts)
    dropped_on_disk = sum(_rows(storage, p) for p in dropped_parts)
    dropped_declared = sum(manifest.dropped.values())
    problems = []
    if manifest.n_in != kept_on_disk + dropped_on_disk:
        problems.append(f"in {manifest.n_in} != kept {kept_on_disk} + dropped {dropped_on_disk}")
    if kept_on_disk != manifest.kept or dropped_on_disk != dropped_declared:
        problems.append("the manifest's counts differ from the rows in the files")
    if upstream_kept is not None and upstream_kept != manifest.n_in:
        problems.append(f"upstream kept {upstream_kept} rows but this stage read {manifest.n_in}")
    return AssetCheckResult(
        check_name=COUNTS_CONSERVE,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "in": manifest.n_in,
            "kept": kept_on_disk,
            "dropped": dropped_on_disk,
            "upstream_kept": -1 if upstream_kept is None else upstream_kept,
            "problems": "; ".join(problems) or "none",
        },
    )


def output_schema(storage: Storage, output: str, manifest: Manifest, expected) -> AssetCheckResult:
    wrong = []
    for shard in manifest.shards:
        with storage.fs.open_input_file(posixpath.join(output, shard.part_name)) as f:
            schema = pq.read_schema(f)
        if not schema.remove_metadata().equals(expected):
            wrong.append(shard.part_name)
    return AssetCheckResult(
        check_name=OUTPUT_SCHEMA,
        passed=not wrong,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "columns": ", ".join(expected.names),
            "mismatched_parts": ", ".join(wrong) or "none",
        },
    )
