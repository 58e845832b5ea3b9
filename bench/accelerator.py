"""What the GPU benchmarks (train_gpu.py, generate.py, block_65b.py) share about the device:
its peak FLOPs for MFU, how to wait for its queued work, how to give its memory back. The
same code runs on a CPU for the scripts' --smoke mode, where both hooks do next to nothing.

Imports only torch (the GPU machine has no venv).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch

# Dense bf16 tensor-core peak, first matching substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),  # same compute as the H100 SXM, more and faster memory
    ("A100", 312e12),
]


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def peak_flops(name: str) -> float | None:
    """The table's peak for a device name; None when unknown (a CPU): no MFU then."""
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for all work queued on the device: what brackets a timed span on a GPU, so the
    span holds the kernels and not only their launches."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def free(device: torch.device) -> None:
    """Return the memory of dropped tensors to the device, so the next model built finds it
    and `max_memory_allocated` after a reset is that model's alone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def single_thread_for_smoke() -> None:
    """--smoke's CPU runs use one intra-op thread: tiny shapes gain nothing from more, and on a
    shared machine a thread pool waiting for a descheduled thread turns 20 ms calls into
    seconds (rounds spread by thousands of percent, the smoke taking a minute, not 20 s)."""
    torch.set_num_threads(1)
