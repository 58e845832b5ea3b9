"""The mesh's arithmetic and checks (training/mesh.py) and float8 training (training/parallelize.py
`apply_float8`, torchao) on the CPU, where torch emulates float8 matmuls: the same code path as
on an H100, at a fraction of the speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from small_run import small_run
from torch import nn
from torchao.float8.float8_linear import Float8Linear
from train_shards import write_shards

from model import Llama, LlamaConfig
from training.config import TrainConfig
from training.mesh import MeshShape
from training.parallelize import apply_float8
from training.train import train

# float8 against fp32 over 30 steps of the small run: measured 0.0054 at most (e4m3 keeps 3
# mantissa bits, so each matmul is off by ~1e-2 relative; the loss averages it out).
FLOAT8_LOSS_GAP = 0.02


def test_the_world_splits_into_hsdp_fsdp_and_tp():
    mesh = MeshShape.of(16, tp=2, dp_replicate=2)
    assert (mesh.dp_replicate, mesh.dp_shard, mesh.tp) == (2, 4, 2)
    assert mesh.dp == 8 and mesh.world_size == 16
    assert [mesh.dp_rank(rank) for rank in range(6)] == [0, 0, 1, 1, 2, 2]  # TP ranks share data
    assert str(MeshShape.of(4)) == "dp_replicate 1 x dp_shard 4 x tp 1"
    with pytest.raises(ValueError, match="do not split"):
        MeshShape.of(6, tp=4)


def test_a_tensor_parallel_group_stays_within_a_node():
    assert MeshShape.of_job(nodes=256, per_node=8, tp=8) == MeshShape(1, 256, 8)
    with pytest.raises(ValueError, match="within one node"):
        MeshShape.of_job(nodes=2, per_node=8, tp=16)


@pytest.mark.parametrize(
    ("shape", "seq_len", "name"),
    [
        ({"n_heads": 6, "dim": 384}, 64, "n_heads"),
        ({"vocab_size": 1001}, 64, "vocab_size"),
        ({}, 62, "seq_len"),
    ],
)
def test_shapes_tp_cannot_split_are_refused_by_name(shape, seq_len, name):
    config = LlamaConfig(**{"dim": 128, "n_layers": 1, "n_heads": 4, "vocab_size": 1000} | shape)
    with pytest.raises(ValueError, match=f"^{name} "):
        MeshShape.of(4, tp=4).check(config, seq_len)


def test_float8_is_refused_with_tensor_parallelism():
    with pytest.raises(ValueError, match="float8"):
        TrainConfig(float8=True, tensor_parallel=2)


def test_float8_converts_the_blocks_linears_and_keeps_the_names():
    config = LlamaConfig.preset("tiny", vocab_size=256)
    model = Llama(config, seed=0)
    names = list(model.state_dict())
    apply_float8(model)
    converted = {n for n, m in model.named_modules() if isinstance(m, Float8Linear)}
    assert len(converted) == 7 * config.n_layers  # wq wk wv wo w1 w2 w3 in every block
    assert type(model.output) is nn.Linear  # the logits stay in the high-precision matmul
    assert list(model.state_dict()) == names  # checkpoints move between float8 and bf16


@pytest.mark.slow
def test_float8_training_follows_the_full_precision_curve(tmp_path):
    data = write_shards(tmp_path / "shards")
    run = {"max_steps": 30, "log_interval": 1}
    curves = {}
    for float8 in (False, True):
        output = tmp_path / f"float8_{float8}"
        assert train(small_run(data, output, float8=float8, **run), echo=lambda _: None)
        records = Path(output, "metrics.jsonl").read_text().splitlines()
        curves[float8] = [json.loads(line)["loss"] for line in records]
    gaps = [abs(a - b) for a, b in zip(curves[False], curves[True], strict=True)]
    print(f"float8 vs fp32 loss: largest gap {max(gaps):.5f} over {len(gaps)} steps")
    assert curves[True][-1] < curves[True][0] - 1.0  # it learns
    assert 0 < max(gaps) < FLOAT8_LOSS_GAP  # float8 ran (the curves differ) and stayed close
