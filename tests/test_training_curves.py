"""Held-out curves during training (training/evaluation/heldout.py `TrainingCurves`, run by
the trainer, shown by `pretrain`): evaluated at every `eval_every`-th step and the last, per
corpus, with the evaluation's own numbers at the checkpoint of that step, invisible to
training, the same on two FSDP processes as on one, and plotted in the asset's metadata.

The labelled data is a real tokenizer's shards made from a small mixture whose parts come
corpus after corpus, as the real mixture's do; the bare shards are tests/train_shards.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dagster import DagsterInstance, materialize
from small_run import SMALL_RUN, small_run
from token_corpus import documents, write_parts
from train_shards import write_shards

from assets.launchers import LocalLauncherConfig, TrainingLauncher
from assets.resources import DataRoot
from assets.training import pretrain
from curation.core.storage import Storage
from curation.tokens.shards import TokenShardsConfig, write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer
from training.checkpoint import load_model
from training.config import TrainConfig
from training.evaluation.heldout import corpus_sample, heldout_metrics
from training.train import train

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"commoncrawl", "github", "wikipedia"}
EVAL_TOKENS = 3000  # 1000 per corpus: all of github's and wikipedia's, part of commoncrawl's
# One process accumulating 2 micro-batches, or two FSDP processes with one each: one run.
RUN = {
    "seq_len": 64,
    "micro_batch_size": 4,
    "global_batch_tokens": 512,
    "max_steps": 10,
    "warmup_steps": 2,
    "log_interval": 5,
    "checkpoint_interval": 4,
    "keep_checkpoints": 3,
    "eval_every": 4,
    "eval_tokens": EVAL_TOKENS,
}
EVALUATED = [4, 8, 10]  # every 4th step and the last
# Two processes sum gradients in another order: float32 rounding (tests/test_train.py's
# FSDP_RTOL per training step), which the held-out loss inherits.
FSDP_RTOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: in-process and launched runs use the same kernels, and two
    processes on shared cores do not spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> DataRoot:
    """A data root with a `mixture` (parts ordered by corpus, every 5th row held out) and the
    `tokenized_shards` made from it with a 600-piece tokenizer."""
    root = tmp_path_factory.mktemp("curves")
    data_root = DataRoot(root=str(root / "data"))
    rows = sorted(documents(300), key=lambda row: row["source"])
    for i, row in enumerate(rows):
        row["split"] = "validation" if i % 5 == 0 else "train"
    parts = write_parts(Path(data_root.output("mixture")), rows, 100)
    storage = Storage(str(root))
    tokenizer = train_tokenizer(parts, str(root / "tok"), storage, TokenizerConfig(vocab_size=600))
    write_token_shards(
        parts,
        tokenizer.model_path,
        data_root.output("tokenized_shards"),
        data_root.storage(),
        config=TokenShardsConfig(shard_tokens=4096),
    )
    return data_root


@pytest.fixture(scope="module")
def one_process(data_root, tmp_path_factory) -> Path:
    """The output directory of the labelled run, trained in this process."""
    output = tmp_path_factory.mktemp("one") / "run"
    config = small_run(data_root.output("tokenized_shards"), output, **RUN)
    train(config.with_overrides(eval_mixture=data_root.output("mixture")), echo=lambda _: None)
    return output


@pytest.fixture(scope="module")
def asset_metadata(data_root) -> dict:
    """`pretrain`'s metadata after the same run on two processes (FSDP over Gloo)."""
    launcher = TrainingLauncher(local=LocalLauncherConfig(nproc_per_node=2), poll_interval_s=0.5)
    result = materialize(
        [pretrain],
        resources={"data_root": data_root, "training_launcher": launcher},
        run_config={"ops": {"pretrain": {"config": SMALL_RUN | RUN}}},
        instance=DagsterInstance.ephemeral(),
    )
    (materialization,) = result.asset_materializations_for_node("pretrain")
    return {key: value.value for key, value in materialization.metadata.items()}


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def _curve(output: Path) -> dict[int, dict]:
    return {r["step"]: r["heldout"] for r in _records(output) if "heldout" in r}


