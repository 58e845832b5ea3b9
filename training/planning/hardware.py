"""The accelerators a plan can name: memory, dense bf16 peak and nominal board power.

One table, keyed by the names the CLI takes (`--gpu a100-80gb`), so that a memory plan, a
compute plan and a finished run's energy (when NVML is not there to measure it) use the same
numbers. Memory is what the device reports (`nvidia-smi`'s MiB), not the marketing figure; the
nominal power is the board's rated power, which is the paper's method for A100s (400 W, Table
15) and an upper bound of what a busy GPU draws.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Accelerator:
    """One device kind. `match` are substrings that must all occur in the CUDA device name
    (`torch.cuda.get_device_name`) for a device to be this kind."""

    key: str
    description: str
    memory_bytes: int
    peak_bf16_flops: float | None  # dense tensor-core peak; None where MFU means nothing
    nominal_power_w: float  # rated board power, the paper's per-GPU figure for A100s
    match: tuple[str, ...] = ()

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


ACCELERATORS: dict[str, Accelerator] = {
    a.key: a
    for a in (
        Accelerator("a100-40gb", "NVIDIA A100 40GB SXM", 40_960 * MIB, 312e12, 400.0, ("A100",)),
        Accelerator(
            "a100-80gb", "NVIDIA A100 80GB SXM", 81_920 * MIB, 312e12, 400.0, ("A100", "80GB")
        ),
        Accelerator("h100-80gb", "NVIDIA H100 80GB SXM", 81_559 * MIB, 989e12, 700.0, ("H100",)),
        Accelerator("h200", "NVIDIA H200 141GB SXM", 143_771 * MIB, 989e12, 700.0, ("H200",)),
        # Not a planning target: the power a CPU training process is assumed to draw when a run
        # on CPUs reports its energy (a share of a server socket; an assumption, not measured).
        Accelerator("cpu", "CPU (one training process)", 0, None, 100.0),
    )
}


def accelerator(key: str) -> Accelerator:
    """The table's row for `key` (case-insensitive), or a ValueError naming the choices."""
    found = ACCELERATORS.get(key.lower())
    if found is None:
        raise ValueError(f"unknown GPU {key!r}; choose from {', '.join(ACCELERATORS)}")
    return found


def accelerator_for_device_name(name: str) -> Accelerator | None:
    """The row a CUDA device name describes, the most specific match first (an "A100-SXM4-80GB"
    is an a100-80gb, not an a100-40gb); None for a device the table does not know."""
    rows = [a for a in ACCELERATORS.values() if a.match and all(m in name for m in a.match)]
    return max(rows, key=lambda a: len(a.match), default=None)
