"""The LLaMA network, its optimizer and its parallelization helpers, on CPU in seconds."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from model import KVCache, Llama, LlamaConfig
from model.config import swiglu_hidden
from model.llama import RMSNorm, apply_rotary, rotary_tables
from training.optim import WarmupCosine, build_optimizer, build_scheduler, param_groups
from training.parallelize import apply_ac, apply_fsdp

SMALL = LlamaConfig(dim=64, n_layers=2, n_heads=4, vocab_size=128, multiple_of=32, max_seq_len=64)


def small_model(seed: int = 0, **overrides) -> Llama:
    torch.manual_seed(seed)
    return Llama(dataclasses.replace(SMALL, **overrides))


def tokens(batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(
        0, SMALL.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed)
    )


def lm_loss(model: Llama, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


@pytest.mark.parametrize(
    ("preset", "billions"), [("7B", 6.7), ("13B", 13.0), ("33B", 32.5), ("65B", 65.2)]
)
def test_preset_parameter_counts_match_the_paper(preset: str, billions: float) -> None:
    config = LlamaConfig.preset(preset)
    with torch.device("meta"):
        model = Llama(config)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == config.num_params()
    # The paper truncates to one decimal: the 65B has 65.29e9 parameters and is listed as 65.2B.
    assert math.floor(counted / 1e8) / 10 == billions


def test_ffn_hidden_is_two_thirds_of_4d_rounded_up_to_256() -> None:
    widths = {name: LlamaConfig.preset(name).ffn_hidden for name in ("7B", "13B", "33B", "65B")}
    assert widths == {"7B": 11008, "13B": 13824, "33B": 17920, "65B": 22016}
    assert swiglu_hidden(2048) == LlamaConfig.preset("1.36B").ffn_hidden == 5632
    assert LlamaConfig(dim=4096, n_layers=1, n_heads=32, ffn_hidden=1000).ffn_hidden == 1000
    assert LlamaConfig.preset("7B", dim=2048, n_heads=16).ffn_hidden == 5632  # re-derived


def test_flops_per_token_excludes_only_the_input_embedding() -> None:
    config = LlamaConfig.preset("1.36B")
    assert config.num_params() == 1_364_297_728
    non_embedding = config.num_params() - 32000 * 2048
    assert config.flops_per_token(2048) == 6 * non_embedding + 12 * 24 * 2048 * 2048


def test_forward_shape_and_dtype() -> None:
    logits = small_model()(tokens(3, 10))
    assert logits.shape == (3, 10, SMALL.vocab_size)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_a_future_token_does_not_change_earlier_logits() -> None:
    model, batch = small_model(), tokens(1, 16)
    changed = batch.clone()
    changed[0, 10] = (changed[0, 10] + 1) % SMALL.vocab_size
    with torch.no_grad():
        before, after = model(batch), model(changed)
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_incremental_decoding_with_the_cache_equals_the_full_forward() -> None:
    model, batch = small_model(), tokens(2, 20)
    cache = KVCache.empty(model.config, batch_size=2, max_seq_len=32)
    with torch.no_grad():
        full = model(batch)
        pieces = [model(batch[:, :8], cache=cache, start_pos=0)]  # prefill
        pieces += [model(batch[:, p : p + 1], cache=cache, start_pos=p) for p in range(8, 15)]
        pieces.append(model(batch[:, 15:], cache=cache, start_pos=15))  # a chunk after the prefix
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_rotary_uses_the_hf_rotate_half_layout() -> None:
    head_dim, x = 8, torch.randn(1, 5, 2, 8)  # (batch, seq, heads, head_dim)
    cos, sin = rotary_tables(torch.arange(5), head_dim, 10000.0)
    # transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb, written out:
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim)
    emb = torch.cat([torch.outer(torch.arange(5).float(), inv_freq)] * 2, dim=-1)[:, None, :]
    x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
    hf = x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()
    torch.testing.assert_close(apply_rotary(x, cos, sin), hf)


def test_init_weights_scheme_and_meta_device_construction() -> None:
    config = LlamaConfig.preset("tiny", vocab_size=512)
    torch.manual_seed(0)
    direct = Llama(config)
    block = direct.layers[0]
    assert block.attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    assert block.feed_forward.w2.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert all(
        torch.equal(m.weight, torch.ones(config.dim))
        for m in direct.modules()
        if isinstance(m, RMSNorm)
    )
    with torch.device("meta"):
        deferred = Llama(config)
    deferred.to_empty(device="cpu")
    for model in (direct, deferred):  # the same seed gives the same weights on either path
        torch.manual_seed(0)
        model.init_weights()
    for (name, a), b in zip(
        direct.state_dict().items(), deferred.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_few_steps_reduce_the_loss_on_a_repeated_batch() -> None:
    model, batch = small_model(), tokens(4, 32)
    optimizer = build_optimizer(model, lr=3e-3)
    losses = []
    for _ in range(15):
        loss = lm_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def backward_flops(mode: str) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    model = small_model(n_layers=3)
    apply_ac(model, mode)
    loss = lm_loss(model, tokens(2, 33))
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()], counter.get_total_flops()


def test_activation_checkpointing_modes_agree_and_selective_keeps_the_matmuls() -> None:
    loss_off, grads_off, flops_off = backward_flops("off")
    for mode in ("selective", "full"):
        loss, grads, flops = backward_flops(mode)
        torch.testing.assert_close(loss, loss_off)
        for g, g_off in zip(grads, grads_off, strict=True):
            torch.testing.assert_close(g, g_off)
        # selective recomputes element-wise ops only; full reruns each block's matmuls too
        assert flops == flops_off if mode == "selective" else flops > flops_off
    model = small_model()
    apply_ac(model, "selective")
    assert list(model.state_dict()) == list(small_model().state_dict())  # keys unchanged
    with pytest.raises(ValueError):
        apply_ac(model, "sometimes")


def test_weight_decay_applies_to_matrices_not_to_norms() -> None:
    model = small_model()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    norms = {id(m.weight) for m in model.modules() if isinstance(m, RMSNorm)}
    assert {id(p) for p in no_decay["params"]} == norms
    decayed = {id(p) for p in decay["params"]}
    assert id(model.tok_embeddings.weight) in decayed and id(model.output.weight) in decayed
    assert len(decayed) + len(norms) == len(list(model.parameters()))
    optimizer = build_optimizer(model, lr=1e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_schedule_warms_up_linearly_then_decays_to_ten_percent() -> None:
    schedule = WarmupCosine(warmup_steps=10, total_steps=110)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.55)  # half-way down the cosine
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)
    optimizer = build_optimizer(small_model(), lr=1.0)
    scheduler = build_scheduler(optimizer, total_steps=110, warmup_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    resumed = build_scheduler(
        build_optimizer(small_model(), lr=1.0), total_steps=110, warmup_steps=10
    )
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.get_last_lr() == scheduler.get_last_lr() == [pytest.approx(0.6)] * 2


def test_fsdp_on_one_process_gives_the_unsharded_loss() -> None:
    from torch.distributed.device_mesh import init_device_mesh

    reference = small_model()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = small_model()
        apply_ac(model, "selective")
        apply_fsdp(model, init_device_mesh("cpu", (1,)), param_dtype=None, reduce_dtype=None)
        batch = tokens(2, 17)
        loss = lm_loss(model, batch)
        loss.backward()
        torch.testing.assert_close(loss, lm_loss(reference, batch))
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()
