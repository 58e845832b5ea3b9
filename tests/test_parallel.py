"""Tensor, sequence and hybrid-sharded data parallelism (training/mesh.py, training/parallelize.py)
on CPU over Gloo: 4 processes as 2x2 (TP 2 inside FSDP 2), 1x4 (TP 4) and HSDP 2x2 train like
one process, and a checkpoint written on the 2x2 mesh resumes on 4 FSDP ranks and in one
process, and exports to HF from any of them.

Every run is tests/mesh_worker.py: the real trainer under torchrun, recording each parameter
whole at the start and each gradient whole before every optimizer step.

Tolerances. Initial weights: bit for bit (model/init.py draws the same blocks on any mesh).
Losses: 1e-5 relative, as FSDP against one process (tests/test_train.py): the same sums in
another order. Gradients, per tensor, measured against the tensor's largest magnitude: 1e-5 at
the first step (same weights, reordered sums: measured ~1e-6); 5e-4 afterwards, because Adam's
first updates are lr * sign(g) for every element, so an element whose gradient is ~1e-8 and
flips sign under reordering moves by 2 lr (measured up to 1.1e-4 at 2x2, 4e-5 at 1x4, 6e-6 HSDP).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_run import small_run
from test_hf import sentencepiece_model
from train_shards import write_shards

from model import LlamaConfig
from model.hf import export_hf, import_hf
from training.checkpoint import LATEST, load_model
from training.config import TrainConfig
from training.mesh import MeshShape
from training.planning.memory import CPU_PRECISION, MemorySpec, Mesh, plan_memory

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKER = REPO / "tests" / "mesh_worker.py"
STEPS = 6
# 256 tokens a step: accumulation 4 in one process and at 1x4, 2 at 2x2, 1 at HSDP 2x2 and dp 4.
RUN = {
    "seq_len": 32,
    "micro_batch_size": 2,
    "global_batch_tokens": 256,
    "max_steps": STEPS,
    "warmup_steps": 3,
    "log_interval": 1,
    "checkpoint_interval": 4,
}
MESHES = {
    "tp2_fsdp2": {"tensor_parallel": 2},
    "tp4": {"tensor_parallel": 4},
    "hsdp2_fsdp2": {"data_parallel_replicate": 2},
}
# What each mesh makes of a column-parallel and a row-parallel weight, and of a norm
# (placements over dp_replicate, dp_shard, tp; FSDP shards dim 0 of the TP shard, hence the
# strided placement where both split rows).
LAYOUTS = {
    "tp2_fsdp2": (
        "dp_replicate 1 x dp_shard 2 x tp 2",
        "(_StridedShard(dim=0, sf=2), Shard(dim=0))",
        "(Shard(dim=0), Shard(dim=1))",
        "(Shard(dim=0), Replicate())",
    ),
    "tp4": (
        "dp_replicate 1 x dp_shard 1 x tp 4",
        "(Shard(dim=0),)",
        "(Shard(dim=1),)",
        "(Replicate(),)",
    ),
    "hsdp2_fsdp2": ("dp_replicate 2 x dp_shard 2 x tp 1",) + ("(Replicate(), Shard(dim=0))",) * 3,
}
LOSS_RTOL = 1e-5
FIRST_GRAD_TOL, GRAD_TOL = 1e-5, 5e-4


def _run(config: TrainConfig, nproc: int) -> dict:
    """Train `config` on `nproc` processes; the worker's record plus the per-step losses."""
    config_path = Path(config.output_dir + ".json")
    config_path.write_text(config.to_json())
    record_path = Path(config.output_dir + ".pt")
    launcher = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(nproc)]
    command = [*launcher] if nproc > 1 else [sys.executable]
    command += [str(WORKER), str(config_path), str(record_path)]
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    record = torch.load(record_path, weights_only=True)
    lines = (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()
    record["losses"] = {r["step"]: r["loss"] for r in map(json.loads, lines)}
    return record


def config_mesh(config: TrainConfig, world_size: int = 4) -> MeshShape:
    return MeshShape.of(world_size, config.tensor_parallel, config.data_parallel_replicate)


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def _assert_losses_close(losses: dict, reference: dict) -> None:
    assert losses.keys() == reference.keys()
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=LOSS_RTOL), step


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("mesh") / "shards")


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory) -> dict:
    return _run(small_run(data_dir, tmp_path_factory.mktemp("one") / "run", **RUN), 1)


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_a_four_process_mesh_trains_like_one_process(mesh, data_dir, tmp_path, one_process):
    config = small_run(data_dir, tmp_path / "run", **RUN | MESHES[mesh])
    record = _run(config, 4)

    reference = one_process["weights"]
    assert record["weights"].keys() == reference.keys()
    for name, weight in record["weights"].items():
        assert torch.equal(weight, reference[name]), name

    assert len(record["grads"]) == len(one_process["grads"]) == STEPS
    gaps = [
        max(_relative_gap(reference_grads[n], grads[n]) for n in reference_grads)
        for grads, reference_grads in zip(record["grads"], one_process["grads"], strict=True)
    ]
    print(f"{mesh}: largest gradient gap per step, relative to the tensor's max: {gaps}")
    assert gaps[0] < FIRST_GRAD_TOL
    assert max(gaps) < GRAD_TOL
    _assert_losses_close(record["losses"], one_process["losses"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["world_size"] == 4 and result["status"] == "completed"
    layouts = record["layouts"]
    block = ("layers.1.attention.wq.weight", "layers.1.feed_forward.w2.weight", "norm.weight")
    assert (result["mesh"], *(layouts[name] for name in block)) == LAYOUTS[mesh]

    # The memory plan's static bytes per GPU for this mesh, against rank 0's own shards. The
    # plan divides every parameter by its dp (the FSDP shard degree: HSDP replicas hold the
    # same shards) x tp; the norms, replicated across a TP group, are the difference (0.2%).
    shape = config_mesh(config)
    plan = plan_memory(
        MemorySpec(
            "tiny",
            LlamaConfig.preset("tiny", vocab_size=256),
            Mesh(dp=shape.dp_shard, tp=shape.tp),
            precision=CPU_PRECISION,
        )
    )
    measured = record["rank0_bytes"]
    assert measured["params"] == pytest.approx(plan.params, rel=0.005)
    assert measured["optimizer"] == pytest.approx(plan.optimizer, rel=0.005)


def _resume_from(source: Path, step_name: str, output: Path) -> None:
    """A run directory whose latest checkpoint is `source`'s `step_name`: as if the source run
    had stopped right after writing it."""
    (output / "checkpoints").mkdir(parents=True)
    shutil.copytree(source / "checkpoints" / step_name, output / "checkpoints" / step_name)
    (output / "checkpoints" / LATEST).write_text(step_name + "\n")


@pytest.mark.slow
def test_a_checkpoint_moves_between_meshes_and_exports_from_any(data_dir, tmp_path):
    eight = RUN | {"max_steps": 8, "keep_checkpoints": 2}
    source = tmp_path / "tp2_fsdp2"
    saved = _run(small_run(data_dir, source, **eight, tensor_parallel=2), 4)
    assert (source / "checkpoints" / "step-0000004").is_dir()

    finals = {"tp2_fsdp2": load_model(source)[0].state_dict()}
    for name, nproc in (("fsdp4", 4), ("one_process", 1)):
        output = tmp_path / name
        _resume_from(source, "step-0000004", output)
        resumed = _run(small_run(data_dir, output, **eight), nproc)
        assert sorted(resumed["losses"]) == [5, 6, 7, 8]
        _assert_losses_close(resumed["losses"], {s: saved["losses"][s] for s in (5, 6, 7, 8)})
        finals[name] = load_model(output)[0].state_dict()
        trainer = json.loads((output / "checkpoints" / "step-0000008" / "trainer.json").read_text())
        assert trainer["world_size"] == nproc

    for name, state in finals.items():  # the same model wherever training continued
        for key, tensor in state.items():
            assert _relative_gap(finals["tp2_fsdp2"][key], tensor) < GRAD_TOL, (name, key)

    tokenizer = sentencepiece_model(tmp_path / "tokenizer.model")
    checkpoints = {
        "tp2_fsdp2 step 4": source / "checkpoints" / "step-0000004",
        "fsdp4 step 8": tmp_path / "fsdp4",
        "one_process step 8": tmp_path / "one_process",
    }
    for name, checkpoint in checkpoints.items():
        model, _ = load_model(checkpoint)
        exported = export_hf(model, tokenizer, tmp_path / "hf" / name.replace(" ", "_"))
        imported, _ = import_hf(exported, dtype=torch.float32)
        for key, tensor in model.state_dict().items():
            expected = tensor.to(torch.bfloat16).float()
            assert torch.equal(imported.state_dict()[key], expected), (name, key)
