"""AdamW and the learning-rate schedule of the paper (section 2.3).

AdamW with beta1 0.9, beta2 0.95, weight decay 0.1, gradient clipping 1.0 (the trainer clips),
2000 warmup steps, cosine decay to 10% of the peak rate. The numbers are `TrainConfig`'s
defaults (training/config.py), which the defaults here take, so the recipe is written once.
Adam's epsilon is not in the paper: 1e-8, PyTorch's default (`ADAM_EPS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from training.config import TrainConfig

ADAM_EPS = 1e-8


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices (every parameter with 2+ dimensions: projections, output and, as in
    Meta's and nanoGPT's recipes, the token embedding); not the vectors (RMSNorm weights), whose
    shrinking towards zero would only rescale activations."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    *,
    weight_decay: float = TrainConfig.weight_decay,
    betas: tuple[float, float] = (TrainConfig.adam_beta1, TrainConfig.adam_beta2),
    eps: float = ADAM_EPS,
) -> torch.optim.AdamW:
    """AdamW over `param_groups`. Fused (one kernel for all parameters) when they are on CUDA."""
    on_cuda = all(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=on_cuda or None
    )


@dataclass
class WarmupCosine:
    """Learning-rate multiplier at optimizer step `step` (0-based): linear warmup to 1 over
    `warmup_steps`, then cosine decay to `min_ratio` at `total_steps`, constant after."""

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.1

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = TrainConfig.warmup_steps,
    min_ratio: float = TrainConfig.min_lr_ratio,
) -> LambdaLR:
    """The schedule as a `LambdaLR` (its `state_dict` holds the step, so a resumed run continues
    where it stopped). Call `.step()` after each `optimizer.step()`. The paper's 7B: 1T tokens in
    4M-token batches is `total_steps=238_419`."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))
