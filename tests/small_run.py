"""The small training run the tests train: the tiny preset, on the CPU, for a few dozen steps.

`TrainConfig`'s defaults are the paper's 7B run (2048-token context, 4M-token batches, 2000
warmup steps, compiled blocks, selective activation checkpointing). A test that trains states
its small values once, here, and overrides only what it is about.
"""

from __future__ import annotations

import os

from training.config import TrainConfig

SMALL_RUN = {
    "model": "tiny",
    "device": "cpu",
    "seq_len": 64,
    "micro_batch_size": 8,
    "global_batch_tokens": 0,  # one micro-batch per rank per step
    "max_steps": 40,
    "warmup_steps": 4,
    "activation_checkpointing": "off",
    "compile": False,
    "loader_workers": 0,
    "checkpoint_interval": 40,
    "log_interval": 10,
    "eval_every": 0,  # held-out curves: tests/test_training_curves.py turns them on
}


def small_run(
    data_dir: str | os.PathLike, output_dir: str | os.PathLike, **overrides
) -> TrainConfig:
    """`SMALL_RUN` on `data_dir` into `output_dir`, with `overrides` (TrainConfig fields)."""
    paths = TrainConfig(data_dir=os.fspath(data_dir), output_dir=os.fspath(output_dir))
    return paths.with_overrides(**SMALL_RUN | overrides)
