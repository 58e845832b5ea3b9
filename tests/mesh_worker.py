"""The trainer, recording what the mesh tests compare: run under torchrun (or alone) as

    python tests/mesh_worker.py RUN.json RECORD.pt

It runs `training.train.Trainer` unchanged and, on every rank, gathers each parameter whole
before training starts and each gradient whole just before every optimizer step (after
clipping), so a run on any mesh can be compared with one process tensor by tensor. Rank 0
writes them with each parameter's layout (its DTensor placements) and the bytes of its own
parameter and optimizer shards, as plain data, read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.init import canonical_name  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.train import Trainer, init_runtime  # noqa: E402


def whole(tensor: Tensor) -> Tensor:
    """The full tensor of a DTensor (a collective: every rank calls it, in the same order)."""
    full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
    return full.detach().clone()


def _local(tensor: Tensor) -> Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def main(config_path: str, record_path: str) -> None:
    config = TrainConfig.load(config_path)
    runtime = init_runtime(config)
    trainer = Trainer(config, runtime, echo=lambda _: None)
    named = [(canonical_name(n), p) for n, p in trainer.model.named_parameters()]
    record = {"weights": {name: whole(p) for name, p in named}, "grads": []}
    record["layouts"] = {name: str(getattr(p, "placements", "whole")) for name, p in named}

    def gradients(*_: object) -> None:
        record["grads"].append({name: whole(p.grad) for name, p in named})

    trainer.optimizer.register_step_pre_hook(gradients)
    trainer.run()
    record["rank0_bytes"] = {
        "params": sum(_local(p).numel() * 4 for _, p in named),
        "optimizer": sum(
            _local(t).numel() * t.element_size()
            for state in trainer.optimizer.state.values()
            for key, t in state.items()
            if key != "step"
        ),
    }
    if runtime.rank == 0:
        torch.save(record, record_path)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
