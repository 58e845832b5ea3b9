"""Model shape as a dataclass, the paper's presets (Table 2), and the counts derived from a shape.

The counts are closed-form so that sizing a 65B run, or the MFU of a benchmark, needs no tensors.
`tests/test_model.py` checks them against a model built on the meta device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def swiglu_hidden(dim: int, multiple_of: int = 256) -> int:
    """SwiGLU width: 2/3 of the usual 4*dim (three matrices instead of two keep the FLOPs of a
    4*dim MLP), rounded up to `multiple_of` for matmul-friendly shapes. Integer arithmetic as in
    Meta's `model.py`: 4096 -> 11008, 2048 -> 5632."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * -(-hidden // multiple_of)


@dataclass
class LlamaConfig:
    """Shape of a LLaMA network. `ffn_hidden` is derived from `dim` unless given."""

    dim: int
    n_layers: int
    n_heads: int
    vocab_size: int = 32000
    multiple_of: int = 256
    ffn_hidden: int | None = None
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        if self.ffn_hidden is None:
            self.ffn_hidden = swiglu_hidden(self.dim, self.multiple_of)
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> LlamaConfig:
        """A named shape (see `PRESETS`), with fields replaced, e.g. `vocab_size` from the
        tokenizer: `LlamaConfig.preset("7B", vocab_size=sp.vocab_size())`."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        if {"dim", "multiple_of"} & overrides.keys():
            overrides.setdefault("ffn_hidden", None)  # re-derive for the new width
        return dataclasses.replace(PRESETS[name], **overrides)

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count. `include_embedding=False` drops the input embedding only (a lookup,
        no FLOPs); the output projection is a matmul and always counts."""
        d, f, v = self.dim, self.ffn_hidden, self.vocab_size
        per_layer = 4 * d * d + 3 * d * f + 2 * d  # wq wk wv wo, w1 w2 w3, two RMSNorm weights
        total = self.n_layers * per_layer + d + d * v  # + final norm + output projection
        return total + d * v if include_embedding else total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), the PaLM/DESIGN convention for MFU:
        6 * (params - input embedding) + 12 * layers * dim * seq (attention scores and values,
        counted as if not causal)."""
        seq = self.max_seq_len if seq_len is None else seq_len
        return 6 * self.num_params(include_embedding=False) + 12 * self.n_layers * self.dim * seq


PRESETS: dict[str, LlamaConfig] = {
    # Small shapes that train on a CPU in minutes (take the vocabulary from the sample tokenizer).
    "tiny": LlamaConfig(dim=128, n_layers=4, n_heads=4, multiple_of=32, max_seq_len=256),
    "small": LlamaConfig(dim=384, n_layers=6, n_heads=6, max_seq_len=1024),
    # The single-GPU benchmark shape (DESIGN section 6); ffn 5632 is what the rule gives for 2048.
    "1.36B": LlamaConfig(dim=2048, n_layers=24, n_heads=16, ffn_hidden=5632),
    # Paper Table 2 (6.7B, 13.0B, 32.5B, 65.2B parameters with the 32000-piece vocabulary).
    "7B": LlamaConfig(dim=4096, n_layers=32, n_heads=32),
    "13B": LlamaConfig(dim=5120, n_layers=40, n_heads=40),
    "33B": LlamaConfig(dim=6656, n_layers=60, n_heads=52),
    "65B": LlamaConfig(dim=8192, n_layers=80, n_heads=64),
}
