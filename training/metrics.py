"""Where training progress goes: `metrics.jsonl`, TensorBoard, the terminal and Dagster Pipes.

Only rank 0 writes. One record per log interval, and one at every held-out evaluation, the
same fields in every sink:

    step, loss (mean over the interval's applied steps), lr, grad_norm (last step), tokens_per_s,
    mfu (null off GPU), tokens_seen, skipped_steps, epoch

and, at a step that evaluated (training/evaluation/heldout.py `TrainingCurves`), `heldout`:
loss, perplexity, bits_per_byte (null for shards without a tokenizer), tokens, bytes,
documents, seconds, and `per_corpus` {corpus: the same} when the documents are labelled.
TensorBoard shows them as `heldout/<key>` and `heldout/<corpus>/<key>`, the training fields as
`train/<key>`.

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
        + heldout_text(record.get("heldout"))
    )


def heldout_text(heldout: dict | None) -> str:
    """The progress line's held-out part, e.g. ` | held-out loss 3.4567 (c4 3.61, github
    2.10)`; empty at a step that did not evaluate."""
    if not heldout:
        return ""
    per_corpus = heldout.get("per_corpus", {})
    corpora = ", ".join(f"{name} {values['loss']:.2f}" for name, values in per_corpus.items())
    return f" | held-out loss {heldout['loss']:.4f}" + (f" ({corpora})" if corpora else "")


def tensorboard_scalars(record: dict) -> dict[str, float]:
    """A record's numbers by TensorBoard tag: `train/<key>`, and for a held-out evaluation
    `heldout/<key>` and `heldout/<corpus>/<key>`, so all held-out curves are in one section."""
    heldout = record.get("heldout") or {}
    scalars = {f"train/{k}": v for k, v in record.items() if k not in ("step", "heldout")}
    scalars |= {f"heldout/{k}": v for k, v in heldout.items() if k != "per_corpus"}
    for corpus, values in heldout.get("per_corpus", {}).items():
        scalars |= {f"heldout/{corpus}/{k}": v for k, v in values.items()}
    return {tag: value for tag, value in scalars.items() if value is not None}


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
            for tag, value in tensorboard_scalars(record).items():
                self.tensorboard.add_scalar(tag, value, record["step"])
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
