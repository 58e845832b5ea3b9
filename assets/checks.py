"""Checks every stage asset carries, computed from the files on disk, not from memory.

`counts_conserve` re-counts the rows in the written part files and dropped files, so a stage
that loses rows between processing and writing, or a manifest that lies, fails it.
"""

from __future__ import annotations

import math
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

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


PERPLEXITY_ORDERED = "perplexity_buckets_ordered"


def read_all_rows(storage: Storage, output: str, columns: list[str]) -> pa.Table:
    """Kept and dropped rows of a partition together (the dropped ones carry the same
    annotation columns), for checks that look at what a stage decided on every document."""
    kept = pq.read_table(output, filesystem=storage.fs, columns=columns)
    dropped_dir = posixpath.join(output, DROPPED_DIR)
    dropped = pq.read_table(dropped_dir, filesystem=storage.fs, columns=columns)
    return pa.concat_tables([kept, dropped.cast(kept.schema)])


def perplexity_ordered(scored: pa.Table) -> AssetCheckResult:
    """Mean perplexity of head < middle < tail, per language that has all three buckets."""
    means: dict[str, dict[str, float]] = {}
    rows = zip(
        scored.column("language").to_pylist(),
        scored.column("bucket").to_pylist(),
        scored.column("perplexity").to_pylist(),
        strict=True,
    )
    sums: dict[tuple[str, str], list[float]] = {}
    for language, bucket, perplexity in rows:
        if perplexity is not None and math.isfinite(perplexity):
            sums.setdefault((language, bucket), []).append(perplexity)
    for (language, bucket), values in sums.items():
        means.setdefault(language, {})[bucket] = sum(values) / len(values)
    order = ("head", "middle", "tail")
    complete = {lang: m for lang, m in means.items() if all(b in m for b in order)}
    wrong = [lang for lang, m in complete.items() if not m["head"] < m["middle"] < m["tail"]]
    table = ["| language | head | middle | tail |", "|---|---:|---:|---:|"]
    for lang, m in sorted(complete.items()):
        table.append(f"| {lang} | " + " | ".join(f"{m[b]:.1f}" for b in order) + " |")
    return AssetCheckResult(
        check_name=PERPLEXITY_ORDERED,
        passed=bool(complete) and not wrong,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "mean_perplexity": MetadataValue.md("\n".join(table)),
            "languages_out_of_order": ", ".join(sorted(wrong)) or "none",
        },
    )


RULES_HOLD = "rules_hold_on_output"


def rules_hold(problems: list[str]) -> AssetCheckResult:
    """A source's own verifier re-reads the output: every problem it finds fails the check."""
    return AssetCheckResult(
        check_name=RULES_HOLD,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={"problems": len(problems), "examples": "; ".join(problems[:5]) or "none"},
    )
