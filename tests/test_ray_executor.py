"""The Ray shard executor on a real local Ray cluster (a head and a worker node, each started
with `ray start` on 127.0.0.1): the CommonCrawl stages and global dedup on the sample crawl
write byte-identical outputs to the process pool's, and a failing item surfaces as itself once
the others have finished. Configuration picks the executor without importing Ray."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from conftest import REPO
from crawl_stages import differing, materialized_crawl_stages

from assets.resources import ShardExecutorResource
from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.langid import LanguageId
from curation.commoncrawl.line_dedup import LineDedup
from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.inputs import archive_shards, partition_shards
from curation.core.ray_executor import RayExecutor
from curation.core.runner import run_stage
from curation.core.storage import Storage
from curation.dedup.corpus import CorpusGroup, corpus_inputs
from curation.dedup.near_dedup import Deduplicated
from curation.dedup.signatures import MinHashSignatures

try:
    import ray
except ImportError:
    pytest.fail("ray is not installed: run `make setup`", pytrace=False)

BIN = Path(sys.executable).parent
CRAWL = "sample"
# Each node gets 1 CPU: two nodes, so the map really spreads over the cluster.
NODE_OPTIONS = ["--num-cpus", "1", "--object-store-memory", str(100 << 20)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    """One `ray start --block` in its own process group: stopping the group stops exactly
    this node's processes (raylet, GCS, agents, workers), never another Ray on the machine
    as `ray stop` would."""

    def __init__(self, temp_dir: str, role: str, options: list[str]):
        self.log = Path(temp_dir) / f"{role}.log"
        command = [
            BIN / "ray",
            "start",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            temp_dir,
            "--disable-usage-stats",
            "--dashboard-agent-listen-port",
            str(free_port()),
            *NODE_OPTIONS,
            *options,
        ]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # HOME in the cluster's temp dir: a `~/.ray/auth_token` that an earlier local
                # `ray.init()` left would make the GCS demand a token nobody here holds.
                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp_dir},
            )

    def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


def stop(nodes: list[RayNode], grace: float = 2) -> None:
    """SIGTERM for a clean exit, then SIGKILL for whatever is left of each group (`ray start
    --block` does not always exit on SIGTERM alone)."""
    for node in nodes:
        node.send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(max(0.1, deadline - time.monotonic()))
    for node in nodes:
        node.send(signal.SIGKILL)
        node.process.wait()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """The GCS address of a two-node cluster, stopped (and its files removed) at the end."""
    # A short temp dir: Ray's Unix sockets live under it and their paths are capped at 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = free_port()
    nodes: list[RayNode] = []
    try:
        head_options = ["--head", "--port", str(port), "--include-dashboard", "false"]
        head_options += ["--ray-client-server-port", str(free_port())]
        head_options += ["--dashboard-port", str(free_port())]
        nodes.append(RayNode(temp_dir, "head", head_options))
        # Started at once: the worker node waits for the head's GCS by itself.
        nodes.append(RayNode(temp_dir, "worker", ["--address", f"127.0.0.1:{port}"]))
        for node in nodes:
            node.wait_started()
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        stop(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)


def crawl_and_dedup(sample: Path, root: Path, executor: ShardExecutor) -> None:
    """CCNet's first stages on the sample crawl, then signatures and global dedup over the
    result: every stage's per-shard map and dedup's map-reduce steps go through `executor`."""
    storage = Storage("/")

    def run(stage, inputs, name: str) -> str:
        run_stage(stage, inputs, str(root / name), storage, executor)
        return str(root / name)

    wet = str(sample / "crawls" / CRAWL / "wet")
    documents = run(CCDocuments(crawl=CRAWL), archive_shards(storage, wet), "documents")
    lines = run(LineDedup(), partition_shards(storage, documents), "lines")
    language = run(LanguageId(), partition_shards(storage, lines), "language")
    signatures = run(MinHashSignatures(), partition_shards(storage, language), "signatures")
    groups = [CorpusGroup(f"commoncrawl/{CRAWL}", language, signatures, CRAWL)]
    run(Deduplicated(), corpus_inputs(storage, groups), "deduplicated")


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_crawl_stages_and_dedup_on_ray_equal_the_process_pool(ray_cluster, sample_world, tmp_path):
    crawl_and_dedup(sample_world, tmp_path / "ray", RayExecutor(ray_cluster))
    crawl_and_dedup(sample_world, tmp_path / "local", LocalExecutor(2))

    on_ray, local = files_under(tmp_path / "ray"), files_under(tmp_path / "local")
    assert sorted(on_ray) == sorted(local)
    assert any(name.startswith("deduplicated/_dropped/") for name in local)
    differing = [name for name in sorted(local) if on_ray[name] != local[name]]
    assert not differing, f"Ray and the process pool wrote different bytes: {differing}"


def sleep_then_touch(directory: Path, item: int) -> int:
    """Item 0 fails at once; the others finish later, each leaving a file (naming the node
    it ran on) as proof."""
    if item == 0:
        raise FileNotFoundError(errno.ENOENT, "shard 0 is missing", str(directory / "0"))
    time.sleep(0.5)
    (directory / str(item)).write_text(ray.get_runtime_context().get_node_id())
    return item


@pytest.mark.slow
def test_crawl_stages_materialized_on_ray_equal_the_process_pool(
    ray_cluster, sample_world, tmp_path
):
    """Through Dagster, as a deployment runs them: the shard executor resource set to Ray
    writes byte for byte what the process pool writes."""
    on_ray = ShardExecutorResource(kind="ray", ray_address=ray_cluster)
    ray_files = materialized_crawl_stages(sample_world, tmp_path / "ray", on_ray)
    local = ShardExecutorResource(kind="local", workers=2)
    local_files = materialized_crawl_stages(sample_world, tmp_path / "local", local)
    assert len(local_files) >= 3 * 8
    assert differing(ray_files, local_files) == []


@pytest.mark.slow
def test_a_failure_surfaces_as_itself_after_every_other_item_finished(ray_cluster, tmp_path):
    # Ray workers cannot import test modules: this one's functions travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        finished = []
        with pytest.raises(FileNotFoundError, match="shard 0 is missing") as raised:
            for item in RayExecutor(ray_cluster).map_unordered(
                partial(sleep_then_touch, tmp_path), range(6)
            ):
                finished.append(item)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert sorted(finished) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2", "3", "4", "5"]
    assert len({p.read_text() for p in tmp_path.iterdir()}) == 2, "both nodes ran items"
    assert type(raised.value) is FileNotFoundError
    assert raised.value.filename == str(tmp_path / "0")
    # The worker's traceback is kept as the cause.
    assert "sleep_then_touch" in str(raised.value.__cause__)


def test_configuration_selects_the_executor_without_importing_ray():
    assert ShardExecutorResource().executor() == LocalExecutor(0)
    chosen = ShardExecutorResource(kind="ray", ray_address="ray://h:1", ray_num_cpus=2)
    assert chosen.executor() == RayExecutor("ray://h:1", num_cpus=2)

    # The deployment's environment, read by the code location; Ray is imported by a map only.
    script = (
        "import sys\n"
        "from pipelines.resources import RESOURCES\n"
        "print(RESOURCES['shard_executor'].executor())\n"
        "assert 'ray' not in sys.modules, 'ray imported before a map runs'\n"
    )
    env = {**os.environ, "LLAMAPIPE_SHARD_EXECUTOR": "ray", "LLAMAPIPE_RAY_ADDRESS": "ray://h:1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "RayExecutor(address='ray://h:1'" in result.stdout
