"""A Dagster code location of the `wikipedia` asset alone, for test_crash_resume.py: `dagster
asset materialize` on it starts in seconds, where `pipelines.definitions` imports the whole
graph (torch included) before the first step. The asset and its resources are the real ones."""

from dagster import Definitions, EnvVar

from assets.resources import DataRoot, ShardExecutorResource
from assets.sources import HOOKS
from assets.stage_assets import stage_asset

wikipedia = stage_asset("wikipedia", HOOKS["wikipedia"])

defs = Definitions(
    assets=[wikipedia],
    resources={
        "data_root": DataRoot(root=EnvVar("LLAMAPIPE_DATA_ROOT")),
        "shard_executor": ShardExecutorResource(workers=1),
    },
)
