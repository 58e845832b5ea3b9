"""The LLaMA network (Touvron et al. 2023), readable in one sitting.

Pre-norm decoder: token embedding, `n_layers` blocks of [RMSNorm -> causal self-attention with
rotary position embeddings -> residual add, RMSNorm -> SwiGLU -> residual add], final RMSNorm,
untied output projection. No biases anywhere, no dropout.

Decisions a reader of the checkpoints needs to know:

- Rotary layout: half-split ("rotate_half"), as in HF transformers' `LlamaForCausalLM`: within a
  head, dimension i is rotated together with dimension i + head_dim/2. Meta's original code pairs
  neighbours (2i, 2i+1) instead; the two differ only by a fixed permutation of the rows of wq and
  wk (HF's converter applies it). With HF's layout an export to HF is a plain copy of row blocks;
  importing Meta's own consolidated checkpoints is what needs the permutation.
- Separate projections: wq, wk, wv, wo and w1 (gate), w3 (up), w2 (down), as in Meta's code
  and HF's. Fusing wq/wk/wv (or w1/w3) into one wide matmul saves a little kernel launch and
  input reading on a GPU, but tensor parallelism shards each projection by output rows, and a
  fused matrix would hand one rank all of q and another all of v. Separate matrices shard as
  they are, and a checkpoint's names are HF's up to renaming.
- Attention goes through `F.scaled_dot_product_attention` with `is_causal=True` on the
  full-sequence path, so flash kernels are used: attention weights are never stored and the blocks
  above the diagonal are never computed.
- RMSNorm, rotary and softmax run in float32 whatever the autocast dtype; matmuls follow autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import LlamaConfig
from model.init import canonical_name, init_normal_


class RMSNorm(nn.Module):
    """x / rms(x) * weight (Zhang & Sennrich 2019), computed in float32: no centering, no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), self.weight.shape, eps=self.eps).type_as(x) * self.weight


def rotary_tables(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of position * theta^(-2i/head_dim) for i < head_dim/2, float32, shape
    (len(positions), head_dim/2). Computed per call rather than stored as a buffer: a buffer would
    be cast by `model.to(torch.bfloat16)` (losing the angles of far positions) and would need
    re-filling after meta-device construction; the cost is a few tiny kernels per forward."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim
    angles = positions.float()[:, None] * (1.0 / theta**exponents)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs (x[..., i], x[..., i + head_dim/2]) of x (batch, seq, heads, head_dim) by
    the angles of their position; tables (seq, head_dim/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of q (batch, heads, t, head_dim), the last t positions, over all s >= t keys,
    each query seeing the keys up to its own position. t == s is training and the prefill of an
    empty cache: `is_causal` there. One new token sees every key: no mask. A chunk appended to a
    filled cache needs the mask shifted by s - t (SDPA's `is_causal` aligns it top-left)."""
    t, s = q.size(2), k.size(2)
    if t == s:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = None if t == 1 else torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@dataclass
class LayerCache:
    """Keys and values of one layer, (batch, heads, capacity, head_dim), filled up to a position."""

    k: Tensor
    v: Tensor

    def update(self, start_pos: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store positions [start_pos, start_pos + t); return all keys and values so far."""
        end = start_pos + k.size(2)
        self.k[:, :, start_pos:end] = k
        self.v[:, :, start_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


@dataclass
class KVCache:
    """Per-layer key/value buffers for incremental decoding (`Llama.forward(..., cache=...)`)."""

    layers: list[LayerCache]

    @classmethod
    def empty(
        cls,
        config: LlamaConfig,
        batch_size: int,
        max_seq_len: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        """Buffers for `max_seq_len` positions (default: the model's context). `dtype` is that of
        the activations: the model's dtype, or the autocast dtype."""
        shape = (batch_size, config.n_heads, max_seq_len or config.max_seq_len, config.head_dim)

        def buffer() -> Tensor:
            return torch.zeros(shape, device=device, dtype=dtype)

        return cls([LayerCache(buffer(), buffer()) for _ in range(config.n_layers)])


class Attention(nn.Module):
    """Multi-head causal self-attention with rotary embeddings on queries and keys."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.dim, bias=False)
        self.wk = nn.Linear(config.dim, config.dim, bias=False)
        self.wv = nn.Linear(config.dim, config.dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, cache: LayerCache | None, start_pos: int
    ) -> Tensor:
        b, t, _ = x.shape
        # Heads as -1: under tensor parallelism this rank holds n_heads / tp of them.
        q, k, v = (w(x).view(b, t, -1, self.head_dim) for w in (self.wq, self.wk, self.wv))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, t, hd)
        if cache is not None:
            k, v = cache.update(start_pos, k, v)
        out = causal_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """One pre-norm transformer layer: the unit of activation checkpointing, compile and FSDP."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config.dim, config.ffn_hidden)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: LayerCache | None = None,
        start_pos: int = 0,
    ) -> Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, cache, start_pos)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    """The network: `forward(tokens) -> logits`, or with a `KVCache` for incremental decoding.

    Initialization (`init_weights`, GPT-2/Megatron scheme): every matrix (embedding, projections,
    output) ~ Normal(0, 0.02); the two matrices that write into the residual stream, `wo` and
    `w2`, ~ Normal(0, 0.02 / sqrt(2 * n_layers)), so that the 2 * n_layers branch outputs summed
    into the stream keep its variance near that of one branch however deep the model; RMSNorm
    weights 1. The paper does not state its scheme; this one is simple, depth-aware and known to
    train stably at these widths. It runs in place, so a model built on the meta device can be
    materialized (`to_empty`), sharded or not, and initialized afterwards.

    The draws come from `model.init`: each parameter's values are a function of (seed, parameter
    name, row block) only, so a model sharded over any mesh (each rank filling its own rows) gets
    bit for bit the weights of `Llama(config, seed=seed)`, and no rank holds more than its shard.
    `seed=None` takes the seed `torch.manual_seed` last set (`torch.initial_seed()`), so code
    that seeds torch globally keeps its determinism; the trainer passes its seed explicitly.
    """

    def __init__(self, config: LlamaConfig, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.init_weights(seed=seed)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, seed: int | None = None) -> None:
        """(Re-)initialize every parameter as described in the class docstring: in place, each
        process only its own rows of sharded (DTensor) parameters; meta parameters are skipped."""
        seed = torch.initial_seed() if seed is None else seed
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, nn.Linear | nn.Embedding):
                name = canonical_name(name)
                writes_residual = name.endswith(("attention.wo", "feed_forward.w2"))
                scale = residual_std if writes_residual else std
                init_normal_(module.weight, f"{name}.weight", seed, scale)

    def forward(self, tokens: Tensor, cache: KVCache | None = None, start_pos: int = 0) -> Tensor:
        """Logits (batch, t, vocab) for tokens (batch, t) at positions start_pos .. start_pos+t-1.

        Without a cache every position attends causally within `tokens`. With one, keys and
        values of these positions are stored in it and the queries also attend to the positions
        before `start_pos` stored by earlier calls.
        """
        positions = torch.arange(start_pos, start_pos + tokens.size(1), device=tokens.device)
        cos, sin = rotary_tables(positions, self.config.head_dim, self.config.rope_theta)
        x = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if cache is None else cache.layers[i], start_pos)
        return self.output(self.norm(x))
