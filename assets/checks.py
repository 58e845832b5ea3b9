"""Checks every stage asset carries, computed from the files on disk, not from memory.

`counts_conserve` re-counts the rows in the written part files and dropped files, so a stage
that loses rows between processing and writing, or a manifest that lies, fails it. Both it
and `output_schema` are asset checks of their own (`stage_checks`): they read a finished
partition, so they can be re-run alone from the UI, and they block downstream assets.
"""

import math
import posixpath
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PreviewWarning,
    asset_check,
)

from assets.partitions import PARTITIONS
from assets.resources import DataRoot
from curation.core.manifest import DROPPED_DIR, Manifest, read_manifest
from curation.core.storage import Storage
from curation.recipe import (
    ALL,
    PARTITION,
    PERPLEXITY_ORDERED,
    RULES_HOLD,
    Step,
    rows_from,
    step,
)

COUNTS_CONSERVE = "counts_conserve"
OUTPUT_SCHEMA = "output_schema"


def stage_checks(name: str) -> list[AssetChecksDefinition]:
    """`counts_conserve` and `output_schema` of stage step `name`, each its own blocking
    asset check over the partition's files."""
    of = step(name)
    source = rows_from(of)
    partitions = PARTITIONS.get(of.partitions)
    with warnings.catch_warnings():
        # Partitioned asset checks are a Dagster preview: each check reads its partition.
        warnings.simplefilter("ignore", PreviewWarning)
        return _stage_checks(of, source, partitions)


def _stage_checks(of: Step, source: Step | None, partitions) -> list[AssetChecksDefinition]:
    def finished(context: AssetCheckExecutionContext, data_root: DataRoot):
        partition = context.partition_key if of.partitions != ALL else PARTITION
        storage = data_root.storage()
        output = data_root.stage_dir(of.asset, partition)
        upstream = data_root.stage_dir(source.asset, partition) if source else None
        return storage, output, read_manifest(storage, output), upstream

    @asset_check(
        asset=of.asset,
        name=COUNTS_CONSERVE,
        blocking=True,
        partitions_def=partitions,
        description="in == kept + dropped, re-counted from the written files; and in == the "
        "upstream's kept",
    )
    def conserve(context: AssetCheckExecutionContext, data_root: DataRoot) -> AssetCheckResult:
        storage, output, manifest, upstream = finished(context, data_root)
        if manifest is None:
            return _not_materialized(COUNTS_CONSERVE, output)
        before = read_manifest(storage, upstream) if upstream else None
        return counts_conserve(storage, output, manifest, before.kept if before else None)

    @asset_check(
        asset=of.asset,
        name=OUTPUT_SCHEMA,
        blocking=True,
        partitions_def=partitions,
        description="every part file has the stage's schema",
    )
    def schema(context: AssetCheckExecutionContext, data_root: DataRoot) -> AssetCheckResult:
        storage, output, manifest, _ = finished(context, data_root)
        if manifest is None:
            return _not_materialized(OUTPUT_SCHEMA, output)
        return output_schema(storage, output, manifest, of.stage.output_schema)

    return [conserve, schema]


def _not_materialized(name: str, output: str) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        metadata={"problems": f"no finished partition at {output}"},
    )


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


def rules_hold(problems: list[str]) -> AssetCheckResult:
    """A source's own verifier re-reads the output: every problem it finds fails the check."""
    return AssetCheckResult(
        check_name=RULES_HOLD,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={"problems": len(problems), "examples": "; ".join(problems[:5]) or "none"},
    )
