"""The sample graph with its data root on an S3 server (tests/object_store.py): every data
asset materializes there through the real `dagster job execute`, and what it writes under
`stages/`, `models/` and `card/` is byte-identical to the local run's (tests/conftest.py
`materialized`), but for what no two runs can reproduce (scripts/same_outputs.py). Then the
model trains on the store's token shards into a run directory on the store, and its
checkpoint is exported to Hugging Face's format there.

Slow (about 6 minutes on 2 cores, on top of the local run the end-to-end tests share);
marked, and run in CI all the same.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml
from conftest import REPO
from object_store import new_bucket
from sample_graph import BIN, graph_env, materialize_sample_graph, same_outputs

from curation.core.storage import Storage
from training.checkpoint import load_model

pytestmark = pytest.mark.slow


def copy_sample_world(sample_world: Path, root: str) -> None:
    """The sample world under `<root>/sample`, as the local run's root has it (a symlink)."""
    storage = Storage(root)
    pafs.copy_files(
        str(sample_world),
        storage.path("sample"),
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=storage.fs,
    )


@dataclass(frozen=True)
class StoreRun:
    root: str
    differences: list[str]  # from the local run's, before training
    compared: list[str]


@pytest.fixture(scope="module")
def s3_run(s3_env, sample_world, materialized, tmp_path_factory) -> StoreRun:
    """The sample graph materialized with `LLAMAPIPE_DATA_ROOT=s3://<new bucket>/data`, in a
    Dagster instance of its own; objects that native libraries open by name are fetched into a
    cache of its own too, so nothing of the local run is reused. Compared with the local run,
    then trained on."""
    root = f"s3://{new_bucket(s3_env)}/data"
    copy_sample_world(sample_world, root)
    scratch = tmp_path_factory.mktemp("s3_run")
    env = graph_env(scratch / "dagster_home", root, LLAMAPIPE_CACHE=str(scratch / "cache"))
    materialize_sample_graph(env)
    compare = same_outputs()
    _, stages = materialized
    run = StoreRun(root, compare.differences(stages.parent, root), list(compare.files(root)))
    train_on_the_store(env)
    return run


def train_on_the_store(env: dict[str, str]) -> None:
    """`pretrain` (the demo's run, shortened to two checkpoints) and `hf_export`."""
    config = yaml.safe_load((REPO / "pipelines" / "sample" / "train.yaml").read_text())
    config["ops"]["pretrain"]["config"] |= {"max_steps": 20, "checkpoint_interval": 10}
    del config["ops"]["evaluation"]  # not selected here
    command = [BIN / "dagster", "asset", "materialize", "-m", "pipelines.definitions"]
    command += ["--select", "pretrain,hf_export", "--config-json", json.dumps(config)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_every_output_on_s3_is_byte_identical_to_the_local_run(s3_run):
    assert s3_run.differences == []
    # The whole graph was compared, not an empty listing; a staging directory left behind
    # would be a file only on S3.
    assert {name.split("/")[0] for name in s3_run.compared} == {"stages", "models", "card"}
    assert sum(name.endswith("/_manifest.json") for name in s3_run.compared) >= 15


def test_the_model_trains_and_exports_on_the_store(s3_run):
    store = Storage(s3_run.root)
    run = store.path("stages", "pretrain", "all", "runs", "tiny")
    result = json.loads(store.read_bytes(f"{run}/result.json"))
    assert result["status"] == "completed" and result["steps"] == 20
    assert result["last_checkpoint"] == f"{store.uri(run)}/checkpoints/step-0000020"
    metrics = store.read_bytes(f"{run}/metrics.jsonl").decode().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == sorted(set(steps)) and steps[-1] == 20
    model, state = load_model(result["last_checkpoint"])
    assert state["state"]["step"] == 20 and model.config.dim == 128
    export = store.path("stages", "hf_export", "all")
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        assert store.exists(f"{export}/{name}"), name
