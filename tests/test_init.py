"""Initialization that scales (`model.init`): the weights are a function of (seed, parameter,
row block), so every mesh gets bit for bit the one-process weights, and a rank's shard is drawn
without the full tensor ever existing, 65B included."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.utils._python_dispatch import TorchDispatchMode

from model import Llama, LlamaConfig
from model.init import BLOCK_ROWS, canonical_name, normal_rows
from training.parallelize import apply_ac, apply_fsdp
from training.train import initialize_weights

# vocab 500 makes the embedding and output shard unevenly over 3 ranks (167, 167, 166 rows),
# with boundaries off the 64-row blocks.
TINY = LlamaConfig.preset("tiny", vocab_size=500)
SEED = 1234


def _fsdp_rank(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank: the trainer's path (meta model, AC wrapper, FSDP2, `to_empty`, then each rank
    initializes its own shard); rank 0 saves the gathered full state dict."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        with torch.device("meta"):
            model = Llama(TINY)
        apply_ac(model, "full")  # inserts `_checkpoint_wrapped_module` into the names
        apply_fsdp(model, init_device_mesh("cpu", (world,)), param_dtype=None, reduce_dtype=None)
        model.to_empty(device="cpu")
        initialize_weights(model, SEED)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(model, options=options)
        if rank == 0:
            torch.save({canonical_name(k): v for k, v in full.items()}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_fsdp_shards_initialize_to_the_one_process_weights(tmp_path: Path, world: int) -> None:
    out = tmp_path / "full.pt"
    mp.spawn(
        _fsdp_rank, args=(world, str(tmp_path / "rendezvous"), str(out)), nprocs=world, join=True
    )
    sharded = torch.load(out, weights_only=True)
    single = Llama(TINY, seed=SEED).state_dict()
    assert sharded.keys() == single.keys()
    for name, tensor in single.items():
        assert torch.equal(sharded[name], tensor), name


def test_seed_reaches_the_model_explicitly_or_from_torch_manual_seed() -> None:
    config = dataclasses.replace(TINY, n_layers=1)
    explicit = Llama(config, seed=7).state_dict()
    torch.manual_seed(7)
    implicit = Llama(config).state_dict()
    other = Llama(config, seed=8).state_dict()
    for name, tensor in explicit.items():
        assert torch.equal(implicit[name], tensor), name
    assert not torch.equal(other["output.weight"], explicit["output.weight"])
    with torch.device("meta"):
        deferred = Llama(config)
    deferred.to_empty(device="cpu")
    deferred.init_weights(seed=7)
    for name, tensor in deferred.state_dict().items():
        assert torch.equal(explicit[name], tensor), name


@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_any_row_split_gives_the_rows_of_the_full_draw(block_rows: int) -> None:
    shape = (300, 50)
    draw = dict(seed=SEED, name="w", std=1.0, block_rows=block_rows)
    full = normal_rows(shape, 0, shape[0], **draw)
    for world in (1, 2, 3, 7, 256):  # torch.chunk's split, as FSDP2 shards dim 0
        pieces = [
            normal_rows(shape, lo, lo + len(rows), **draw) for lo, rows in _chunks(shape[0], world)
        ]
        assert torch.equal(torch.cat(pieces), full), world
    assert torch.equal(normal_rows(shape, 100, 100, **draw), full[100:100])


def test_blocks_and_parameters_draw_unrelated_values() -> None:
    rows = 2 * BLOCK_ROWS
    a = normal_rows((rows, 32), 0, rows, seed=SEED, name="a", std=1.0)
    b = normal_rows((rows, 32), 0, rows, seed=SEED, name="b", std=1.0)
    assert not torch.equal(a[:BLOCK_ROWS], a[BLOCK_ROWS:])
    assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) < 0.05


def test_a_65b_shard_is_drawn_without_the_full_tensor() -> None:
    with torch.device("meta"):
        model = Llama(LlamaConfig.preset("65B"))
    assert all(p.is_meta for p in model.parameters())  # nothing was materialized or drawn
    w1 = model.layers[0].feed_forward.w1.weight  # 22016 x 8192
    assert tuple(w1.shape) == (22016, 8192)
    world, rank = 256, 255
    chunks = _chunks(w1.shape[0], world)
    lo, rows = chunks[rank][0], len(chunks[rank][1])
    with _LargestAllocation() as largest:
        shard = normal_rows(
            tuple(w1.shape),
            lo,
            lo + rows,
            seed=SEED,
            name="layers.0.feed_forward.w1.weight",
            std=0.02,
        )
    assert tuple(shard.shape) == (rows, 8192)
    assert largest.numel <= rows * 8192  # the shard; blocks are smaller
    assert largest.numel < w1.numel() // 200
    assert shard.std().item() == pytest.approx(0.02, rel=0.02)


def test_parameters_follow_the_intended_distribution() -> None:
    config = dataclasses.replace(TINY, dim=512, n_heads=8)
    model = Llama(config, seed=SEED)
    block = model.layers[0]
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    expected = {
        block.attention.wq.weight: 0.02,
        block.attention.wv.weight: 0.02,
        block.feed_forward.w1.weight: 0.02,
        block.feed_forward.w3.weight: 0.02,
        block.attention.wo.weight: residual_std,
        block.feed_forward.w2.weight: residual_std,
        model.tok_embeddings.weight: 0.02,
    }
    for weight, std in expected.items():
        assert weight.std().item() == pytest.approx(std, rel=0.02)
        assert abs(weight.mean().item()) < 0.02 * std
    assert all(torch.equal(n.weight, torch.ones(config.dim)) for n in (block.ffn_norm, model.norm))


def _chunks(rows: int, world: int) -> list[tuple[int, range]]:
    """(first row, rows) of each rank under torch.chunk on dim 0, FSDP2's split (the last ranks
    may get fewer rows, or none)."""
    size = -(-rows // world)
    return [
        (min(r * size, rows), range(min(r * size, rows), min((r + 1) * size, rows)))
        for r in range(world)
    ]


class _LargestAllocation(TorchDispatchMode):
    """Records the largest tensor any aten op produces while active."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in result if isinstance(result, tuple | list) else (result,):
            if isinstance(tensor, torch.Tensor):
                self.numel = max(self.numel, tensor.numel())
        return result
