"""Every resource instance of this code location, configured from the environment in this
one place (the classes are in `assets/resources.py` and `assets/launchers.py`)."""

from collections.abc import Sequence

from dagster import EnvVar

from assets.launchers import LocalLauncherConfig, TrainingLauncher
from assets.resources import CrawlSource, DataRoot, ShardExecutorResource
from curation.commoncrawl.crawl_index import DEFAULT_BASE_URL, DEFAULT_INDEX_URL, validate_crawl_id


def _env(name: str, default: str) -> str:
    return EnvVar(name).get_value(default)


def env_choice(name: str, choices: Sequence[str]) -> str:
    """An environment setting that must be one of `choices` (the first is the default)."""
    value = _env(name, choices[0])
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


SINCE = _env("LLAMAPIPE_CRAWLS_SINCE", "")

RESOURCES = {
    "data_root": DataRoot(root=_env("LLAMAPIPE_DATA_ROOT", "data")),
    # The shard map: a process pool here, a Ray cluster or Slurm job arrays
    # (docs/OPERATIONS.md, "Ray" and "Slurm job arrays").
    "shard_executor": ShardExecutorResource(
        kind=_env("LLAMAPIPE_SHARD_EXECUTOR", "local"),
        workers=int(_env("LLAMAPIPE_SHARD_WORKERS", "0")),
        ray_address=_env("LLAMAPIPE_RAY_ADDRESS", "auto"),
        slurm_workdir=_env("LLAMAPIPE_SLURM_WORKDIR", ""),
        slurm_partition=_env("LLAMAPIPE_SLURM_PARTITION", ""),
    ),
    # Training: torchrun on this machine, one process (CPU) unless told otherwise; a cluster
    # deployment sets backend "slurm" or "kubernetes" and their settings here.
    "training_launcher": TrainingLauncher(
        backend="local",
        local=LocalLauncherConfig(nproc_per_node=int(_env("LLAMAPIPE_TRAIN_NPROC", "1"))),
    ),
    # Where crawls are published, and which the new-crawl sensor and schedule ingest
    # (docs/OPERATIONS.md, "New crawls").
    "crawl_source": CrawlSource(
        index_url=_env("LLAMAPIPE_CRAWL_INDEX", DEFAULT_INDEX_URL),
        base_url=_env("LLAMAPIPE_CRAWL_BASE_URL", DEFAULT_BASE_URL),
        since=validate_crawl_id(SINCE) if SINCE else "",
        max_new=int(_env("LLAMAPIPE_CRAWLS_MAX_NEW", "2")),
        input_format=env_choice("LLAMAPIPE_CRAWL_FORMAT", ("wet", "warc")),
        max_segments=int(_env("LLAMAPIPE_CRAWL_MAX_SEGMENTS", "100")),
    ),
}
