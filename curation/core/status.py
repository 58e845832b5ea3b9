"""What the data root holds: each asset's partitions, finished or interrupted, with counts.

Read from the stage directories themselves (`stages/<asset>/<partition>/`), not from a Dagster
instance: the files are what downstream reads, and they are there whichever instance, CLI or
machine wrote them. A partition with a stage manifest is finished and has its counts; a hidden
staging directory beside it is a run that was interrupted and resumes where it stopped; other
outputs (models, checkpoints, exports) are listed as written.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from curation.core.manifest import MANIFEST_NAME, Manifest
from curation.core.storage import Storage

FINISHED = "materialized"
INTERRUPTED = "interrupted (resumes)"
WRITTEN = "written"
_STAGING = ".staging"
_PLOTS = ".plots"


@dataclass(frozen=True)
class PartitionStatus:
    asset: str
    partition: str
    state: str
    n_in: int | None = None
    kept: int | None = None
    dropped: int | None = None
    shards_done: int | None = None  # of an interrupted run


def partition_statuses(
    storage: Storage, stages_root: str, order: Sequence[str] = ()
) -> list[PartitionStatus]:
    """Every partition of every asset under `stages_root`, the assets in `order` (the
    pipeline's) first, then the others by name; partitions sorted within an asset."""
    statuses = []
    for asset_dir in storage.list_dirs(stages_root):
        asset = posixpath.basename(asset_dir)
        for partition_dir in storage.list_dirs(asset_dir):
            name = posixpath.basename(partition_dir)
            if name.endswith(_PLOTS):
                continue
            if name.startswith(".") and name.endswith(_STAGING):
                statuses.append(_interrupted(storage, asset, partition_dir))
            elif not name.startswith("."):
                statuses.append(_finished(storage, asset, partition_dir))
    rank = {asset: n for n, asset in enumerate(order)}
    return sorted(
        statuses, key=lambda s: (rank.get(s.asset, len(rank)), s.asset, s.partition, s.state)
    )


def _finished(storage: Storage, asset: str, partition_dir: str) -> PartitionStatus:
    partition = posixpath.basename(partition_dir)
    manifest = _stage_manifest(storage, posixpath.join(partition_dir, MANIFEST_NAME))
    if manifest is None:
        return PartitionStatus(asset, partition, WRITTEN)
    dropped = sum(manifest.dropped.values())
    return PartitionStatus(asset, partition, FINISHED, manifest.n_in, manifest.kept, dropped)


def _interrupted(storage: Storage, asset: str, staging_dir: str) -> PartitionStatus:
    partition = posixpath.basename(staging_dir)[1 : -len(_STAGING)]
    done = len(storage.list_files(posixpath.join(staging_dir, "_shards")))
    return PartitionStatus(asset, partition, INTERRUPTED, shards_done=done)


def _stage_manifest(storage: Storage, path: str) -> Manifest | None:
    """The stage manifest at `path`; None when absent or another kind of manifest (the token
    shards and the tokenizer write their own)."""
    if not storage.exists(path):
        return None
    try:
        return Manifest.from_json(storage.read_bytes(path).decode())
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        return None


def status_table(statuses: list[PartitionStatus]) -> str:
    """A fixed-width table for the terminal."""
    header = ("asset", "partition", "state", "in", "kept", "dropped")
    rows = [header] + [
        (
            s.asset,
            s.partition,
            s.state if s.shards_done is None else f"{s.state}, {s.shards_done} shards done",
            *("" if v is None else f"{v:,}" for v in (s.n_in, s.kept, s.dropped)),
        )
        for s in statuses
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
