"""The trainer (training/train.py) on CPU: learning, exact resume after SIGKILL and SIGTERM,
FSDP over 2 processes and over a 2-node rendezvous, non-finite steps, atomic checkpoints,
Dagster Pipes.

Every run is the small run of tests/small_run.py (the "tiny" preset) on synthetic
Markov-chain shards (tests/train_shards.py).
The reference is one process with gradient accumulation 2: `STEPS` steps of 256 tokens.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dagster_pipes import encode_param
from small_run import small_run
from torch.distributed.checkpoint import CheckpointException
from train_shards import write_shards

from model import LlamaConfig
from model.config import PRESETS
from training import checkpoint as checkpoint_module
from training.checkpoint import SafeLoadPlanner, latest_checkpoint
from training.config import PAPER_BATCH_TOKENS, RECIPES, TrainConfig
from training.train import (
    DIVERGED_EXIT_CODE,
    FAULT_NAN_STEPS_ENV,
    PREEMPTED_EXIT_CODE,
    main,
    train,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = 12
# FSDP averages gradients with a reduce-scatter, one process sums micro-batch gradients: the
# same math in another order, so float32 rounding differs (measured ~1e-7 relative per step).
FSDP_RTOL = 1e-5


def _config(data_dir: Path, output: Path, **overrides) -> TrainConfig:
    reference = {
        "seq_len": 32,
        "micro_batch_size": 4,
        "global_batch_tokens": 256,  # accumulation 2 in one process, 1 in two
        "max_steps": STEPS,
        "warmup_steps": 3,
        "log_interval": 1,
        "checkpoint_interval": 4,
    }
    return small_run(data_dir, output, **reference | overrides)


def _write_config(config: TrainConfig) -> Path:
    path = Path(config.output_dir + ".json")
    path.write_text(config.to_json())
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != FAULT_NAN_STEPS_ENV}
    return env | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"} | extra


def _trainer(config: TrainConfig) -> subprocess.Popen:
    """The trainer in a process group of its own (as torchrun starts its workers)."""
    command = [sys.executable, "-m", "training.train", "--config", str(_write_config(config))]
    return subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, start_new_session=True
    )


def _losses(output: Path) -> dict[int, float | None]:
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), "every step logged once"
    return {r["step"]: r["loss"] for r in records}


def _result(output: Path) -> dict:
    return json.loads((output / "result.json").read_text())


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"trainer exited early with {process.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_close(losses: dict, reference: dict, rtol: float) -> None:
    assert losses.keys() == reference.keys()
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=rtol), step


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, in this process and the trainers it starts: on shared cores two
    threads per process spin against each other (several times slower), and in-process and
    subprocess runs must use the same kernels for their losses to be bit-identical."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("train") / "shards")


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict[int, float]:
    """Per-step losses of the uninterrupted one-process run."""
    output = tmp_path_factory.mktemp("reference") / "run"
    assert train(_config(data_dir, output))["status"] == "completed"
    return _losses(output)


def test_config_json_round_trip_and_errors():
    config = TrainConfig(data_dir="d", output_dir="o", lr=0.01)
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_json('{"max_step": 5}')
    with pytest.raises(ValueError, match="must be int"):
        config.with_overrides(max_steps="5")
    with pytest.raises(ValueError, match="activation_checkpointing"):
        config.with_overrides(activation_checkpointing="some")
    with pytest.raises(ValueError, match="not a multiple"):
        TrainConfig(global_batch_tokens=1000).grad_accum(dp_ranks=2)
    assert TrainConfig(seq_len=64, micro_batch_size=2, global_batch_tokens=512).grad_accum(2) == 2
    with pytest.raises(ValueError, match="unknown model preset"):
        TrainConfig(model="7b")
    with pytest.raises(ValueError, match="eval_every must be >= 0"):
        TrainConfig(eval_every=-1)
    with pytest.raises(ValueError, match="eval_tokens must be >= 1"):
        TrainConfig(eval_tokens=0)
    with pytest.raises(ValueError, match="set one"):
        TrainConfig(global_batch_tokens=0)  # no batch size to derive max_steps from
    with pytest.raises(ValueError, match="warmup_steps 2000 exceeds max_steps 43"):
        TrainConfig(model="tiny").resolve()  # 180M tokens are 43 steps of 4M


def test_derived_fields_come_from_the_presets_recipe():
    """0 in lr, max_steps or micro_batch_size takes the preset's row; a set value stays."""
    assert set(RECIPES) == set(PRESETS)
    run = TrainConfig().resolve()  # 7B
    assert (run.lr, run.micro_batch_size) == (3e-4, 2)
    assert run.max_steps == 238_419  # the first step count that covers 1T tokens
    assert (run.max_steps - 1) * PAPER_BATCH_TOKENS < 10**12 <= run.max_steps * PAPER_BATCH_TOKENS
    assert run.grad_accum(dp_ranks=256) == 4  # 4M tokens: 2 x 2048 x 256 x 4
    assert run.resolve() == run
    mine = TrainConfig(model="13B", lr=1e-4, max_steps=5000, micro_batch_size=4).resolve()
    assert (mine.lr, mine.max_steps, mine.micro_batch_size) == (1e-4, 5000, 4)
    # The small shapes: 20 tokens per parameter at a 32000-piece vocabulary.
    for name in ("tiny", "small", "1.36B"):
        params = LlamaConfig.preset(name, vocab_size=32000).num_params()
        assert RECIPES[name].tokens == pytest.approx(20 * params, rel=0.01), name


