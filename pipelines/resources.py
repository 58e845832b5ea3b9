"""Resource configuration for this code location, overridable from the environment."""

from dagster import EnvVar

from assets.launchers import LocalLauncherConfig, TrainingLauncher
from assets.resources import DataRoot, ShardExecutorResource

RESOURCES = {
    "data_root": DataRoot(root=EnvVar("LLAMAPIPE_DATA_ROOT").get_value("data")),
    # The shard map: a process pool here, or a Ray cluster (docs/OPERATIONS.md, "Ray").
    "shard_executor": ShardExecutorResource(
        kind=EnvVar("LLAMAPIPE_SHARD_EXECUTOR").get_value("local"),
        workers=int(EnvVar("LLAMAPIPE_SHARD_WORKERS").get_value("0")),
        ray_address=EnvVar("LLAMAPIPE_RAY_ADDRESS").get_value("auto"),
    ),
    # Training: torchrun on this machine, one process (CPU) unless told otherwise; a cluster
    # deployment sets backend "slurm" or "kubernetes" and their settings here.
    "training_launcher": TrainingLauncher(
        backend="local",
        local=LocalLauncherConfig(
            nproc_per_node=int(EnvVar("LLAMAPIPE_TRAIN_NPROC").get_value("1"))
        ),
    ),
}
