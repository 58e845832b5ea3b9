"""Running a curation stage from an asset and reporting it the way a person reads it."""

from __future__ import annotations

import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
)

from assets import plots
from assets.resources import DataRoot, ShardExecutorResource
from curation.core.manifest import DROPPED_DIR, Manifest
from curation.core.progress import ProgressSink
from curation.core.runner import current_manifest, run_stage
from curation.core.stage import ShardInput, Stage
from curation.core.storage import Storage

_BAR = 30
_EXAMPLE_CHARS = 160


@dataclass
class StageRun:
    """A finished stage run, before it becomes a MaterializeResult: assets add their own
    metadata (plots, examples) and checks to it."""

    stage: Stage
    manifest: Manifest
    output: str
    metadata: dict[str, Any]

    def result(self, metadata=None, checks: Sequence[AssetCheckResult] = ()) -> MaterializeResult:
        return MaterializeResult(
            metadata={**self.metadata, **(metadata or {})}, check_results=list(checks)
        )


def log_progress(context: AssetExecutionContext) -> ProgressSink:
    """Shard progress (counts, rate, ETA) as lines of the run log."""
    return lambda update: context.log.info(update.line())


def run_stage_asset(
    context: AssetExecutionContext,
    stage: Stage,
    inputs: Sequence[ShardInput],
    partition: str,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
    force: bool = False,
    asset_name: str | None = None,
) -> StageRun:
    """Run `stage` into `stages/<asset_name or stage.name>/<partition>` and report it."""
    storage = data_root.storage()
    output = data_root.stage_dir(asset_name or stage.name, partition)
    reused = not force and current_manifest(stage, inputs, output, storage) is not None
    started = time.perf_counter()
    manifest = run_stage(
        stage,
        inputs,
        output,
        storage,
        shard_executor.executor(),
        force=force,
        progress=log_progress(context),
    )
    seconds = time.perf_counter() - started
    context.log.info(
        f"{asset_name or stage.name}[{partition}]: in {manifest.n_in}, kept {manifest.kept}, "
        f"dropped {manifest.dropped} -> {output}" + (" (up to date, reused)" if reused else "")
    )
    return StageRun(
        stage,
        manifest,
        output,
        {
            **stage_metadata(manifest, output, None if reused else seconds),
            "reused": reused,
            "funnel": plots.save_png(plots.funnel(manifest), storage, output, "funnel"),
            "dropped_examples": MetadataValue.md(dropped_examples(storage, output, manifest)),
        },
    )


def stage_metadata(manifest: Manifest, output: str, seconds: float | None) -> dict:
    """What a person reads on the asset page; `seconds` is None when the output was reused."""
    dropped = manifest.dropped
    metadata = {
        "path": MetadataValue.path(output),
        "dagster/row_count": manifest.kept,
        "in": manifest.n_in,
        "kept": manifest.kept,
        "dropped": sum(dropped.values()),
        "dropped_by_reason": MetadataValue.md(histogram_table(dropped, "reason")),
        "shards": len(manifest.shards),
        "bytes_in": sum(s.bytes_in for s in manifest.shards),
        "bytes_out": sum(s.bytes_out for s in manifest.shards),
        "fingerprint": manifest.fingerprint,
        "config": MetadataValue.json(manifest.config),
    }
    if manifest.quarantined:
        metadata["quarantined"] = MetadataValue.md(quarantine_table(manifest))
    if seconds:
        metadata["seconds"] = round(seconds, 2)
        metadata["docs_per_second"] = round(manifest.n_in / seconds, 1)
    for name, hist in manifest.histograms.items():
        key = f"{name}_histogram" if name in metadata else name  # never hide a count
        metadata[key] = MetadataValue.md(histogram_table(hist, name))
    return metadata


def quarantine_table(manifest: Manifest) -> str:
    """The input shards quarantined whole, with why: a markdown table."""
    rows = ["| input | reason | detail |", "|---|---|---|"]
    for shard in manifest.quarantined:
        why = shard.quarantined
        detail = why["detail"].replace("|", "\\|")
        rows.append(f"| {shard.input} | {why['reason']} | {detail} |")
    return "\n".join(rows)


def dropped_examples(storage: Storage, output: str, manifest: Manifest, per_reason: int = 2) -> str:
    """A few dropped rows per reason, text truncated: what a person checks a rule against."""
    examples: dict[str, list[str]] = {reason: [] for reason in manifest.dropped}
    for shard in manifest.shards:
        if all(len(rows) >= per_reason for rows in examples.values()):
            break
        if not shard.dropped:
            continue
        path = posixpath.join(output, DROPPED_DIR, shard.part_name)
        table = pq.read_table(path, filesystem=storage.fs, columns=["reason", "url", "text"])
        for row in table.to_pylist():
            rows = examples[row["reason"]]
            if len(rows) < per_reason:
                text = " ".join(row["text"].split())[:_EXAMPLE_CHARS].replace("|", "\\|")
                rows.append(f"| {row['reason']} | {row['url'] or ''} | {text} |")
    lines = [line for rows in examples.values() for line in rows]
    if not lines:
        return "nothing dropped"
    return "\n".join(["| reason | url | text (start) |", "|---|---|---|", *lines])


def histogram_table(counts: Mapping[str, int], label: str) -> str:
    """A markdown table with a text bar per row: readable in the UI without a plot."""
    if not counts:
        return f"no {label} rows"
    total = sum(counts.values())
    peak = max(counts.values())
    rows = [f"| {label} | count | share | |", "|---|---:|---:|---|"]
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        bar = "█" * max(1, round(_BAR * n / peak))
        rows.append(f"| {key} | {n} | {100 * n / total:.1f}% | {bar} |")
    return "\n".join(rows)