def _final_weights(output: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(output)
    return model.state_dict()


def test_curves_at_every_eval_step_equal_the_evaluation_at_its_checkpoint(data_root, one_process):
    """A record at every log step and every evaluation step; each evaluation is heldout.py's
    on the checkpoint of its step, with the same documents, in total and per corpus."""
    records = _records(one_process)
    assert [r["step"] for r in records] == [4, 5, 8, 10]
    curve = _curve(one_process)
    assert list(curve) == EVALUATED
    shards = data_root.output("tokenized_shards")
    sample = corpus_sample(shards, data_root.output("mixture"), EVAL_TOKENS)
    for step, heldout in curve.items():
        assert set(heldout["per_corpus"]) == CORPORA  # not only the mixture's first corpus
        model, _ = load_model(one_process / "checkpoints" / f"step-{step:07d}")
        direct = heldout_metrics(model, shards, max_tokens=None, seq_len=64, documents=sample)
        assert heldout["tokens"] == direct["tokens"] >= EVAL_TOKENS // 2
        assert heldout["loss"] == pytest.approx(direct["loss"], rel=1e-6)
        assert heldout["bits_per_byte"] == pytest.approx(direct["bits_per_byte"], rel=1e-6)
        for corpus, expected in direct["per_corpus"].items():
            measured = heldout["per_corpus"][corpus]
            assert measured["tokens"] == expected["tokens"]
            assert measured["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert [r["tokens_seen"] for r in records if "heldout" in r] == [s * 512 for s in EVALUATED]
    assert curve[10]["loss"] < curve[4]["loss"]


def test_bare_shards_give_the_total_and_leave_training_unchanged(tmp_path):
    """Without a mixture the curve is the total alone; with or without it, every step's
    training loss and the final weights are the same to the last bit."""
    shards = write_shards(tmp_path / "shards", validation_tokens=4000)
    runs = {}
    for every in (0, 3):
        output = tmp_path / f"every-{every}"
        run = small_run(shards, output, **RUN | {"log_interval": 1, "eval_every": every})
        train(run.with_overrides(max_steps=8), echo=lambda _: None)
        runs[every] = output
    assert _curve(runs[0]) == {}
    curve = _curve(runs[3])
    assert list(curve) == [3, 6, 8]
    assert all("per_corpus" not in h and h["bits_per_byte"] is None for h in curve.values())
    assert [r["loss"] for r in _records(runs[3])] == [r["loss"] for r in _records(runs[0])]
    weights, without = _final_weights(runs[3]), _final_weights(runs[0])
    assert all(torch.equal(weights[name], without[name]) for name in without)


def test_two_processes_give_the_one_process_curve_and_the_asset_plots_it(
    asset_metadata, one_process
):
    """`pretrain` on two FSDP ranks: the curve of one process within float rounding, and the
    metadata shows it (a PNG over training tokens, the last point as a table)."""
    run_dir = Path(asset_metadata["path"])
    two, one = _curve(run_dir), _curve(one_process)
    assert list(two) == list(one) == EVALUATED
    for step in EVALUATED:
        assert two[step]["tokens"] == one[step]["tokens"]
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=FSDP_RTOL)
        for corpus in CORPORA:
            assert two[step]["per_corpus"][corpus]["loss"] == pytest.approx(
                one[step]["per_corpus"][corpus]["loss"], rel=FSDP_RTOL
            )
    assert "![heldout](data:image/png;base64," in asset_metadata["heldout_curve"]
    assert (run_dir.parent / "tiny.plots" / "heldout.png").stat().st_size > 1000
    table = asset_metadata["heldout"]
    assert "step 10 (5,120 training tokens)" in table
    assert all(f"| {name} | " in table for name in ["all", *CORPORA])
    assert asset_metadata["heldout_loss"] == two[10]["loss"]


def test_evaluating_leaves_fsdp_training_unchanged(asset_metadata, tmp_path):
    """The asset's two-process run again without evaluation: the same final loss and the
    same weights to the last bit (the evaluation's forwards leave FSDP's state as it was)."""
    launch = Path(asset_metadata["launch"]["launch_dir"])
    config = TrainConfig.load(launch / "config.json")
    output = tmp_path / "run"
    path = tmp_path / "run.json"
    path.write_text(config.with_overrides(output_dir=str(output), eval_every=0).to_json())
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone"]
    command = [*torchrun, "--nproc-per-node", "2", "-m", "training.train", "--config", str(path)]
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    assert _curve(output) == {}
    with_eval = Path(asset_metadata["path"])
    result = json.loads((output / "result.json").read_text())
    assert result["final_loss"] == json.loads((with_eval / "result.json").read_text())["final_loss"]
    weights, without = _final_weights(with_eval), _final_weights(output)
    assert all(torch.equal(weights[name], without[name]) for name in without)
