"""Autoregressive generation with a static key/value cache: greedy or sampled, batched, streamed.

How a batch of prompts of different lengths runs (the choices a reader needs):

- Left padding with per-sequence positions. Prompts are right-aligned in a (batch, P) block,
  P the longest prompt; sequence b starts at cache slot offsets[b] = P - len(b). Its rotary
  positions are slot - offsets[b], so every sequence sees positions 0, 1, 2, ... exactly as
  when it runs alone, and an attention mask hides the pad slots from real tokens. All sequences
  then write the same cache slot at each decode step: one slot index for the whole batch,
  which is what makes the step a fixed-shape function (compilable, CUDA-graph capturable).
  Pad query rows attend only to themselves (a fully masked row would be NaN and poison the
  values of the pad slots); their outputs are never used.
- Prefill is one forward over the padded prompts; then one token per step. Only the last
  position's logits are computed (the vocabulary projection of P positions is wasted work).
- Stopping: a sequence is finished after it emits `eos_id` (included in its output) and yields
  None from then on; the batch keeps its fixed shape (finished rows are computed and ignored:
  rows are independent) and the loop ends when every sequence has finished or after
  `max_new_tokens`.
- The static cache has a fixed capacity per (batch, capacity) shape: `cache_len`, or the needed
  length rounded up to a multiple of 256, so repeated calls reuse the compiled and captured
  step. Slots past the current one are masked, so stale contents from an earlier call are
  never read.
- Speed at batch 1 is per-token overhead: the decode step (embedding, 24 blocks, norm, output)
  is captured once into a CUDA graph and replayed (one launch per token instead of hundreds);
  `compile=True` additionally compiles each block with torch.compile (fused norms, rotary and
  SwiGLU; one compilation shared by all blocks). The host reads each step's tokens through a
  pinned buffer after the next step is queued, so the GPU never waits for Python. Run the model
  in bf16 on a GPU (`model.to("cuda", torch.bfloat16)`): the cache takes the model's dtype.

Sampling is seeded (`torch.Generator`): the same seed, prompts and model give the same tokens.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from model.llama import Block, KVCache, Llama, apply_rotary, rotary_tables

CAPACITY_MULTIPLE = 256


@dataclass(frozen=True)
class Sampling:
    """What to generate: `temperature` 0 is greedy; `top_k` keeps the k most likely tokens,
    `top_p` the smallest set whose probability reaches p (nucleus), both before sampling."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    eos_id: int | None = 2

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0 is greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


@dataclass(frozen=True)
class Generation:
    """New tokens per prompt (eos included when a sequence stopped on it) and timings."""

    tokens: list[list[int]]
    stopped: list[bool]
    prefill_s: float  # time to the first new token
    seconds: float  # total, device work included

    @property
    def new_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else math.inf


