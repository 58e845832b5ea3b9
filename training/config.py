"""What a training run is told: one flat dataclass, stored as JSON next to the run.

Flat on purpose: a launcher (local, Slurm, Kubernetes) writes it as one JSON file, Dagster
shows it as run config, and a checkpoint stores it, all without nesting rules. Batch sizes are
in tokens, as in the paper (4M-token batches), and the trainer derives gradient accumulation
from the data-parallel ranks it finds, so the same config trains the same way on 8 or 512 GPUs.

The defaults are the paper's 7B run (section 2.3, Table 2): 2048-token context, batches of
4,194,304 tokens (2048 sequences of 2048), AdamW with beta1 0.9, beta2 0.95, weight decay 0.1
and gradient clipping 1.0, 2000 warmup steps, cosine decay to 10% of the peak rate; plus
section 2.4's efficiency: selective activation checkpointing, compiled blocks. Three fields
depend on the model shape and are derived from its `RECIPES` row when 0 (`resolve`): the peak
learning rate, the step count (the row's training tokens / `global_batch_tokens`) and the
micro-batch size. So `model: 33B` alone is the paper's 33B run: 1.5e-4 over 1.4T tokens.
A small run states its own values: pipelines/sample/train.yaml is the demo's. Held-out
curves during training (`eval_*`) are on by default, every 500 steps: the paper follows its
models during training (Figures 1 and 2) without saying how often it measured them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

PAPER_BATCH_TOKENS = 4 * 1024 * 1024  # "4M tokens": 2048 sequences of 2048
AC_MODES = ("off", "selective", "full")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Recipe:
    """What a run of one model shape derives when its config leaves the field at 0."""

    lr: float  # peak learning rate
    tokens: int  # training tokens; the cosine reaches its floor after them
    micro_batch_size: int  # sequences of 2048 per GPU per forward/backward (80 GB, selective AC)


# One row per model preset (model/config.py). 7B to 65B: the paper's Table 2 (rate, tokens);
# their micro-batches are estimates of what fits an 80 GB GPU under FSDP with selective
# activation checkpointing. The small shapes are project choices: rates that train them stably
# (small models tolerate, and need, larger rates), 20 tokens per parameter at a 32000-piece
# vocabulary (Hoffmann et al. 2022's compute-optimal ratio), and micro-batches for 80 GB (the
# 1.36B's 8 measured at 36.5 GiB on one GPU: bench/results/train_gpu_h200.txt).
RECIPES: dict[str, Recipe] = {
    "tiny": Recipe(lr=1e-3, tokens=180_000_000, micro_batch_size=32),
    "small": Recipe(lr=6e-4, tokens=700_000_000, micro_batch_size=16),
    "1.36B": Recipe(lr=3e-4, tokens=27_300_000_000, micro_batch_size=8),
    "7B": Recipe(lr=3e-4, tokens=1_000_000_000_000, micro_batch_size=2),
    "13B": Recipe(lr=3e-4, tokens=1_000_000_000_000, micro_batch_size=1),
    "33B": Recipe(lr=1.5e-4, tokens=1_400_000_000_000, micro_batch_size=1),
    "65B": Recipe(lr=1.5e-4, tokens=1_400_000_000_000, micro_batch_size=1),
}

_LOWER_BOUNDS = {
    **dict.fromkeys(("seq_len", "checkpoint_interval", "keep_checkpoints"), 1),
    **dict.fromkeys(("log_interval", "max_bad_steps"), 1),
    **dict.fromkeys(("tensor_parallel", "data_parallel_replicate"), 1),
    **dict.fromkeys(("vocab_size", "global_batch_tokens", "warmup_steps", "loader_workers"), 0),
    **dict.fromkeys(("micro_batch_size", "max_steps", "lr"), 0),  # 0: derived
    "eval_every": 0,  # 0: no held-out evaluation
    "eval_tokens": 1,
    "eval_suite_limit": 0,  # 0: every item
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run; the defaults are the paper's 7B run. Zero means "derive it" where
    noted; `resolve` fills those in."""

    data_dir: str = ""  # a tokenized_shards output: train/, validation/, _manifest.json
    output_dir: str = ""  # checkpoints/, metrics.jsonl, tensorboard/, result.json
    model: str = "7B"  # a LlamaConfig preset name, and its RECIPES row
    vocab_size: int = 0  # 0: the shards manifest's tokenizer vocabulary
    seq_len: int = 2048
    micro_batch_size: int = 0  # sequences per rank per forward/backward; 0: the preset's
    global_batch_tokens: int = PAPER_BATCH_TOKENS  # per step, all ranks; 0: one micro-batch/rank
    max_steps: int = 0  # optimizer steps; 0: the preset's tokens / global_batch_tokens
    lr: float = 0.0  # peak; 0: the preset's
    warmup_steps: int = 2000
    min_lr_ratio: float = 0.1  # the cosine's floor, as a fraction of the peak
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    activation_checkpointing: str = "selective"  # off | selective | full
    compile: bool = True  # torch.compile each transformer block
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    checkpoint_interval: int = 1000  # steps; a checkpoint is also written at the end and on SIGTERM
    keep_checkpoints: int = 3
    seed: int = 0  # weights and data order
    log_interval: int = 10
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    loader_workers: int = 2  # DataLoader worker processes per rank
    tensor_parallel: int = 1  # TP + sequence parallel degree, within a node (training/mesh.py)
    data_parallel_replicate: int = 1  # HSDP replicas; 1: plain FSDP over all data ranks
    float8: bool = False  # torchao float8 linears (H100-class GPUs); the default is bf16
    # Held-out curves (docs/TRAINING.md): loss on the validation split during training.
    eval_every: int = 500  # steps between evaluations, plus one at the last step; 0: none
    eval_tokens: int = 1_048_576  # targets scored per evaluation, split evenly among corpora
    eval_mixture: str = ""  # the mixture the shards were made from: per-corpus curves; "": total
    eval_suites: str = ""  # the paper's suites at every checkpoint, e.g. "common_sense"; "": none
    eval_benchmarks: str = ""  # their local copies (<dataset>/<split>.jsonl); "": the Hub
    eval_suite_limit: int = 100  # items per suite task (0: all)

    def __post_init__(self) -> None:
        if self.model not in RECIPES:
            raise ValueError(f"unknown model preset {self.model!r}; choose from {list(RECIPES)}")
        if self.activation_checkpointing not in AC_MODES:
            raise ValueError(f"activation_checkpointing must be one of {AC_MODES}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}")
        for name, low in _LOWER_BOUNDS.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.float8 and self.tensor_parallel > 1:
            raise ValueError("float8 runs with FSDP/HSDP only: set tensor_parallel to 1")
        if self.max_steps == 0 and self.global_batch_tokens == 0:
            raise ValueError("max_steps 0 derives the steps from global_batch_tokens: set one")
        if self.warmup_steps > self.max_steps > 0:
            raise ValueError(
                f"warmup_steps {self.warmup_steps} exceeds max_steps {self.max_steps}: the rate "
                "would never reach its peak; set warmup_steps for this run's length"
            )

    def resolve(self) -> TrainConfig:
        """This config with the derived fields (those at 0) taken from the preset's recipe:
        what the trainer runs and records."""
        recipe = RECIPES[self.model]
        steps = self.max_steps or -(-recipe.tokens // self.global_batch_tokens)  # at least all
        return dataclasses.replace(
            self,
            lr=self.lr or recipe.lr,
            max_steps=steps,
            micro_batch_size=self.micro_batch_size or recipe.micro_batch_size,
        )

    def micro_batch_tokens(self, dp_ranks: int) -> int:
        """Tokens of one micro-batch step of the whole job, whose `dp_ranks` data-parallel
        ranks (processes / tensor_parallel) each read a micro-batch."""
        return self.resolve().micro_batch_size * self.seq_len * dp_ranks

    def grad_accum(self, dp_ranks: int) -> int:
        """Micro-batches per rank per optimizer step, so the job consumes `global_batch_tokens`."""
        per_micro = self.micro_batch_tokens(dp_ranks)
        if self.global_batch_tokens == 0:
            return 1
        if self.global_batch_tokens % per_micro:
            raise ValueError(
                f"global_batch_tokens {self.global_batch_tokens} is not a multiple of "
                f"micro_batch_size x seq_len {self.seq_len} x data-parallel ranks {dp_ranks} = "
                f"{per_micro}; change one of them"
            )
        return self.global_batch_tokens // per_micro

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Parse; keys that are not fields are an error (a typo would otherwise be ignored)."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("a training config is a JSON object")
        return cls()._replace(values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_json(Path(path).read_text())

    def with_overrides(self, **overrides) -> TrainConfig:
        return self._replace(overrides)

    def _replace(self, values: dict) -> TrainConfig:
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(fields)}")
        for name, value in values.items():
            expected = type(getattr(self, name))
            # JSON has one number type: accept an integral value for a float field.
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not ok or (expected is not bool and isinstance(value, bool)):
                raise ValueError(f"{name} must be {expected.__name__}, got {value!r}")
        return dataclasses.replace(self, **values)
