"""`pretrain` materialized for real: the trainer under torchrun with two CPU processes (Gloo,
FSDP), launched by the local backend, reporting through Dagster Pipes, on token shards the
real shard writer made from a small corpus and tokenizer."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from dagster import DagsterInstance, materialize, validate_run_config
from small_run import SMALL_RUN
from token_corpus import documents, write_parts

from assets.launchers import MESSAGES_FILE, LocalLauncherConfig, TrainingLauncher
from assets.resources import DataRoot
from assets.training import LOSS_DECREASED, PretrainConfig, pretrain, train_config
from curation.core.storage import Storage
from curation.tokens.shards import TokenShardsConfig, write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer
from pipelines.definitions import defs
from training.optim import build_optimizer

VOCAB = 600
# Small enough for two CPU processes in seconds; the loss falls well within 40 steps.
TRAIN = SMALL_RUN | {"warmup_steps": 5, "log_interval": 5, "checkpoint_interval": 20}


def build_shards(root: Path) -> DataRoot:
    """A data root whose `tokenized_shards/all` holds ~50k tokens of a 600-piece vocabulary."""
    data_root = DataRoot(root=str(root / "data"))
    parts = write_parts(root / "corpus", documents(240), 60)
    settings = TokenizerConfig(vocab_size=VOCAB, character_coverage=0.995)
    model = train_tokenizer(parts, str(root / "tok"), Storage(str(root)), settings).model_path
    output = data_root.stage_dir("tokenized_shards", "all")
    write_token_shards(
        parts, model, output, data_root.storage(), config=TokenShardsConfig(shard_tokens=4096)
    )
    return data_root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> DataRoot:
    return build_shards(tmp_path_factory.mktemp("pretrain"))


def _materialize(data_root: DataRoot, nproc: int, **config):
    launcher = TrainingLauncher(
        local=LocalLauncherConfig(nproc_per_node=nproc), poll_interval_s=0.5
    )
    return materialize(
        [pretrain],
        resources={"data_root": data_root, "training_launcher": launcher},
        run_config={"ops": {"pretrain": {"config": TRAIN | config}}},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _messages(launch_dir: str) -> list[dict]:
    lines = (Path(launch_dir) / MESSAGES_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_pretrain_trains_on_two_processes_and_reports_once(data_root):
    result = _materialize(data_root, nproc=2)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("pretrain")
    metadata = {key: value.value for key, value in materialization.metadata.items()}

    # Trained: the loss fell from about ln(vocab) and the run covered every step.
    assert metadata["steps"] == 40 and metadata["world_size"] == 2
    assert metadata["final_loss"] < math.log(VOCAB) - 1
    assert metadata["tokens_seen"] == 40 * 8 * 64 * 2
    assert metadata["mfu"] is None  # CPU: no peak to compare with
    assert "![loss](data:image/png;base64," in metadata["loss_curve"]
    run_dir = Path(metadata["path"])
    assert Path(metadata["checkpoint"]) == run_dir / "checkpoints" / "step-0000040"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-0000040"
    assert (run_dir.parent / "tiny.plots" / "loss.png").stat().st_size > 1000
    assert metadata["config"]["data_dir"] == data_root.stage_dir("tokenized_shards", "all")

    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == LOSS_DECREASED and check.passed

    # Only rank 0 opened the Pipes channel and reported, exactly once.
    launch = metadata["launch"]
    assert launch["backend"] == "local" and launch["pipes_channels_opened"] == 1
    methods = [m["method"] for m in _messages(launch["launch_dir"])]
    assert methods.count("opened") == 1 and methods.count("closed") == 1
    assert methods.count("report_asset_materialization") == 1
    assert methods.count("log") >= 8  # progress lines, streamed through Pipes
    config = json.loads((Path(launch["launch_dir"]) / "config.json").read_text())
    assert config["max_steps"] == 40 and config["output_dir"] == str(run_dir)


def test_a_failed_run_fails_the_step_with_its_log(data_root, monkeypatch):
    """The trainer stops on a non-finite loss (exit 3, torchrun's 1): the step fails, with
    the end of the log in its metadata."""
    monkeypatch.setenv("LLAMAPIPE_FAULT_NAN_STEPS", "1")
    result = _materialize(data_root, nproc=1, run_name="diverges", max_bad_steps=1)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data
    assert "did not complete: EXITED 1" in error.error.message
    assert "non-finite" in error.user_failure_data.metadata["log_tail"].value
    assert not result.asset_materializations_for_node("pretrain")


def test_the_defaults_are_the_papers_7b_run():
    """Section 2.3 and Table 2: what `pretrain` trains when its config names nothing."""
    run = train_config(PretrainConfig(), "data", "out")
    assert (run.model, run.seq_len, run.global_batch_tokens) == ("7B", 2048, 4_194_304)
    assert (run.lr, run.warmup_steps, run.min_lr_ratio) == (3e-4, 2000, 0.1)
    assert run.max_steps == 238_419  # the first step count that covers 1T tokens of 4M
    assert (run.adam_beta1, run.adam_beta2, run.weight_decay, run.grad_clip) == (0.9, 0.95, 0.1, 1)
    assert run.activation_checkpointing == "selective" and run.compile
    assert run.micro_batch_size == 2 and run.grad_accum(dp_ranks=256) == 4
    # Held-out curves on by default (the paper gives no interval: docs/TRAINING.md).
    assert (run.eval_every, run.eval_tokens, run.eval_mixture) == (500, 1_048_576, "")
    assert build_optimizer(torch.nn.Linear(2, 2), lr=1.0).defaults["betas"] == (0.9, 0.95)
    # Choosing a preset chooses its Table 2 row.
    big = train_config(PretrainConfig(model="33B"), "data", "out")
    assert big.lr == 1.5e-4 and big.max_steps == 333_787  # 1.4T tokens of 4M
    assert (big.seq_len, big.global_batch_tokens, big.warmup_steps) == (2048, 4_194_304, 2000)


def test_sample_run_config_is_valid_for_the_train_job():
    """The demo's tiny run is all in train.yaml: a valid, short CPU run on one or two ranks."""
    run_config = yaml.safe_load((REPO / "pipelines" / "sample" / "train.yaml").read_text())
    validate_run_config(defs.resolve_job_def("train"), run_config)
    run = train_config(PretrainConfig(**run_config["ops"]["pretrain"]["config"]), "d", "o")
    assert (run.model, run.device, run.compile, run.activation_checkpointing) == (
        "tiny", "cpu", False, "off"
    )  # fmt: skip
    assert run.max_steps <= 300 and run.warmup_steps < run.max_steps
    assert run.max_steps // run.eval_every >= 4  # several points on the held-out curves
    assert run.grad_accum(dp_ranks=1) == 2 and run.grad_accum(dp_ranks=2) == 1