def select(logits: Tensor, sampling: Sampling, generator: torch.Generator) -> Tensor:
    """Next token per row of float32 logits (batch, vocab)."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < logits.size(-1):
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = logits.softmax(dim=-1)
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the tokens more likely than it already reach top_p: the most likely
        # token always stays.
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= sampling.top_p
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs.masked_fill(outside, 0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def decode_block(
    layer: Block,
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    slots: Tensor,
    mask: Tensor,
) -> Tensor:
    """`Block.forward` over a static cache: x (batch, t, dim) at cache slots `slots` (t,), its
    keys and values written there, attention under `mask` (batch, 1, t, capacity). Rotary is
    applied in the (batch, heads, t, head_dim) layout with per-sequence tables (batch, t, hd/2):
    `apply_rotary` broadcasts the tables over heads either way."""
    attn = layer.attention
    b, t, _ = x.shape
    h = layer.attention_norm(x)
    q, k, v = (
        w(h).view(b, t, -1, attn.head_dim).transpose(1, 2) for w in (attn.wq, attn.wk, attn.wv)
    )
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    k_cache.index_copy_(2, slots, k)
    v_cache.index_copy_(2, slots, v)
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask)
    x = x + attn.wo(out.transpose(1, 2).reshape(b, t, -1))
    return x + layer.feed_forward(layer.ffn_norm(x))


BlockFn = Callable[..., Tensor]


def forward_last(
    model: Llama,
    block_fn: BlockFn,
    cache: KVCache,
    tokens: Tensor,
    slots: Tensor,
    offsets: Tensor,
) -> Tensor:
    """float32 logits (batch, vocab) of the last of `tokens` (batch, t), written at cache slots
    `slots` (t,) by sequences whose first real slot is `offsets` (batch,). Tensor arguments
    only, no host synchronization: the decode step is this function with t = 1."""
    b, t = tokens.shape
    config = model.config
    positions = slots[None, :] - offsets[:, None]
    cos, sin = rotary_tables(positions.flatten(), config.head_dim, config.rope_theta)
    cos, sin = cos.view(b, t, -1), sin.view(b, t, -1)
    keys = torch.arange(cache.layers[0].k.size(2), device=tokens.device)
    query = slots[:, None]
    visible = (keys >= offsets[:, None, None]) | (keys == query)  # real slots, or itself
    mask = (visible & (keys <= query))[:, None]
    x = model.tok_embeddings(tokens)
    for layer, layer_cache in zip(model.layers, cache.layers, strict=True):
        x = block_fn(layer, x, cos, sin, layer_cache.k, layer_cache.v, slots, mask)
    return model.output(model.norm(x[:, -1])).float()


class _Session:
    """The fixed-shape state of generation for (batch, capacity): cache, step inputs, and the
    decode step, captured into a CUDA graph when asked. Step inputs live in static buffers
    because a graph replays with the addresses it was captured with."""

    def __init__(
        self, model: Llama, batch: int, capacity: int, block_fn: BlockFn, cuda_graph: bool
    ) -> None:
        device, dtype = model.output.weight.device, model.output.weight.dtype
        self.model, self.block_fn = model, block_fn
        self.shape = (batch, capacity)
        self.cache = KVCache.empty(model.config, batch, capacity, device=device, dtype=dtype)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.offsets = torch.zeros(batch, dtype=torch.long, device=device)
        self.step = partial(
            forward_last, model, block_fn, self.cache, self.tokens, self.slot, self.offsets
        )
        self.graph: torch.cuda.CUDAGraph | None = None
        if cuda_graph:
            self._capture()

    def _capture(self) -> None:
        """Warm up (compiles, cuBLAS workspaces) on a side stream, as capture requires, then
        record one decode step. The warm-up writes slot 0, which every prefill rewrites."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.step()

    def prefill(self, tokens: Tensor, offsets: Tensor) -> Tensor:
        """Logits after the padded prompts (batch, P); positions continue at slot P."""
        self.offsets.copy_(offsets)
        prompt_len = tokens.size(1)
        slots = torch.arange(prompt_len, device=tokens.device)
        logits = forward_last(self.model, decode_block, self.cache, tokens, slots, self.offsets)
        self.slot.fill_(prompt_len - 1)
        return logits

    def decode(self, tokens: Tensor) -> Tensor:
        """Logits after feeding one token per sequence at the next slot. With a graph the
        result is its output buffer: read it before the next call."""
        self.tokens.copy_(tokens[:, None])
        self.slot.add_(1)
        if self.graph is None:
            return self.step()
        self.graph.replay()
        return self.logits


