"""CCNet's first stages on the sample crawl, materialized through Dagster as a deployment runs
them, with the shard executor resource a test chooses: what the executor tests compare."""

from pathlib import Path

from dagster import DagsterInstance, materialize

from assets.graph import STAGE_ASSETS
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource

CRAWL = "sample"
STAGES = ("cc_documents", "cc_line_dedup", "cc_language")


def materialized_crawl_stages(
    sample_world: Path, root: Path, executor: ShardExecutorResource
) -> dict[str, bytes]:
    """Every file the stages wrote under `root/stages`, by path: parts, dropped rows,
    manifests and plots."""
    root.mkdir()
    (root / "sample").symlink_to(sample_world)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawls.name, [CRAWL])
        result = materialize(
            [STAGE_ASSETS[name] for name in STAGES],
            resources={"data_root": DataRoot(root=str(root)), "shard_executor": executor},
            instance=instance,
            partition_key=CRAWL,
        )
    assert result.success
    stages = root / "stages"
    return {str(p.relative_to(stages)): p.read_bytes() for p in stages.rglob("*") if p.is_file()}


def differing(one: dict[str, bytes], other: dict[str, bytes]) -> list[str]:
    """The files the two runs wrote differently (or only one of them wrote)."""
    return sorted(name for name in one.keys() | other.keys() if one.get(name) != other.get(name))
