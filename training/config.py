"""What a training run is told: one flat dataclass, stored as JSON next to the run.

Flat on purpose: a launcher (local, Slurm, Kubernetes) writes it as one JSON file, Dagster
shows it as run config, and a checkpoint stores it, all without nesting rules. Batch sizes are
in tokens, as in the paper (4M-token batches), and the trainer derives gradient accumulation
from the world size it finds, so the same config trains the same way on 8 or 512 GPUs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# Peak learning rates: the paper's Table 2 for its shapes; for the small shapes, rates that
# train them stably in a few hundred steps (small models tolerate, and need, larger rates).
PEAK_LR = {
    "tiny": 1e-3,
    "small": 6e-4,
    "1.36B": 3e-4,
    "7B": 3e-4,
    "13B": 3e-4,
    "33B": 1.5e-4,
    "65B": 1.5e-4,
}
AC_MODES = ("off", "selective", "full")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Zero means "derive it" where noted."""

    data_dir: str = ""  # a tokenized_shards output: train/, validation/, _manifest.json
    output_dir: str = ""  # checkpoints/, metrics.jsonl, tensorboard/, result.json
    model: str = "tiny"  # a LlamaConfig preset name
    vocab_size: int = 0  # 0: the shards manifest's tokenizer vocabulary
    seq_len: int = 256
    micro_batch_size: int = 8  # sequences per rank per forward/backward
    global_batch_tokens: int = 0  # per optimizer step, all ranks; 0: one micro-batch per rank
    max_steps: int = 1000  # optimizer steps; the cosine reaches its floor here
    lr: float = 0.0  # peak; 0: PEAK_LR of the preset
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    activation_checkpointing: str = "off"  # off | selective | full
    compile: bool = False
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    checkpoint_interval: int = 100  # steps; a checkpoint is also written at the end and on SIGTERM
    keep_checkpoints: int = 3
    seed: int = 0  # weights and data order
    log_interval: int = 10
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    loader_workers: int = 0  # DataLoader worker processes per rank
    prepend_bos: bool = False  # start every training sequence with <s> (see training/data.py)

    def __post_init__(self) -> None:
        if self.activation_checkpointing not in AC_MODES:
            raise ValueError(f"activation_checkpointing must be one of {AC_MODES}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}")
        if self.lr == 0 and self.model not in PEAK_LR:
            raise ValueError(f"no default learning rate for preset {self.model!r}: set lr")
        positive = ("seq_len", "micro_batch_size", "max_steps", "checkpoint_interval")
        positive += ("keep_checkpoints", "log_interval", "max_bad_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("vocab_size", "global_batch_tokens", "warmup_steps", "loader_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def peak_lr(self) -> float:
        return self.lr or PEAK_LR[self.model]

    def micro_batch_tokens(self, world_size: int) -> int:
        """Tokens of one micro-batch step of the whole job."""
        return self.micro_batch_size * self.seq_len * world_size

    def grad_accum(self, world_size: int) -> int:
        """Micro-batches per rank per optimizer step, so the job consumes `global_batch_tokens`."""
        per_micro = self.micro_batch_tokens(world_size)
        if self.global_batch_tokens == 0:
            return 1
        if self.global_batch_tokens % per_micro:
            raise ValueError(
                f"global_batch_tokens {self.global_batch_tokens} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size} x seq_len {self.seq_len} x "
                f"world_size {world_size} = {per_micro}; change one of them"
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


PAPER_BATCH_TOKENS = 4 * 1024 * 1024  # "4M tokens": 2048 sequences of 2048
PAPER_TOKENS = {"7B": 1_000_000_000_000, "13B": 1_000_000_000_000}
PAPER_TOKENS |= {"33B": 1_400_000_000_000, "65B": 1_400_000_000_000}
PAPER_MICRO_BATCH = {"7B": 2, "13B": 1, "33B": 1, "65B": 1}  # fits 80 GB with selective AC


def paper(model: str, data_dir: str, output_dir: str, **overrides) -> TrainConfig:
    """The paper's run for a Table 2 shape: 2048-token context, 4M-token batches, 2000 warmup
    steps, cosine to 10% over 1T (7B, 13B) or 1.4T (33B, 65B) tokens, selective activation
    checkpointing, compiled blocks. The world size must divide 2048 / micro_batch_size."""
    if model not in PAPER_TOKENS:
        raise KeyError(f"no paper run for {model!r}; choose from {sorted(PAPER_TOKENS)}")
    base = TrainConfig(
        data_dir=data_dir,
        output_dir=output_dir,
        model=model,
        seq_len=2048,
        micro_batch_size=PAPER_MICRO_BATCH[model],
        global_batch_tokens=PAPER_BATCH_TOKENS,
        max_steps=PAPER_TOKENS[model] // PAPER_BATCH_TOKENS,
        warmup_steps=2000,
        activation_checkpointing="selective",
        compile=True,
        checkpoint_interval=1000,
        log_interval=10,
        loader_workers=2,
    )
    return base.with_overrides(**overrides)
