"""Initialization that scales: random weights drawn shard by shard, the same for any mesh.

A parameter's values are a pure function of (seed, parameter name, row block): the rows are
cut into blocks of `BLOCK_ROWS`, and block i is drawn on the CPU from its own generator, seeded
by a hash of (seed, name, i). A process holding rows [lo, hi) of a parameter (an FSDP2 `Shard(0)`
DTensor, or the whole tensor in one process) draws only the blocks that overlap its rows and
keeps its slice, so

- every mesh gets bit for bit the weights one process gets (the blocks do not depend on where
  the shard boundaries fall, and a block is always drawn whole, on the CPU, whatever the device);
- no process ever holds a whole parameter: drawing one takes a buffer of its shard's size and
  one block (at most 64 x 22016 floats, 5.4 MiB, at 65B).

Drawing from torch's global RNG (or DTensor's, which offsets it per shard) gives neither: the
values would depend on the order of parameters before this one and on the sharding.

torch only: `model/` imports nothing else of the project.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

BLOCK_ROWS = 64  # rows drawn from one generator; part of the scheme (changing it changes weights)
# Module names that wrappers insert (activation checkpointing, torch.compile): not part of a
# parameter's identity, so a wrapped model draws the weights of the plain one.
WRAPPER_NAMES = frozenset({"_checkpoint_wrapped_module", "_orig_mod", "_fsdp_wrapped_module"})


def canonical_name(name: str) -> str:
    """`name` without the components wrappers insert ("layers.0._orig_mod.x" -> "layers.0.x")."""
    return ".".join(part for part in name.split(".") if part not in WRAPPER_NAMES)


def block_seed(seed: int, name: str, block: int) -> int:
    """A 63-bit generator seed for one row block: a hash, so nearby (seed, name, block) triples
    give unrelated streams (seeding with seed + block would make runs overlap)."""
    digest = hashlib.blake2b(f"{seed}/{name}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def normal_rows(
    shape: tuple[int, ...],
    lo: int,
    hi: int,
    *,
    seed: int,
    name: str,
    std: float,
    block_rows: int = BLOCK_ROWS,
) -> Tensor:
    """Rows [lo, hi) of the Normal(0, std) draw of a tensor of `shape` named `name` (float32, on
    the CPU): allocates (hi - lo) rows plus one block, never the whole tensor."""
    if not 0 <= lo <= hi <= shape[0]:
        raise ValueError(f"rows [{lo}, {hi}) outside a tensor of {shape[0]} rows")
    cols = math.prod(shape[1:])
    out = torch.empty(hi - lo, cols, device="cpu")
    for block in range(lo // block_rows, -(-hi // block_rows)):
        start, stop = block * block_rows, min((block + 1) * block_rows, shape[0])
        generator = torch.Generator(device="cpu").manual_seed(block_seed(seed, name, block))
        drawn = torch.empty(stop - start, cols, device="cpu").normal_(0.0, std, generator=generator)
        first, last = max(start, lo), min(stop, hi)
        out[first - lo : last - lo] = drawn[first - start : last - start]
    return out.view(hi - lo, *shape[1:])


def local_rows(param: Tensor) -> tuple[Tensor, int]:
    """This process's part of `param` and the global index of its first row. A DTensor sharded
    on dim 0 (FSDP2) or replicated has whole rows locally; other layouts are not supported."""
    if not _is_dtensor(param):
        return param, 0
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = param.to_local()
    shape, offset = compute_local_shape_and_global_offset(
        param.shape, param.device_mesh, param.placements
    )
    if tuple(local.shape) != tuple(shape) or tuple(shape[1:]) != tuple(param.shape[1:]):
        raise ValueError(f"rows are drawn for dim-0 shards (FSDP) only, got {param.placements}")
    return local, offset[0] if shape[0] else 0


@torch.no_grad()
def init_normal_(param: Tensor, name: str, seed: int, std: float) -> None:
    """Fill `param` (plain, or this process's shard of a DTensor) in place with its rows of the
    block-wise Normal(0, std) draw. Meta tensors are left alone: they hold no values."""
    if param.is_meta:
        return
    local, lo = local_rows(param)
    if local.numel() == 0:
        return
    values = normal_rows(tuple(param.shape), lo, lo + local.shape[0], seed=seed, name=name, std=std)
    local.copy_(values)


def _is_dtensor(param: Tensor) -> bool:
    """Whether `param` is a DTensor (without importing torch.distributed where it is missing)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(param, DTensor)
