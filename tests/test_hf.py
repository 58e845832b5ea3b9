"""HF transformers interop: an exported directory loads in transformers and computes the same
logits, round-trips bit for bit, carries a tokenizer that encodes like SentencePiece, and
architectures our model lacks are refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file, save_file
from token_corpus import CODE, PARAGRAPHS, documents
from transformers import AutoTokenizer, LlamaForCausalLM, LlamaTokenizer

from curation.tokens.tokenizer import TokenizerConfig, train_model, training_sentences
from model import Llama, LlamaConfig
from model.hf import (
    UnsupportedCheckpoint,
    export_hf,
    from_hf_state_dict,
    import_hf,
    to_hf_state_dict,
)

# Non-default theta and eps: a converter that drops either fails the logits test.
SMALL = LlamaConfig(
    dim=64, n_layers=2, n_heads=4, vocab_size=600, multiple_of=32, max_seq_len=64,
    rope_theta=500.0, norm_eps=1e-5,
)  # fmt: skip


def sentencepiece_model(path: Path) -> Path:
    """A 600-piece BPE model with the paper's options (curation.tokens.tokenizer's trainer)."""
    texts = [d["text"] for d in documents(300)]
    sentences, _ = training_sentences(texts, max_bytes=4192)
    config = TokenizerConfig(vocab_size=SMALL.vocab_size, character_coverage=0.995)
    path.write_bytes(train_model(sentences, config))
    return path


def random_model(seed: int = 0) -> Llama:
    """Every weight random, norm gains included (ones would hide swapped or dropped norms), and
    the q/k/v and gate/up projections at 10x the init scale: near-uniform attention and a
    near-zero MLP branch would hide rotary and gate/up mistakes."""
    torch.manual_seed(seed)
    model = Llama(SMALL).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(1.0, 0.3)
            elif name.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight")):
                param.mul_(10)
    return model


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory) -> Path:
    return sentencepiece_model(tmp_path_factory.mktemp("sp") / "tokenizer.model")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer_model) -> tuple[Llama, Path]:
    model = random_model()
    out = export_hf(model, tokenizer_model, tmp_path_factory.mktemp("hf") / "llama", torch.float32)
    return model, out


def tokens(batch: int = 3, length: int = 40) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, SMALL.vocab_size, (batch, length), generator=generator)


def max_logit_difference(model: Llama, hf_dir: Path) -> float:
    hf = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        ours, theirs = model(tokens()), hf.eval()(tokens()).logits
    return (ours - theirs).abs().max().item()


def test_transformers_computes_our_logits(exported) -> None:
    model, out = exported
    assert max_logit_difference(model, out) < 1e-4


def meta_rotary_layout(state: dict) -> None:
    """q/k rows permuted to Meta's interleaved rotary layout (pairs 2i, 2i+1), as a converter
    that assumed Meta's layout (or skipped HF's permutation) would leave them."""
    heads, head_dim = SMALL.n_heads, SMALL.head_dim
    for name, w in state.items():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            state[name] = w.view(heads, 2, head_dim // 2, -1).transpose(1, 2).reshape(w.shape)


def swapped_gate_and_up(state: dict) -> None:
    a, b = "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"
    state[a], state[b] = state[b], state[a]


def swapped_norms(state: dict) -> None:
    prefix = "model.layers.1."
    a, b = prefix + "input_layernorm.weight", prefix + "post_attention_layernorm.weight"
    state[a], state[b] = state[b], state[a]


@pytest.mark.parametrize("sabotage", [meta_rotary_layout, swapped_gate_and_up, swapped_norms])
def test_logits_test_catches_a_wrong_conversion(exported, tmp_path, sabotage) -> None:
    """The 1e-4 tolerance is meaningful: each plausible converter bug moves logits far more."""
    _, out = exported
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    state = load_file(broken / "model.safetensors")
    sabotage(state)
    save_file({k: v.contiguous() for k, v in state.items()}, broken / "model.safetensors")
    assert max_logit_difference(random_model(), broken) > 1e-2


def test_config_json_describes_the_shape(exported) -> None:
    model, out = exported
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["num_key_value_heads"] == config["num_attention_heads"] == SMALL.n_heads
    assert config["intermediate_size"] == SMALL.ffn_hidden
    assert config["tie_word_embeddings"] is False
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, None)
    assert config["torch_dtype"] == "float32"
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (1, 2)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.model", "tokenizer_config.json",
    ]  # fmt: skip
    assert not list(out.parent.glob(".*")), "staging or old directories left behind"


def assert_same_weights(a: Llama, b: Llama) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, tensor in sa.items():
        assert tensor.dtype == sb[name].dtype and torch.equal(tensor, sb[name]), name


def test_export_import_round_trip_is_bit_exact(exported) -> None:
    model, out = exported
    imported, config = import_hf(out)
    assert_same_weights(model, imported)
    assert dataclasses.replace(config, multiple_of=SMALL.multiple_of) == SMALL
    assert_same_weights(model, from_hf_state_dict(SMALL, to_hf_state_dict(model)))


def test_bf16_export_round_trips_the_bf16_weights(tokenizer_model, tmp_path) -> None:
    model = random_model()
    out = export_hf(model, tokenizer_model, tmp_path / "bf16")  # bf16 is the default
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    imported, _ = import_hf(out)
    assert_same_weights(model.to(torch.bfloat16), imported)


def test_export_replaces_a_previous_one(tokenizer_model, tmp_path) -> None:
    export_hf(random_model(seed=1), tokenizer_model, tmp_path / "out", torch.float32)
    export_hf(random_model(seed=2), tokenizer_model, tmp_path / "out", torch.float32)
    assert_same_weights(random_model(seed=2), import_hf(tmp_path / "out")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_import_reads_pickled_and_sharded_checkpoints(exported, tmp_path) -> None:
    model, out = exported
    state = load_file(out / "model.safetensors")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(out / "config.json", pickled)
    torch.save(state, pickled / "pytorch_model.bin")
    assert_same_weights(model, import_hf(pickled)[0])

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(out / "config.json", sharded)
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        save_file({k: state[k] for k in part}, sharded / f"model-{i}.safetensors")
        weight_map.update(dict.fromkeys(part, f"model-{i}.safetensors"))
    index = {"weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_same_weights(model, import_hf(sharded)[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_key_value_heads": 2}, "grouped-query attention"),
        ({"tie_word_embeddings": True}, "tied"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rotary scaling"),
        ({"model_type": "mistral"}, "model_type"),
        ({"attention_bias": True}, "biases"),
    ],
)
def test_import_refuses_what_llama_1_lacks(exported, tmp_path, change, message) -> None:
    _, out = exported
    other = tmp_path / "other"
    shutil.copytree(out, other)
    config = {**json.loads((out / "config.json").read_text()), **change}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedCheckpoint, match=message):
        import_hf(other)


def test_import_refuses_missing_and_unexpected_weights(exported) -> None:
    model, _ = exported
    state = dict(to_hf_state_dict(model))
    del state["lm_head.weight"]  # a tied checkpoint without its config flag
    with pytest.raises(UnsupportedCheckpoint, match="missing weight 'lm_head.weight'"):
        from_hf_state_dict(SMALL, state)
    state = {**to_hf_state_dict(model), "model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}
    with pytest.raises(UnsupportedCheckpoint, match="unexpected weights"):
        from_hf_state_dict(SMALL, state)


TEXTS = [
    "All human beings are born free and equal in dignity and rights.",
    PARAGRAPHS["fr"],
    PARAGRAPHS["ru"] + "\n\n" + PARAGRAPHS["zh"],
    CODE,
    "Numbers 1234567 and 3.14159, tabs\tand  double  spaces, trailing space ",
    "Bytes for unseen characters: ☃ 😀 Ωμέγα",
    "line one\nline two\n\n\nline five",
]


@pytest.mark.parametrize("loader", [AutoTokenizer, LlamaTokenizer])
def test_exported_tokenizer_encodes_like_sentencepiece(exported, tokenizer_model, loader) -> None:
    """Same ids with <s> prepended and no </s>. Texts starting with whitespace are left out: see
    the tokenizer caveat in model/hf.py."""
    _, out = exported
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    hf = loader.from_pretrained(out)
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id) == (1, 2, 0)
    for text in TEXTS:
        ids = hf(text)["input_ids"]
        assert ids == [sp.bos_id(), *sp.encode(text)], text
        assert hf.decode(ids, skip_special_tokens=True) == sp.decode(ids[1:])
