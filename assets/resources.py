"""Resources the assets receive: where data lives and how shard maps run.

The classes live here, beside the assets that use them; `pipelines/resources.py` decides
their configuration for a deployment.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from dagster import ConfigurableResource

from curation.executor import LocalExecutor, ShardExecutor
from curation.storage import Storage

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

    def relative(self, path: str) -> str:
        """A path under the root as stage configs record it: relative to the root, so a
        manifest is byte-identical wherever the root is (stages resolve it with
        `Storage.path`)."""
        return posixpath.relpath(path, self.storage().base)


class ShardExecutorResource(ConfigurableResource):
    """Runs a stage's per-shard map: a local process pool (`workers=0` uses every CPU the
    container may use) or a Ray cluster at `ray_address` (docs/OPERATIONS.md, "Ray"). The
    outputs are the same either way, so a deployment picks one without changing any asset."""

    kind: Literal["local", "ray"] = "local"
    workers: int = 0
    ray_address: str = "auto"
    ray_num_cpus: float = 1.0

    def executor(self) -> ShardExecutor:
        if self.kind == "ray":
            from curation.ray_executor import RayExecutor

            return RayExecutor(self.ray_address, self.ray_num_cpus)
        return LocalExecutor(self.workers)