def test_loss_falls_and_outputs_are_written(data_dir, tmp_path):
    output = tmp_path / "run"
    config = _config(data_dir, output, micro_batch_size=8, global_batch_tokens=0)
    result = train(config.with_overrides(max_steps=30, log_interval=5, checkpoint_interval=15))
    losses = _losses(output)
    assert list(losses) == list(range(5, 31, 5))
    # From ~ln(256) = 5.5 (uniform) towards ln(4): a nat below uniform within 30 steps.
    assert losses[30] < losses[5] and losses[30] < math.log(256) - 1.0
    assert result["status"] == "completed" and result == _result(output)
    assert result["steps"] == 30 and result["tokens_seen"] == 30 * 8 * 32
    assert result["skipped_steps"] == 0 and result["mfu"] is None  # no MFU on a CPU
    assert result["mean_tokens_per_s"] > 0 and result["final_loss"] < losses[5]
    assert result["last_checkpoint"] == str(output / "checkpoints" / "step-0000030")
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    record = json.loads((output / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record) >= {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "tokens_seen"}


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_exactly(data_dir, tmp_path, reference, ledger):
    output = tmp_path / "run"
    config = _config(data_dir, output)
    process = _trainer(config)
    _wait_for(lambda: (output / "checkpoints" / "latest").exists(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    ledger.fault("sigkill_training")
    assert not (output / "result.json").exists(), "killed before the end"
    resumed_at = int(latest_checkpoint(output).name.removeprefix("step-"))
    assert resumed_at < STEPS

    assert train(config)["status"] == "completed"
    # Bit-exact: same ops in the same order on the same CPU, state restored to the last bit.
    assert _losses(output) == reference


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes(data_dir, tmp_path, reference, ledger):
    output = tmp_path / "run"
    # DataLoader workers: the group-wide SIGTERM (what torchrun sends) must not kill them.
    config = _config(data_dir, output, checkpoint_interval=100, loader_workers=2)
    process = _trainer(config)
    _wait_for(
        lambda: len(_losses(output)) >= 2 if (output / "metrics.jsonl").exists() else 0, process
    )
    os.killpg(process.pid, signal.SIGTERM)
    ledger.fault("sigterm_training")
    assert process.wait(timeout=120) == PREEMPTED_EXIT_CODE
    result = _result(output)
    stopped = result["steps"]
    assert result["status"] == "preempted" and 2 <= stopped < STEPS
    assert latest_checkpoint(output).name == f"step-{stopped:07d}"
    assert result["last_checkpoint"] == str(latest_checkpoint(output))

    lines = []
    assert train(config, echo=lines.append)["status"] == "completed"
    assert lines[0].endswith(f"at step {stopped}")
    assert lines[1].startswith(f"step {stopped + 1}/{STEPS} ")
    assert _losses(output) == reference


def _pipes_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    context = {"asset_keys": ["pretrain"], "run_id": "r1", "retry_number": 0, "extras": {}}
    context |= dict.fromkeys(["code_version_by_asset_key", "provenance_by_asset_key"])
    context |= dict.fromkeys(["partition_key", "partition_key_range", "partition_time_window"])
    context |= {"job_name": None}
    context_file, messages = tmp_path / "context.json", tmp_path / "messages.jsonl"
    context_file.write_text(json.dumps(context))
    env = {
        "DAGSTER_PIPES_CONTEXT": encode_param({"path": str(context_file)}),
        "DAGSTER_PIPES_MESSAGES": encode_param({"path": str(messages)}),
    }
    return env, messages


@pytest.mark.slow
def test_two_process_fsdp_matches_one_process_and_reports_through_pipes(
    data_dir, tmp_path, reference
):
    output = tmp_path / "run"
    pipes_env, messages_file = _pipes_env(tmp_path)
    command = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "training.train", "--config", str(_write_config(_config(data_dir, output)))]
    subprocess.run(command, cwd=REPO, env=_env(**pipes_env), check=True, capture_output=True)

    losses = _losses(output)
    assert losses[STEPS] < losses[1] - 0.4  # learns (0.47 in 12 steps from seed 0)
    _assert_close(losses, reference, FSDP_RTOL)
    shards = sorted(p.name for p in (output / "checkpoints" / "step-0000012").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own shard

    messages = [json.loads(line) for line in messages_file.read_text().splitlines()]
    methods = [m["method"] for m in messages]
    assert methods.count("opened") == 1, "only rank 0 opens the Pipes channel"
    assert methods[-1] == "closed" and methods.count("log") == STEPS
    (report,) = [m["params"] for m in messages if m["method"] == "report_asset_materialization"]
    metadata = {key: value["raw_value"] for key, value in report["metadata"].items()}
    assert metadata["final_loss"] == _result(output)["final_loss"]
    assert metadata["steps"] == STEPS and metadata["tokens_seen"] == STEPS * 256
    assert metadata["last_checkpoint"].endswith("step-0000012")


@pytest.mark.slow
def test_two_node_rendezvous_matches_one_process(data_dir, tmp_path, reference):
    output = tmp_path / "run"
    config_file = _write_config(_config(data_dir, output))
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1"]
            + ["--node-rank", str(rank), "--rdzv-id", "test", "--rdzv-backend", "c10d"]
            + ["--rdzv-endpoint", endpoint, "-m", "training.train", "--config", str(config_file)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        _, stderr = node.communicate(timeout=300)
        assert node.returncode == 0, stderr.decode()[-3000:]
    assert _result(output)["world_size"] == 2
    _assert_close(_losses(output), reference, FSDP_RTOL)


def test_non_finite_steps_are_skipped_and_counted(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_NAN_STEPS_ENV, "3,4")
    output = tmp_path / "run"
    result = train(_config(data_dir, output, max_steps=8, max_bad_steps=3))
    assert result["status"] == "completed" and result["skipped_steps"] == 2
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] is None for r in records] == [False, False, True, True] + [False] * 4
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 2, 2, 2, 2, 2]
    assert all(r["grad_norm"] is None for r in records[2:4])
    assert result["final_loss"] == records[-1]["loss"]


def test_too_many_bad_steps_stop_and_the_last_checkpoint_resumes(
    data_dir, tmp_path, monkeypatch, reference
):
    output = tmp_path / "run"
    config = _config(data_dir, output, max_bad_steps=3)
    monkeypatch.setenv(FAULT_NAN_STEPS_ENV, "6,7,8")
    assert main(["--config", str(_write_config(config))]) == DIVERGED_EXIT_CODE
    result = _result(output)
    assert result["status"] == "diverged" and result["steps"] == 8
    assert "3 consecutive steps" in result["error"]
    assert latest_checkpoint(output).name == "step-0000004"  # nothing saved after the NaNs

    monkeypatch.delenv(FAULT_NAN_STEPS_ENV)
    assert train(config)["status"] == "completed"
    assert _losses(output) == reference  # the checkpoint of step 4 was the good state


def test_checkpoints_are_atomic_and_pruned(data_dir, tmp_path, monkeypatch):
    output = tmp_path / "run"
    config = _config(data_dir, output, max_steps=12, keep_checkpoints=2)
    real_save = dcp.save

    def crash_at_step_8(state, *, checkpoint_id, **kwargs):
        real_save(state, checkpoint_id=checkpoint_id, **kwargs)
        if Path(checkpoint_id).name.startswith("step-0000008"):
            raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(checkpoint_module.dcp, "save", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    root = output / "checkpoints"
    assert (root / "step-0000008.tmp").is_dir()  # written but never committed
    assert latest_checkpoint(output) == root / "step-0000004"

    monkeypatch.setattr(checkpoint_module.dcp, "save", real_save)
    assert train(config)["status"] == "completed"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000008", "step-0000012"]
    latest = latest_checkpoint(output)
    assert latest.name == "step-0000012"
    assert {".metadata", "trainer.json", "rng-rank00000.json"} <= {p.name for p in latest.iterdir()}
    assert json.loads((latest / "trainer.json").read_text())["state"]["step"] == 12


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil"
    dcp.save(
        {"x": torch.zeros(2), "extra": {"obj": TrainConfig()}}, checkpoint_id=path, no_dist=True
    )
    state = {"x": torch.ones(2), "extra": {"obj": None}}
    with pytest.raises(CheckpointException, match="Unsupported global"):
        dcp.load(state, checkpoint_id=path, planner=SafeLoadPlanner(), no_dist=True)
