"""How a run's ranks are laid out: data parallelism outside, tensor parallelism inside.

The mesh has three dimensions, outermost first:

    dp_replicate x dp_shard x tp

- `tp`: tensor and sequence parallelism (Megatron-style, `training.parallelize.apply_tp`). It is
  the innermost dimension, so a TP group is `tp` consecutive ranks: on GPUs, the GPUs of one
  node, where its per-layer collectives run over NVLink.
- `dp_shard`: FSDP2 shards parameters, gradients and optimizer state across these ranks.
- `dp_replicate`: HSDP, the option for many nodes: `dp_replicate` copies of the FSDP-sharded
  model, whose gradients are all-reduced across copies. Parameter all-gathers then stay within
  a group of `dp_shard x tp` ranks (a few nodes) instead of spanning the whole job.

Data: the `dp_replicate x dp_shard` data-parallel ranks read different batches; the `tp` ranks
of one data-parallel rank read the same one. Batch sizes and gradient accumulation therefore
count data-parallel ranks, not processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # launchers use the shape without importing torch
    from torch.distributed.device_mesh import DeviceMesh

    from model import LlamaConfig

DIMS = ("dp_replicate", "dp_shard", "tp")


@dataclass(frozen=True)
class MeshShape:
    dp_replicate: int
    dp_shard: int
    tp: int

    @classmethod
    def of(cls, world_size: int, tp: int = 1, dp_replicate: int = 1) -> MeshShape:
        """The mesh of `world_size` processes with the given TP and HSDP degrees; the rest is
        FSDP."""
        if tp < 1 or dp_replicate < 1:
            raise ValueError(f"tensor_parallel {tp} and data_parallel_replicate {dp_replicate}")
        if world_size % (tp * dp_replicate):
            raise ValueError(
                f"{world_size} processes do not split into data_parallel_replicate "
                f"{dp_replicate} x tensor_parallel {tp} x a whole number of FSDP shards"
            )
        return cls(dp_replicate, world_size // (tp * dp_replicate), tp)

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    @property
    def dp(self) -> int:
        """Data-parallel ranks: how many different batches one micro-step reads."""
        return self.dp_replicate * self.dp_shard

    def dp_rank(self, rank: int) -> int:
        """Which data-parallel rank (which batch) process `rank` belongs to."""
        return rank // self.tp

    def check(self, config: LlamaConfig, seq_len: int) -> None:
        """Refuse shapes tensor parallelism cannot split evenly, naming the one that fails: heads
        and FFN columns are cut among the `tp` ranks, and so is the sequence (between layers)."""
        sizes = {
            "n_heads": config.n_heads,
            "ffn_hidden": config.ffn_hidden,
            "vocab_size": config.vocab_size,
            "seq_len": seq_len,
        }
        for name, size in sizes.items():
            if size % self.tp:
                raise ValueError(f"{name} {size} is not divisible by tensor_parallel {self.tp}")

    def build(self, device_type: str) -> DeviceMesh:
        from torch.distributed.device_mesh import init_device_mesh

        return init_device_mesh(
            device_type, (self.dp_replicate, self.dp_shard, self.tp), mesh_dim_names=DIMS
        )

    @classmethod
    def of_job(cls, nodes: int, per_node: int, tp: int = 1, dp_replicate: int = 1) -> MeshShape:
        """The mesh of a job of `nodes` x `per_node` processes, checked when the job is rendered
        rather than after it was queued: a TP group must lie within one node, since its
        collectives run inside every layer and need the node's NVLink, not the network."""
        if per_node % tp:
            raise ValueError(
                f"tensor_parallel {tp} must divide the {per_node} processes of a node: a "
                "tensor-parallel group stays within one node"
            )
        return cls.of(nodes * per_node, tp, dp_replicate)

    def __str__(self) -> str:
        return f"dp_replicate {self.dp_replicate} x dp_shard {self.dp_shard} x tp {self.tp}"
