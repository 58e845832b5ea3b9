"""Initialization that scales: random weights drawn shard by shard, the same for any mesh.

A parameter's values are a pure function of (seed, parameter name, row block): the rows are
cut into blocks of `BLOCK_ROWS`, and block i is drawn on the CPU from its own generator, seeded
by a hash of (seed, name, i). A process holding a box of rows [lo, hi) and columns of a
parameter (an FSDP2 `Shard(0)` DTensor, a tensor-parallel `Shard(0)` or `Shard(1)` one, both
on a 2-D mesh, or the whole tensor in one process) draws only the blocks that overlap its rows
and keeps its box, so

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
    cols: tuple[int, int] | None = None,
    block_rows: int = BLOCK_ROWS,
) -> Tensor:
    """Rows [lo, hi) of the Normal(0, std) draw of a tensor of `shape` named `name` (float32, on
    the CPU), and of a 2-D tensor only columns [c0, c1) when `cols` is given: allocates the
    result plus one block, never the whole tensor."""
    if not 0 <= lo <= hi <= shape[0]:
        raise ValueError(f"rows [{lo}, {hi}) outside a tensor of {shape[0]} rows")
    width = math.prod(shape[1:])
    c0, c1 = cols or (0, width)
    if cols is not None and (len(shape) != 2 or not 0 <= c0 <= c1 <= width):
        raise ValueError(f"columns [{c0}, {c1}) of a tensor of shape {shape}")
    out = torch.empty(hi - lo, c1 - c0, device="cpu")
    for block in range(lo // block_rows, -(-hi // block_rows)):
        start, stop = block * block_rows, min((block + 1) * block_rows, shape[0])
        generator = torch.Generator(device="cpu").manual_seed(block_seed(seed, name, block))
        drawn = torch.empty(stop - start, width).normal_(0.0, std, generator=generator)
        first, last = max(start, lo), min(stop, hi)
        out[first - lo : last - lo] = drawn[first - start : last - start, c0:c1]
    return out if cols is not None else out.view(hi - lo, *shape[1:])


def local_box(param: Tensor) -> tuple[Tensor, tuple[int, int], tuple[int, int] | None]:
    """This process's part of `param`, its global rows [lo, hi), and its global columns when
    they are not all of them. A plain tensor is whole; a DTensor's part is the box of its local
    shard: rows under FSDP (`Shard(0)`) or a column-parallel layer, columns under a row-parallel
    one, both when they combine."""
    if not _is_dtensor(param):
        return param, (0, param.shape[0]), None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = param.to_local()
    shape, offset = compute_local_shape_and_global_offset(
        param.shape, param.device_mesh, param.placements
    )
    if tuple(local.shape) != tuple(shape):
        raise ValueError(f"cannot place the local shard of {param.placements}")
    rows = (offset[0], offset[0] + shape[0])
    if tuple(shape[1:]) == tuple(param.shape[1:]):
        return local, rows, None
    if param.dim() != 2:
        raise ValueError(f"only 2-D parameters may be split by columns, got {param.placements}")
    return local, rows, (offset[1], offset[1] + shape[1])


@torch.no_grad()
def init_normal_(param: Tensor, name: str, seed: int, std: float) -> None:
    """Fill `param` (plain, or this process's shard of a DTensor) in place with its part of the
    block-wise Normal(0, std) draw. Meta tensors are left alone: they hold no values."""
    if param.is_meta:
        return
    local, (lo, hi), cols = local_box(param)
    if local.numel() == 0:
        return
    shape = tuple(param.shape)
    local.copy_(normal_rows(shape, lo, hi, seed=seed, name=name, std=std, cols=cols))


def _is_dtensor(param: Tensor) -> bool:
    """Whether `param` is a DTensor (without importing torch.distributed where it is missing)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(param, DTensor)
