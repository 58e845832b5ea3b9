"""The `evaluation` asset materialized for real, both ways it runs: inside the Dagster step, and
launched as its own program under torchrun by the training launcher (local backend, Pipes).
Same checkpoint, same report: the launched form is the in-process one in another process.

The world is the real chain in small: contract parts -> the `Mixture` stage (with a validation
split) -> a tokenizer -> token shards -> 30 training steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import AssetMaterialization, DagsterInstance, MetadataValue, materialize
from small_run import small_run
from token_corpus import documents, write_parts

from assets.evaluation import BEATS_UNTRAINED, evaluation
from assets.launchers import MESSAGES_FILE, LocalLauncherConfig, TrainingLauncher
from assets.resources import DataRoot
from curation.core.executor import LocalExecutor
from curation.core.inputs import parquet_parts, partition_shards
from curation.core.runner import run_stage
from curation.corpus.mixture import Mixture
from curation.tokens.shards import write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer
from training.evaluation.config import results_table
from training.train import main as train_main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "max_tokens": 3000,
    "limit": 8,
    "tasks": ["heldout_continuation"],
    "max_new_tokens": 12,
    "device": "cpu",
    "suites": ["reading"],  # one suite: its table beside the paper's in the metadata
    "benchmarks": str(REPO / "sample_world" / "benchmarks"),
    "offline": True,
}


def build_world(root: Path) -> tuple[DataRoot, str]:
    """A data root with `mixture/all` and `tokenized_shards/all`, and a trained checkpoint."""
    data_root = DataRoot(root=str(root / "data"))
    storage = data_root.storage()
    write_parts(root / "docs", documents(300), 100)
    mixture_dir = data_root.stage_dir("mixture", "all")
    shares = (("commoncrawl", 0.6), ("wikipedia", 0.2), ("github", 0.2))
    stage = Mixture(shares=shares, validation_fraction=0.2)
    run_stage(
        stage, parquet_parts(storage, str(root / "docs")), mixture_dir, storage, LocalExecutor(1)
    )
    parts = [s.path for s in partition_shards(storage, mixture_dir)]
    tokenizer = train_tokenizer(parts, str(root / "tok"), storage, TokenizerConfig(vocab_size=600))
    shards_dir = data_root.stage_dir("tokenized_shards", "all")
    write_token_shards(parts, tokenizer.model_path, shards_dir, storage)
    config = small_run(
        shards_dir, root / "run", max_steps=30, checkpoint_interval=30, log_interval=30
    )
    (root / "run.json").write_text(config.to_json())
    assert train_main(["--config", str(root / "run.json")]) == 0
    return data_root, str(root / "run")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[DataRoot, DagsterInstance]:
    data_root, run = build_world(tmp_path_factory.mktemp("evaluation"))
    instance = DagsterInstance.ephemeral()
    # What `pretrain` records when it finishes: the evaluation follows its checkpoint.
    metadata = {"checkpoint": MetadataValue.path(run)}
    instance.report_runless_asset_event(AssetMaterialization("pretrain", metadata=metadata))
    return data_root, instance


def _evaluate(world, runner: str):
    data_root, instance = world
    launcher = TrainingLauncher(local=LocalLauncherConfig(nproc_per_node=1), poll_interval_s=0.5)
    result = materialize(
        [evaluation],
        resources={"data_root": data_root, "training_launcher": launcher},
        run_config={"ops": {"evaluation": {"config": {"runner": runner, **SETTINGS}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("evaluation")
    (check,) = result.get_asset_check_evaluations()
    return {k: v.value for k, v in materialization.metadata.items()}, check


def test_launched_evaluation_reports_what_the_in_process_one_does(world):
    in_process, check = _evaluate(world, "in_process")
    assert check.check_name == BEATS_UNTRAINED and check.passed
    launched, check = _evaluate(world, "launcher")
    assert check.passed and launched["runner"] == "launcher"

    # One measurement, two processes: the table a person reads is the same, and so is the
    # greedy sample.
    assert results_table(launched["report"], {}) == results_table(in_process["report"], {})
    assert launched["sample"] == in_process["sample"]
    assert launched["report"]["step"] == 30
    # The second evaluation is shown next to the previous one.
    assert "| previous |" in launched["results"].splitlines()[0]
    # The reading suite's table: RACE-high beside the paper's 7B figure (Table 6) and,
    # the second time, beside the first evaluation's value.
    race = in_process["report"]["suites"]["suites"]["reading"]["rows"][0]
    assert race["status"] == "ok" and race["n"] == 3
    ours = f"{race['value'] * 100:.1f}"
    assert (
        launched["suite reading"].splitlines()[2]
        == f"RACE-high (0-shot) | acc | {ours} | 46.9 | {ours}"
    )

    # The program ran under torchrun, got its job as config.json, and rank 0 reported once.
    launches = Path(world[0].stage_dir("evaluation", "all"), "launches")
    (launch_dir,) = launches.iterdir()
    job = json.loads((launch_dir / "config.json").read_text())
    assert job["config"]["limit"] == 8 and job["checkpoint"].endswith("run")
    messages = [
        json.loads(line) for line in (launch_dir / MESSAGES_FILE).read_text().split("\n") if line
    ]
    methods = [m["method"] for m in messages]
    assert methods.count("opened") == 1 and methods.count("report_asset_materialization") == 1
    (reported,) = [m for m in messages if m["method"] == "report_asset_materialization"]
    perplexity = reported["params"]["metadata"]["heldout_perplexity"]["raw_value"]
    assert perplexity == launched["heldout_perplexity"]