class _HostTokens:
    """A step's tokens copied to the host without waiting for the work queued after them: on a
    GPU into pinned memory, with an event to wait on (the copy, not the queue)."""

    def __init__(self, batch: int, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.buffer = torch.empty(batch, dtype=torch.long, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None

    def start(self, tokens: Tensor) -> None:
        self.buffer.copy_(tokens, non_blocking=self.cuda)
        if self.event is not None:
            self.event.record()

    def result(self) -> list[int]:
        if self.event is not None:
            self.event.synchronize()
        return self.buffer.tolist()


class Generator:
    """Generation for one model (kept in eval mode, in its dtype and on its device).

    `compile`: torch.compile each block of the decode step (once for all blocks; a new
    (batch, capacity) shape compiles again). `cuda_graph`: replay the decode step from a CUDA
    graph; None means "on a GPU", falling back to eager with a warning if capture fails.
    `cache_len`: a fixed cache capacity (every call with the same batch size then reuses one
    compiled, captured step); None sizes it per call (rounded up to 256 positions). `pad_id`
    fills the left padding (any valid id: pads are masked).
    """

    def __init__(
        self,
        model: Llama,
        *,
        compile: bool = False,
        cuda_graph: bool | None = None,
        cache_len: int | None = None,
        pad_id: int = 0,
    ) -> None:
        self.model = model.eval()
        self.device = model.output.weight.device
        self.cuda_graph = cuda_graph
        self.cache_len = cache_len
        self.pad_id = pad_id
        self.block_fn: BlockFn = (
            torch.compile(decode_block, fullgraph=True, dynamic=False) if compile else decode_block
        )
        self._session: _Session | None = None

    def _capacity(self, needed: int) -> int:
        limit = self.model.config.max_seq_len
        if needed > limit:
            raise ValueError(f"prompt + new tokens need {needed} positions; context is {limit}")
        if self.cache_len is None:
            return min(-(-needed // CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE, limit)
        if needed > self.cache_len:
            raise ValueError(f"prompt + new tokens need {needed} positions; cache_len is "
                             f"{self.cache_len}")  # fmt: skip
        return self.cache_len

    def _session_for(self, batch: int, capacity: int) -> _Session:
        """The cached session of this shape, or a new one (replacing the old: one cache)."""
        session = self._session
        if session is not None and session.shape == (batch, capacity):
            return session
        self._session = None  # free the old cache and graph before allocating new ones
        graph = self.device.type == "cuda" if self.cuda_graph is None else self.cuda_graph
        try:
            self._session = _Session(self.model, batch, capacity, self.block_fn, graph)
        except RuntimeError as exc:
            if self.cuda_graph is not None or not graph:
                raise
            warnings.warn(f"CUDA graph capture failed, decoding eagerly: {exc}", stacklevel=3)
            self._session = _Session(self.model, batch, capacity, self.block_fn, False)
        return self._session

    def _pad(self, prompts: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Left-padded prompt block (batch, P) and each sequence's first real slot."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (e.g. <s>)")
        vocab = self.model.config.vocab_size
        if any(not 0 <= t < vocab for p in prompts for t in p):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        width = max(len(p) for p in prompts)
        rows = [[self.pad_id] * (width - len(p)) + list(p) for p in prompts]
        offsets = [width - len(p) for p in prompts]
        device = self.device
        return torch.tensor(rows, device=device), torch.tensor(offsets, device=device)

    @torch.inference_mode()
    def stream(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None
    ) -> Iterator[list[int | None]]:
        """Yield, per step, each sequence's new token (None once it has finished)."""
        sampling = sampling or Sampling()
        tokens, offsets = self._pad(prompts)
        batch, prompt_len = tokens.shape
        session = self._session_for(batch, self._capacity(prompt_len + sampling.max_new_tokens - 1))
        generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        host = _HostTokens(batch, self.device)
        logits = session.prefill(tokens, offsets)
        finished = [False] * batch
        for step in range(sampling.max_new_tokens):
            new = select(logits, sampling, generator)
            host.start(new)
            if step + 1 < sampling.max_new_tokens:
                logits = session.decode(new)  # queued before the host waits for `new`
            out = [None if done else t for t, done in zip(host.result(), finished, strict=True)]
            finished = [done or t == sampling.eos_id for t, done in zip(out, finished, strict=True)]
            yield out
            if all(finished):
                return

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: Sampling | None = None,
        on_step: Callable[[list[int | None]], None] | None = None,
    ) -> Generation:
        """Run `stream` to the end; `on_step` sees each step's tokens as they arrive."""
        sampling = sampling or Sampling()
        outputs: list[list[int]] = [[] for _ in prompts]
        started = time.perf_counter()
        prefill_s = 0.0
        for step, new in enumerate(self.stream(prompts, sampling)):
            if step == 0:
                prefill_s = time.perf_counter() - started
            for out, token in zip(outputs, new, strict=True):
                if token is not None:
                    out.append(token)
            if on_step is not None:
                on_step(new)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        stopped = [bool(out) and out[-1] == sampling.eos_id for out in outputs]
        return Generation(outputs, stopped, prefill_s, time.perf_counter() - started)
