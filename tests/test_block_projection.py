"""bench/block_65b.py's projection of 65B tokens/s per GPU from one measured block: the
arithmetic, on a made-up cluster small enough to work out by hand. No GPU, no block runs."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import block_65b  # noqa: E402

# 4 GPUs in TP pairs (2 data-parallel ranks), 100 FLOP/s peak, 32 B/s NVLink, 10 B/s IB.
CLUSTER = block_65b.Cluster(
    gpus=4, tp=2, peak_flops=100.0, nvlink_bytes_per_s=32.0, ib_bytes_per_s=10.0
)
WORK = block_65b.Workload(
    params=40, flops_per_token=100.0, layers=1, dim=4, seq=2, micro_batch=1, batch_tokens=8
)


def test_a_hand_computed_step():
    result = block_65b.project(WORK, CLUSTER, mfu=0.5)
    # 8 tokens over 4 GPUs: 2 per GPU, 2 x 100 FLOPs at half of 100 FLOP/s.
    assert result["tokens_per_gpu_step"] == 2
    assert result["compute_s"] == pytest.approx(4.0)
    # A TP pair does 2 x 2 tokens: 2 micro-batches of 1 x 2 tokens. Each of the 8 collectives
    # moves half (ring of 2) of 1 x 2 x 4 x 2 bytes: 8 x 8 x 2 = 128 bytes at 32 B/s.
    assert result["micro_batches_per_step"] == 2
    assert result["tp_s"] == pytest.approx(4.0)
    # A rank's 20 parameters, half through each GPU (ring of 2), gathered twice in 2 bytes and
    # reduced once in 4: 10 x 8 = 80 bytes at 10 B/s.
    assert result["fsdp_s"] == pytest.approx(8.0)
    assert result["step_no_overlap_s"] == pytest.approx(16.0)
    assert result["step_overlap_s"] == pytest.approx(12.0)  # communication outlasts compute
    assert result["tokens_per_gpu_s_no_overlap"] == pytest.approx(2 / 16)
    assert result["tokens_per_gpu_s_overlap"] == pytest.approx(2 / 12)


@pytest.mark.parametrize("mfu", [0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("micro_batch", [1, 2])
def test_perfect_overlap_is_never_slower(mfu, micro_batch):
    shape = block_65b.LlamaConfig.preset("65B")
    work = block_65b.Workload(
        params=shape.num_params(),
        flops_per_token=shape.flops_per_token(2048),
        layers=shape.n_layers,
        dim=shape.dim,
        seq=2048,
        micro_batch=micro_batch,
        batch_tokens=block_65b.BATCH_TOKENS,
    )
    result = block_65b.project(work, block_65b.Cluster(), mfu)
    assert result["tokens_per_gpu_s_overlap"] >= result["tokens_per_gpu_s_no_overlap"]
    assert result["tokens_per_gpu_step"] == 2048  # the paper's 4M tokens over 2048 GPUs
