"""Generation with the static KV cache: greedy equals transformers' `generate` on the exported
model, padding does not change results, sampling is seeded, top-k/top-p restrict the choice,
eos stops each sequence, the compiled step computes what the eager one does."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_hf import SMALL, random_model, sentencepiece_model
from transformers import LlamaForCausalLM

from model import Generator, Llama, Sampling
from model.generate import select
from model.hf import export_hf

PROMPTS = [[1, 5, 9, 33, 250], [1, 7], [1, 100, 200, 300, 50, 60, 70, 80, 90], [1]]
GREEDY = Sampling(max_new_tokens=16, eos_id=None)


@pytest.fixture(scope="module")
def model() -> Llama:
    return random_model()


def greedy(model: Llama, prompts: list[list[int]], sampling: Sampling = GREEDY) -> list[list[int]]:
    return Generator(model).generate(prompts, sampling).tokens


def test_greedy_equals_transformers_generate(model, tmp_path) -> None:
    """A left-padded batch through HF (attention mask, positions from it) and through ours."""
    tokenizer = sentencepiece_model(tmp_path / "tokenizer.model")
    out = export_hf(model, tokenizer, tmp_path / "hf", torch.float32)
    hf = LlamaForCausalLM.from_pretrained(out, attn_implementation="eager", dtype=torch.float32)
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    n = 24
    with torch.no_grad():
        theirs = hf.eval().generate(
            ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=0
        )[:, width:]
    ours = greedy(model, PROMPTS, Sampling(max_new_tokens=n, eos_id=2))
    for row, tokens in zip(theirs.tolist(), ours, strict=True):
        stop = row.index(2) + 1 if 2 in row else n  # HF pads after eos; we stop
        assert tokens == row[:stop]


def test_batch_equals_each_prompt_alone(model) -> None:
    alone = [greedy(model, [p])[0] for p in PROMPTS]
    assert greedy(model, PROMPTS) == alone
    assert greedy(model, PROMPTS[::-1]) == alone[::-1]


def test_greedy_equals_full_forward_without_cache(model) -> None:
    prompt = PROMPTS[0]
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(GREEDY.max_new_tokens):
            sequence.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
    assert greedy(model, [prompt])[0] == sequence[len(prompt) :]


def test_reused_cache_gives_the_same_tokens(model) -> None:
    """One generator, one fixed cache: a long call leaves stale keys past a later short call's
    slots; they must stay masked."""
    generator = Generator(model, cache_len=48)
    generator.generate([PROMPTS[2] * 3], GREEDY)
    assert generator.generate(PROMPTS, GREEDY).tokens == greedy(model, PROMPTS)


def test_sampling_is_deterministic_for_a_seed(model) -> None:
    sampling = Sampling(max_new_tokens=16, temperature=1.0, seed=7, eos_id=None)
    first = Generator(model).generate(PROMPTS, sampling).tokens
    assert Generator(model).generate(PROMPTS, sampling).tokens == first
    other = Generator(model).generate(PROMPTS, dataclasses.replace(sampling, seed=8)).tokens
    assert other != first
    assert first != greedy(model, PROMPTS)


@pytest.mark.parametrize("restriction", [{"top_k": 1}, {"top_p": 1e-6}, {"top_k": 1, "top_p": 0.9}])
def test_a_single_candidate_is_greedy(model, restriction) -> None:
    sampling = Sampling(max_new_tokens=16, temperature=1.5, seed=3, eos_id=None, **restriction)
    assert Generator(model).generate(PROMPTS, sampling).tokens == greedy(model, PROMPTS)


def test_top_k_and_top_p_keep_the_right_candidates() -> None:
    """probs 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps the first two (0.5 < 0.7 <= 0.8), as does
    top_k 2; sampled often, both survivors appear and nothing else does."""
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, 4)
    for restriction in ({"top_p": 0.7}, {"top_k": 2}, {"top_p": 0.8}):
        sampling = Sampling(temperature=1.0, **restriction)
        drawn = select(logits, sampling, torch.Generator().manual_seed(0))
        assert set(drawn.tolist()) == {0, 1}, restriction
    drawn = select(logits, Sampling(temperature=1.0, top_p=0.81), torch.Generator())
    assert set(drawn.tolist()) == {0, 1, 2}


def test_each_sequence_stops_at_eos(model) -> None:
    reference = greedy(model, PROMPTS)
    eos = reference[0][3]  # a token that sequence 0 emits at step 3
    steps: list[list[int | None]] = []
    sampling = dataclasses.replace(GREEDY, eos_id=eos)
    result = Generator(model).generate(PROMPTS, sampling, on_step=steps.append)
    expected = [r[: r.index(eos) + 1] if eos in r else r for r in reference]
    assert result.tokens == expected
    assert result.stopped == [eos in r for r in reference]
    assert len(steps) == max(len(e) for e in expected)  # ends early when all have stopped
    for i, tokens in enumerate(expected):
        assert [s[i] for s in steps] == tokens + [None] * (len(steps) - len(tokens))


def test_generation_reports_its_speed(model) -> None:
    result = Generator(model).generate(PROMPTS, GREEDY)
    assert result.new_tokens == len(PROMPTS) * GREEDY.max_new_tokens
    assert 0 < result.prefill_s <= result.seconds
    assert result.tokens_per_s == pytest.approx(result.new_tokens / result.seconds)


def test_bad_requests_are_refused(model) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        greedy(model, [[1], []])
    with pytest.raises(ValueError, match="token ids"):
        greedy(model, [[1, SMALL.vocab_size]])
    with pytest.raises(ValueError, match="context"):
        greedy(model, [[1] * 60], Sampling(max_new_tokens=10))
    with pytest.raises(ValueError, match="cache_len"):
        Generator(model, cache_len=8).generate([[1] * 4], Sampling(max_new_tokens=8))
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0.0)


def test_compiled_decode_step_matches_eager(model) -> None:
    """torch.compile of the decode block (fullgraph: a graph break fails here, not on a GPU)."""
    compiled = Generator(model, compile=True, cache_len=32)
    assert compiled.generate(PROMPTS, GREEDY).tokens == greedy(model, PROMPTS)
