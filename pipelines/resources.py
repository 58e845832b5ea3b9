"""Resource configuration for this code location, overridable from the environment."""

from dagster import EnvVar

from assets.resources import DataRoot, ShardExecutorResource

RESOURCES = {
    "data_root": DataRoot(root=EnvVar("LLAMAPIPE_DATA_ROOT").get_value("data")),
    "shard_executor": ShardExecutorResource(
        workers=int(EnvVar("LLAMAPIPE_SHARD_WORKERS").get_value("0"))
    ),
}
