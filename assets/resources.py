"""Resources the assets receive: where data lives, how shard maps run, where crawls come
from. (The fourth, `TrainingLauncher`, lives with its backends' settings in `launchers.py`.)

The classes live here, beside the assets that use them; `pipelines/resources.py` makes every
instance a deployment uses, from the environment, in one place.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from dagster import ConfigurableResource

from curation.commoncrawl.crawl_index import DEFAULT_BASE_URL, DEFAULT_INDEX_URL
from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.slurm_executor import SlurmExecutor
from curation.core.storage import Storage
from curation.recipe import PARTITION, step

SAMPLE_CRAWL = "sample"


class DataRoot(ConfigurableResource):
    """The data root: `./data` on a laptop, or any pyarrow/fsspec URI (`s3://bucket/prefix`).

    Layout under the root:
      sample/                         the embedded sample world (`llamapipe sample build`)
      raw/crawls/<crawl>/{warc,wet}/  archives of a real crawl
      stages/<asset>/<partition>/     one partition directory per stage output
    """

    root: str = "data"

    def storage(self) -> Storage:
        return Storage(self.root)

    def sample_dir(self) -> str:
        return self.storage().path("sample")

    def crawl_archives(self, crawl: str, input_format: str) -> str:
        if crawl == SAMPLE_CRAWL:
            return posixpath.join(self.sample_dir(), "crawls", SAMPLE_CRAWL, input_format)
        return self.storage().path("raw", "crawls", crawl, input_format)

    def stage_dir(self, asset: str, partition: str) -> str:
        return self.storage().path("stages", asset, partition)

    def output(self, asset: str, partition: str = PARTITION) -> str:
        """Where a step of the recipe writes a partition: its table name, checked (a name
        outside the table is an error, not a new directory)."""
        return self.stage_dir(step(asset).asset, partition)

    def relative(self, path: str) -> str:
        """A path under the root as stage configs record it: relative to the root, so a
        manifest is byte-identical wherever the root is (stages resolve it with
        `Storage.path`)."""
        return posixpath.relpath(path, self.storage().base)


class ShardExecutorResource(ConfigurableResource):
    """Runs a stage's per-shard map: a local process pool (`workers=0` uses every CPU the
    container may use), a Ray cluster at `ray_address`, or Slurm job arrays whose files live
    in `slurm_workdir`, a directory every node mounts (docs/OPERATIONS.md). The outputs are
    the same either way, so a deployment picks one without changing any asset."""

    kind: Literal["local", "ray", "slurm"] = "local"
    workers: int = 0
    ray_address: str = "auto"
    ray_num_cpus: float = 1.0
    slurm_workdir: str = ""
    slurm_partition: str = ""
    slurm_cpus_per_task: int = 1
    slurm_mem: str = ""
    slurm_time: str = "04:00:00"
    slurm_max_parallel: int = 0

    def executor(self) -> ShardExecutor:
        if self.kind == "ray":
            from curation.core.ray_executor import RayExecutor

            return RayExecutor(self.ray_address, self.ray_num_cpus)
        if self.kind == "slurm":
            return self.slurm_executor()
        return LocalExecutor(self.workers)

    def slurm_executor(self) -> SlurmExecutor:
        if not self.slurm_workdir:
            raise ValueError(
                "the Slurm shard executor needs slurm_workdir: a directory every node mounts"
            )
        return SlurmExecutor(
            workdir=self.slurm_workdir,
            partition=self.slurm_partition,
            cpus_per_task=self.slurm_cpus_per_task,
            mem=self.slurm_mem,
            time=self.slurm_time,
            max_parallel=self.slurm_max_parallel,
        )


class CrawlSource(ConfigurableResource):
    """Where crawls are published, and which of them a deployment ingests on its own.

    `index_url` is a `collinfo.json`-format list (URL or path); segments are read from
    `base_url` + `crawl-data/<crawl>/<format>.paths.gz`. The new-crawl sensor and schedule
    request crawls newer than `since` (or than the newest known crawl), `max_new` at a time,
    with `input_format` and `max_segments` (0: every segment) in the runs' configuration;
    `max_segments` is also the cap of a run that does not set one.
    """

    index_url: str = DEFAULT_INDEX_URL
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 60.0
    since: str = ""
    max_new: int = 2
    input_format: Literal["wet", "warc"] = "wet"
    max_segments: int = 100
    parallel_downloads: int = 4
