"""Where training progress goes: `metrics.jsonl`, TensorBoard, the terminal and Dagster Pipes.

Only rank 0 writes. One record per log interval, the same fields in every sink:

    step, loss (mean over the interval's applied steps), lr, grad_norm (last step), tokens_per_s,
    mfu (null off GPU), tokens_seen, skipped_steps, epoch

MFU follows DESIGN section 6: flops/token (`LlamaConfig.flops_per_token`) x tokens/s over the
dense bf16 peak of the job's devices.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

# Dense bf16 tensor-core peak FLOP/s per device, by the first matching substring of the CUDA
# device name (more specific names first).
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),  # the H100 SXM's compute with more memory
    ("A100", 312e12),
]


def peak_flops(device: torch.device) -> float | None:
    """Peak of one device, or None where MFU is not meaningful (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def mfu(
    flops_per_token: int, tokens_per_s: float, peak: float | None, devices: int
) -> float | None:
    return None if peak is None else flops_per_token * tokens_per_s / (peak * devices)


def progress_line(record: dict, max_steps: int) -> str:
    """One terminal line, e.g. `step 40/100 | loss 3.4567 | lr 9.1e-04 | ...`."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    mfu_text = "-" if record["mfu"] is None else f"{100 * record['mfu']:.1f}%"
    return (
        f"step {record['step']}/{max_steps} | loss {num(record['loss'], '.4f')} | "
        f"lr {record['lr']:.2e} | grad norm {num(record['grad_norm'], '.3f')} | "
        f"{record['tokens_per_s']:,.0f} tok/s | mfu {mfu_text} | "
        f"tokens {record['tokens_seen']:,} | skipped {record['skipped_steps']}"
    )


class MetricsLogger:
    """Rank 0's sinks. On resume from step k, records after k (written by the run that was
    killed after its checkpoint) are dropped from metrics.jsonl and TensorBoard (`purge_step`),
    so each step appears once."""

    def __init__(
        self,
        output_dir: Path,
        max_steps: int,
        resume_step: int = 0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.path = output_dir / "metrics.jsonl"
        self.max_steps, self.echo = max_steps, echo
        _truncate_after(self.path, resume_step)
        self.file = open(self.path, "a")  # noqa: SIM115 (open for the whole run)
        self.tensorboard = _summary_writer(output_dir / "tensorboard", resume_step + 1, echo)

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self.tensorboard.add_scalar(f"train/{key}", value, record["step"])
        self.echo(progress_line(record, self.max_steps))

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _summary_writer(directory: Path, purge_step: int, echo: Callable[[str], None]):
    """A TensorBoard writer (imported here: only rank 0 pays for it), or None where the package
    is missing, e.g. a bare GPU image: metrics.jsonl holds the same numbers."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        echo("tensorboard is not installed: no TensorBoard scalars (metrics.jsonl has them)")
        return None
    return SummaryWriter(str(directory), purge_step=purge_step)


def _truncate_after(path: Path, step: int) -> None:
    """Keep the records of steps <= `step` (all of them for a fresh file)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)
