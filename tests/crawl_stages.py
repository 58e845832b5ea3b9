"""CCNet's first stages on the sample crawl, materialized through Dagster as a deployment runs
them, with the shard executor resource a test chooses: what the executor tests compare."""

import os
import posixpath
from pathlib import Path

import pyarrow.fs as pafs
from dagster import DagsterInstance, materialize

from assets.graph import STAGE_ASSETS
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from curation.core.storage import Storage

CRAWL = "sample"
STAGES = ("cc_documents", "cc_line_dedup", "cc_language")


def materialized_crawl_stages(
    sample_world: Path, root: str | Path, executor: ShardExecutorResource
) -> dict[str, bytes]:
    """Every file the stages wrote under `<root>/stages`, by path: parts, dropped rows,
    manifests and plots. `root` is a new local directory or a store URI (`s3://bucket/data`),
    which gets a copy of the sample world."""
    storage = Storage(str(root))
    _place_sample(sample_world, storage)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawls.name, [CRAWL])
        result = materialize(
            [STAGE_ASSETS[name] for name in STAGES],
            resources={"data_root": DataRoot(root=str(root)), "shard_executor": executor},
            instance=instance,
            partition_key=CRAWL,
        )
    assert result.success
    stages = storage.path("stages")
    selector = pafs.FileSelector(stages, recursive=True)
    files = [i.path for i in storage.fs.get_file_info(selector) if i.type == pafs.FileType.File]
    return {posixpath.relpath(path, stages): storage.read_bytes(path) for path in files}


def _place_sample(sample_world: Path, storage: Storage) -> None:
    """The sample world under the root's `sample/`: a link on a disk, a copy on a store."""
    if storage.is_local:
        os.makedirs(storage.base)
        os.symlink(sample_world, storage.path("sample"))
        return
    storage.upload(str(sample_world), storage.path("sample"))


def differing(one: dict[str, bytes], other: dict[str, bytes]) -> list[str]:
    """The files the two runs wrote differently (or only one of them wrote)."""
    return sorted(name for name in one.keys() | other.keys() if one.get(name) != other.get(name))
