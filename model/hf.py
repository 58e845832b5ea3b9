"""Conversion to and from Hugging Face transformers' LLaMA layout (`LlamaForCausalLM`).

Our checkpoints and HF's differ only in names. The rotary layout is already HF's half-split one
(see `model.llama`), so no row permutation is applied and the conversion is a renaming both
ways: `from_hf_state_dict(to_hf_state_dict(m))` reproduces `m` bit for bit.

An exported directory is what `LlamaForCausalLM.from_pretrained` and `AutoTokenizer` read:

    config.json              architecture and shape (HF's key names), special token ids, dtype
    generation_config.json   bos/eos/pad ids
    model.safetensors        the weights (safetensors: loading it runs no pickle code)
    tokenizer.model          our SentencePiece model, copied
    tokenizer_config.json    `LlamaTokenizer`, <s> added (the training framing), </s> not
    special_tokens_map.json  the special pieces

Tokenizer caveat: transformers 5's `LlamaTokenizer` (a `tokenizers` Metaspace pipeline) does not
add SentencePiece's dummy-prefix space to a text that already starts with a space, so such
texts (" x", "  code") get different ids than SentencePiece gives; every other text encodes
identically. transformers 4's slow `LlamaTokenizer` (`legacy` true) is SentencePiece itself.

Only LLaMA-1-shaped models are imported: one key/value head per query head (no GQA), untied
embeddings, plain rotary (no scaling), no biases, SiLU. Anything else is refused by name rather
than loaded wrong.

torch, stdlib and safetensors only at import time; sentencepiece is imported where a tokenizer
is read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from model.config import LlamaConfig
from model.llama import Llama

WEIGHTS_NAME = "model.safetensors"
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}

# Per-layer names: ours -> HF's.
_LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


class UnsupportedCheckpoint(ValueError):
    """An HF checkpoint whose architecture our `Llama` cannot represent (GQA, tied, ...)."""


@dataclass(frozen=True)
class SpecialTokens:
    """Ids and pieces of the tokenizer's special tokens; `pad_id` None: the model has no pad
    piece (ours: SentencePiece `pad_id=-1`)."""

    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 0
    pad_id: int | None = None
    bos: str = "<s>"
    eos: str = "</s>"
    unk: str = "<unk>"

    @classmethod
    def from_sentencepiece(cls, model_path: str | os.PathLike) -> SpecialTokens:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(model_path))
        pad = sp.pad_id()
        return cls(
            bos_id=sp.bos_id(),
            eos_id=sp.eos_id(),
            unk_id=sp.unk_id(),
            pad_id=pad if pad >= 0 else None,
            bos=sp.id_to_piece(sp.bos_id()),
            eos=sp.id_to_piece(sp.eos_id()),
            unk=sp.id_to_piece(sp.unk_id()),
        )


# ---------------------------------------------------------------------------------------------
# State dicts


def to_hf_state_dict(model: Llama) -> dict[str, Tensor]:
    """HF `LlamaForCausalLM` names -> tensors: our own tensors (no copy), so clone them before
    mutating."""
    out: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        if name in _TOP_NAMES:
            out[_TOP_NAMES[name]] = tensor
            continue
        _, index, rest = name.split(".", 2)  # "layers.<i>.<rest>"
        out[f"model.layers.{index}.{_LAYER_NAMES[rest]}"] = tensor
    return out


def from_hf_state_dict(config: LlamaConfig, state: dict[str, Tensor]) -> Llama:
    """Our `Llama` holding the tensors of an HF state dict (dtype and device kept). Missing or
    unexpected weights raise; HF's recomputed `rotary_emb.inv_freq` buffers are ignored."""
    ours: dict[str, Tensor] = {}
    used = set()

    def take(hf_name: str) -> Tensor:
        if hf_name not in state:
            raise UnsupportedCheckpoint(f"missing weight {hf_name!r}")
        used.add(hf_name)
        return state[hf_name]

    for name, hf_name in _TOP_NAMES.items():
        ours[name] = take(hf_name)
    for i in range(config.n_layers):
        for name, hf_name in _LAYER_NAMES.items():
            ours[f"layers.{i}.{name}"] = take(f"model.layers.{i}.{hf_name}")
    extra = sorted(k for k in state.keys() - used if not k.endswith("rotary_emb.inv_freq"))
    if extra:
        raise UnsupportedCheckpoint(f"unexpected weights: {extra[:5]}{'...' if extra[5:] else ''}")
    with torch.device("meta"):
        model = Llama(config)
    model.load_state_dict(ours, strict=True, assign=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Configs


def hf_config(
    config: LlamaConfig,
    special: SpecialTokens = SpecialTokens(),  # noqa: B008 (frozen: safe default)
    dtype: torch.dtype = torch.bfloat16,
) -> dict:
    """`config.json` of `LlamaForCausalLM` for this shape. rope theta is written both as
    transformers 4's `rope_theta` and transformers 5's `rope_parameters`; the dtype as both
    `torch_dtype` (4) and `dtype` (5)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "max_position_embeddings": config.max_seq_len,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": special.bos_id,
        "eos_token_id": special.eos_id,
        "pad_token_id": special.pad_id,
        "torch_dtype": DTYPE_NAMES[dtype],
        "dtype": DTYPE_NAMES[dtype],
    }


def config_from_hf(hf: dict) -> LlamaConfig:
    """Our shape from an HF `config.json`; `UnsupportedCheckpoint` for what `Llama` lacks."""
    if hf.get("model_type") != "llama":
        raise UnsupportedCheckpoint(f"model_type {hf.get('model_type')!r} is not 'llama'")
    heads = hf["num_attention_heads"]
    kv_heads = hf.get("num_key_value_heads") or heads
    if kv_heads != heads:
        raise UnsupportedCheckpoint(
            f"grouped-query attention ({kv_heads} key/value heads for {heads} query heads) is "
            "not supported: LLaMA-1 has one key/value head per query head"
        )
    if hf.get("tie_word_embeddings", False):
        raise UnsupportedCheckpoint("tied input/output embeddings: LLaMA's output is untied")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise UnsupportedCheckpoint("biases in attention or MLP: LLaMA has none")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedCheckpoint(f"activation {hf['hidden_act']!r} is not SwiGLU's silu")
    rope = hf.get("rope_parameters") or {}
    if hf.get("rope_scaling") or rope.get("rope_type", "default") != "default":
        raise UnsupportedCheckpoint("rotary scaling (rope_scaling / rope_type) is not supported")
    dim = hf["hidden_size"]
    if hf.get("head_dim", dim // heads) != dim // heads:
        raise UnsupportedCheckpoint(f"head_dim {hf['head_dim']} != hidden_size / heads")
    return LlamaConfig(
        dim=dim,
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        vocab_size=hf["vocab_size"],
        ffn_hidden=hf["intermediate_size"],
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        max_seq_len=hf.get("max_position_embeddings", 2048),
    )


def tokenizer_files(special: SpecialTokens, max_seq_len: int) -> dict[str, dict]:
    """`tokenizer_config.json` and `special_tokens_map.json` for `LlamaTokenizer` over our
    `tokenizer.model`: <s> prepended, as every pre-training document starts with it
    (curation/tokens/shards.py); </s> not, as a prompt is a document not yet ended; no pad piece.
    `legacy` true keeps transformers 4's slow tokenizer byte-for-byte SentencePiece."""
    pieces = {"bos_token": special.bos, "eos_token": special.eos, "unk_token": special.unk}
    return {
        "tokenizer_config.json": {
            "tokenizer_class": "LlamaTokenizer",
            **pieces,
            "pad_token": None,
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": True,
            "clean_up_tokenization_spaces": False,
            "model_max_length": max_seq_len,
            "padding_side": "left",
        },
        "special_tokens_map.json": pieces,
    }


# ---------------------------------------------------------------------------------------------
# Directories


def export_hf(
    model: Llama,
    tokenizer_model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write an HF LLaMA directory (layout in the module docstring) and return its path.

    Written into a hidden staging sibling and renamed into place: a crash leaves the previous
    export (or none), never a partial one.
    """
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype {dtype} is not one of {list(DTYPE_NAMES.values())}")
    out = Path(out_dir).resolve()
    special = SpecialTokens.from_sentencepiece(tokenizer_model_path)
    if model.config.vocab_size < special.eos_id + 1:
        raise ValueError(f"model vocabulary {model.config.vocab_size} lacks the special ids")
    staging, old = out.with_name(f".{out.name}.staging"), out.with_name(f".{out.name}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    # Copies in the export dtype: safetensors refuses tensors that share storage.
    tensors = {
        k: v.to(device="cpu", dtype=dtype, copy=True).contiguous()
        for k, v in to_hf_state_dict(model).items()
    }
    save_file(tensors, staging / WEIGHTS_NAME, metadata={"format": "pt"})
    ids = {"bos_token_id": special.bos_id, "eos_token_id": special.eos_id}
    files = {
        "config.json": hf_config(model.config, special, dtype),
        "generation_config.json": {**ids, "pad_token_id": special.pad_id},
        **tokenizer_files(special, model.config.max_seq_len),
    }
    for name, body in files.items():
        (staging / name).write_text(json.dumps(body, indent=2) + "\n")
    shutil.copyfile(tokenizer_model_path, staging / "tokenizer.model")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def import_hf(
    directory: str | os.PathLike, dtype: torch.dtype | None = None
) -> tuple[Llama, LlamaConfig]:
    """Our `Llama` (eval mode, on the CPU) from an HF LLaMA-1-style directory: `config.json`
    plus `model.safetensors`, sharded safetensors (`model.safetensors.index.json`), or, only when
    no safetensors exist, `pytorch_model.bin` (sharded or not) read with `weights_only=True`.
    `dtype` None keeps the checkpoint's."""
    root = Path(directory)
    config = config_from_hf(json.loads((root / "config.json").read_text()))
    state = read_weights(root)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    return from_hf_state_dict(config, state), config


def read_weights(root: Path) -> dict[str, Tensor]:
    """All tensors of an HF checkpoint directory, safetensors preferred over pickles."""
    for single, load in ((WEIGHTS_NAME, load_file), ("pytorch_model.bin", _load_pickle)):
        index = root / f"{single}.index.json"
        if (root / single).exists():
            return load(root / single)
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            if any(Path(shard).name != shard for shard in shards):
                raise UnsupportedCheckpoint(f"{index.name} names files outside {root}")
            return {k: v for shard in shards for k, v in load(root / shard).items()}
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or pytorch_model.bin (or index) in {root}")


def _load_pickle(path: Path) -> dict[str, Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
