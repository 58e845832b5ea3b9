"""How the network is laid onto hardware, kept out of the model (the torchtitan split).

Applied in this order (each wraps what the previous one produced; `training.mesh` says which
mesh dimension each one uses):

    apply_tp(model, mesh["tp"])      # tensor + sequence parallelism, when tp > 1
    apply_float8(model)              # float8 linears, when asked for (not with tp > 1)
    apply_ac(model, "selective")     # activation checkpointing
    apply_compile(model)             # torch.compile, one block at a time
    apply_fsdp(model, dp_mesh)       # FSDP2 (1-D mesh) or HSDP (2-D), when dp > 1

State-dict keys do not change: the checkpoint wrapper strips its own prefix and the compile is
in place (`nn.Module.compile`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import create_selective_checkpoint_contexts

ACMode = Literal["off", "selective", "full"]

_aten = torch.ops.aten

# Ops whose outputs selective checkpointing keeps: the matmuls (every nn.Linear lowers to mm) and
# attention, the FLOP-heavy work. The norms, rotary, SiLU, products and residual adds between
# them are element-wise and memory-bound: recomputing them in backward costs little time and
# frees the memory of their (often float32) intermediates. SDPA appears under the name of the
# kernel it picked; float8 linears (`apply_float8`) lower to _scaled_mm.
SAVED_OPS = [
    _aten.mm.default,
    _aten.addmm.default,
    _aten._scaled_mm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
]


def apply_tp(model: nn.Module, mesh: DeviceMesh) -> None:
    """Megatron-style tensor parallelism (Shoeybi et al. 2019) with sequence parallelism
    (Korthikanti et al. 2022, the paper's "model and sequence parallelism") over a 1-D mesh.

    Within a block, wq, wk, wv, w1 and w3 are column-parallel (each rank holds n_heads / tp
    heads and ffn_hidden / tp FFN columns, and computes them without communication) and wo, w2
    row-parallel (each rank's partial products are summed). Between the attention and the FFN,
    in the norms and the residual stream, activations are split along the sequence instead of
    replicated: the sum after wo and w2 becomes a reduce-scatter onto sequence shards and the
    input of the next column-parallel layers an all-gather, the same traffic as Megatron's two
    all-reduces, while the norms' inputs and the residual stream take 1/tp of the memory.

    The embedding is split by vocabulary rows (its output reduce-scattered onto sequence
    shards), the output projection by vocabulary columns; its logits are gathered whole on every
    rank, so the loss is the ordinary cross-entropy.
    """
    sequence_sharded = Shard(1)
    parallelize_module(
        model,
        mesh,
        {
            "tok_embeddings": RowwiseParallel(
                input_layouts=Replicate(), output_layouts=sequence_sharded
            ),
            "norm": SequenceParallel(),
            "output": ColwiseParallel(input_layouts=sequence_sharded, output_layouts=Replicate()),
        },
    )
    # Attention's inputs are (x, cos, sin, cache, start_pos): only x is distributed.
    gather_x = PrepareModuleInput(
        input_layouts=(sequence_sharded, None, None, None, None),
        desired_input_layouts=(Replicate(), None, None, None, None),
    )
    for block in model.layers:
        parallelize_module(
            block,
            mesh,
            {
                "attention_norm": SequenceParallel(),
                "attention": gather_x,
                "attention.wq": ColwiseParallel(),
                "attention.wk": ColwiseParallel(),
                "attention.wv": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=sequence_sharded),
                "ffn_norm": SequenceParallel(),
                "feed_forward": PrepareModuleInput(
                    input_layouts=(sequence_sharded,), desired_input_layouts=(Replicate(),)
                ),
                "feed_forward.w1": ColwiseParallel(),
                "feed_forward.w3": ColwiseParallel(),
                "feed_forward.w2": RowwiseParallel(output_layouts=sequence_sharded),
            },
        )


def apply_float8(model: nn.Module) -> None:
    """Run the blocks' linear layers in float8 (torchao's `Float8Linear`, "tensorwise" recipe:
    one dynamic scale per tensor for inputs, weights and output gradients, e4m3 forward and e5m2
    for gradients), the recipe torchao recommends for throughput on H100-class GPUs. Master
    weights, optimizer state and everything outside the matmuls stay as they were; the output
    projection stays in bf16 (its logits feed the loss directly, where float8's rounding shows
    most), and so does any layer whose dimensions are not multiples of 16 (the float8 kernels'
    requirement). Parameter names do not change, so checkpoints move between float8 and bf16."""
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as error:
        raise RuntimeError(
            "float8 training needs torchao: pip install 'llama-pipeline[float8]'"
        ) from error

    def in_blocks(module: nn.Module, name: str) -> bool:
        dims = (module.in_features, module.out_features) if isinstance(module, nn.Linear) else ()
        return name.startswith("layers.") and all(d % 16 == 0 for d in dims)

    config = Float8LinearConfig.from_recipe_name("tensorwise")
    convert_to_float8_training(model, config=config, module_filter_fn=in_blocks)


def apply_ac(model: nn.Module, mode: ACMode) -> None:
    """Wrap every block of `model.layers` in activation checkpointing.

    "off": store every activation. "full": store only each block's input and rerun the whole
    block in backward (about one more forward pass of compute, least memory). "selective": rerun
    only the cheap element-wise ops and keep the outputs of `SAVED_OPS`, the paper's "save the
    activations that are expensive to compute".
    """
    if mode not in ("off", "selective", "full"):
        raise ValueError(f"activation checkpointing mode {mode!r}: use off, selective or full")
    if mode == "off":
        return
    kwargs = {"preserve_rng_state": False}  # no dropout: nothing random to replay
    if mode == "selective":
        kwargs["context_fn"] = partial(create_selective_checkpoint_contexts, SAVED_OPS)
    for i, block in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(block, **kwargs)


def apply_compile(model: nn.Module, fullgraph: bool = True) -> None:
    """Compile each block separately, in place. The blocks share one graph (same code, same
    shapes), so compile time is that of one block; a graph per block is also what FSDP needs to
    insert its communication between blocks. `fullgraph` turns a graph break into an error
    instead of a silent slowdown."""
    for block in model.layers:
        block.compile(fullgraph=fullgraph)


def prefer_cudnn_attention() -> AbstractContextManager:
    """Inside this context SDPA tries cuDNN's fused attention before FlashAttention-2 (same math,
    same accuracy; other backends remain as fallbacks). PyTorch puts FlashAttention-2 first; on
    Hopper (H100, H200) cuDNN's kernels are markedly faster for training shapes, elsewhere not.
    The choice is made when attention runs forward, or is traced by torch.compile, and fixes
    the backward's kernel; hold the context around forward and backward alike, since activation
    checkpointing reruns the forward during backward."""
    order = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    return sdpa_kernel(order, set_priority=True)


def apply_fsdp(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype | None = torch.bfloat16,
    reduce_dtype: torch.dtype | None = torch.float32,
    reshard_after_forward: bool = True,
) -> None:
    """Shard `model` (a `Llama`) with FSDP2 over `mesh`: one unit per block, one for the token
    embedding, one for the final norm and output projection, then the root.

    Mixed precision: parameters are all-gathered and used in `param_dtype` (bf16 halves the
    traffic and runs the matmuls in bf16 without autocast) while the sharded fp32 copy stays the
    optimizer's master; gradients are reduce-scattered in `reduce_dtype`. `None` keeps fp32.
    Inputs of a unit are not cast (`cast_forward_inputs=False`) so the float32 rotary tables stay
    exact; the embedding already emits `param_dtype`.

    Overlap: each unit is told to prefetch the next one's all-gather in forward and the previous
    one's in backward, so communication for block i+1 runs while block i computes.
    `reshard_after_forward=False` keeps gathered blocks for backward (more memory, less traffic);
    the last unit never reshards since backward needs it at once.
    """
    mp = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=reduce_dtype, cast_forward_inputs=False
    )
    shard = partial(fully_shard, mesh=mesh, mp_policy=mp)
    blocks = list(model.layers)
    shard(model.tok_embeddings, reshard_after_forward=reshard_after_forward)
    for block in blocks:
        shard(block, reshard_after_forward=reshard_after_forward)
    shard([model.norm, model.output], reshard_after_forward=False)
    shard(model)

    forward_order = [model.tok_embeddings, *blocks, model.output]
    for unit, following in zip(forward_order, forward_order[1:], strict=False):
        unit.set_modules_to_forward_prefetch([following])
        following.set_modules_to_backward_prefetch([unit])
