"""Training throughput of our LLaMA on one GPU: tokens/s, MFU and peak memory.

The 1.36B shape (dim 2048, 24 layers, 16 heads, ffn 5632, vocabulary 32000), sequence 2048,
micro-batch 8; fp32 master weights, bf16 autocast, fused AdamW, gradient clipping 1.0, the LR
schedule, per-block torch.compile. Methodology is that of /work/shared/bench/gpu_anchor.py (HF
LlamaForCausalLM and a minimal model.py, run in the same device call), so ratios are fair: seed 0,
one random batch reused, loss = cross-entropy of `logits.float()` over the vocabulary, 3 warm-up
steps (compile included, reported as warmup_s), 10 timed steps between CUDA events, peak memory
from `max_memory_allocated`, MFU = flops/token * tokens/s / peak bf16 dense FLOPs (989.4e12 for
H100 SXM and H200, as the anchor).

Variants are named ac_<off|selective|full>[_eager][_cudnn]: activation checkpointing mode,
`_eager` for no torch.compile, `_cudnn` to have SDPA try cuDNN attention before FlashAttention-2
(faster on Hopper at the same accuracy). One JSON line per variant as it finishes (a failing
variant prints its error and the others still run; a variant is skipped once it would overrun
--budget-s), the same rows rewritten to --out after each, and a table last (with the ratio to
the anchor's rows when --anchor names its output).

    python3 bench/train_gpu.py --out $OUT/train_gpu.json [--anchor $OUT/anchor.txt] [VARIANT ...]
    python3 bench/train_gpu.py --smoke     # the same code on a CPU, tiny shape, 2 steps

Imports only torch and this repository's model/ and training/ (the GPU machine has no venv).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from report import print_rows  # noqa: E402
from torch.nn.attention import SDPBackend  # noqa: E402

from model import Llama, LlamaConfig  # noqa: E402
from training.optim import build_optimizer, build_scheduler  # noqa: E402
from training.parallelize import apply_ac, apply_compile, prefer_cudnn_attention  # noqa: E402

# Dense bf16 tensor-core peak, first matching substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),  # same compute as the H100 SXM, more and faster memory
    ("A100", 312e12),
]
DEFAULT_VARIANTS = ["ac_off", "ac_selective", "ac_off_cudnn", "ac_selective_cudnn"]
SMOKE_VARIANTS = ["ac_off_eager", "ac_selective_eager", "ac_full_eager_cudnn"]


@dataclass(frozen=True)
class Variant:
    name: str
    ac: str
    compile: bool
    cudnn: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        parts = name.split("_")
        flags = set(parts[2:])
        valid = len(parts) >= 2 and parts[0] == "ac" and flags <= {"eager", "cudnn"}
        if not valid or parts[1] not in ("off", "selective", "full"):
            raise ValueError(f"variant {name!r}: expected ac_<off|selective|full>[_eager][_cudnn]")
        return cls(name, parts[1], "eager" not in flags, "cudnn" in flags)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The anchor's loss: mean cross-entropy over the vocabulary, in float32."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


class Clock:
    """Elapsed seconds of a span of device work: CUDA events on a GPU, wall clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> Clock:
        if self.cuda:
            self.start, self.end = torch.cuda.Event(True), torch.cuda.Event(True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000
        else:
            self.seconds = time.perf_counter() - self.t0


def sdpa_kernel_used(config: LlamaConfig, batch: int, seq: int, device: torch.device) -> str:
    """The SDPA backend that the current context picks for the model's q, k, v (same layout:
    transposed views of the fused projection), to tell whether "cudnn-first" got cuDNN."""
    shape = (batch, seq, 3, config.n_heads, config.head_dim)
    qkv = torch.empty(shape, device=device, dtype=torch.bfloat16, requires_grad=True)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    return SDPBackend(torch._fused_sdp_choice(q, k, v, is_causal=True)).name


def run_variant(variant: Variant, config: LlamaConfig, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch._dynamo.reset()  # each variant compiles afresh: comparable warm-up, no stale graphs
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    torch.manual_seed(0)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        model = Llama(config)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == config.num_params(), (n_params, config.num_params())
    apply_ac(model, variant.ac)
    loss_fn = cross_entropy
    if variant.compile:
        apply_compile(model)
        loss_fn = torch.compile(cross_entropy)
    optimizer = build_optimizer(model, lr=3e-4)
    scheduler = build_scheduler(optimizer, total_steps=250_000)
    tokens = torch.randint(0, config.vocab_size, (args.batch, args.seq + 1), device=device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    attention = prefer_cudnn_attention if variant.cudnn else nullcontext

    def step() -> torch.Tensor:
        with attention():  # around backward too: checkpointing recomputes attention there
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_fn(model(inputs), targets)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    with attention():
        kernel = sdpa_kernel_used(config, args.batch, args.seq, device)

    with Clock(device) as warm:
        for _ in range(args.warmup):
            step()
    with Clock(device) as timed:
        for _ in range(args.steps):
            loss = step()
    step_s = timed.seconds / args.steps
    tokens_per_s = args.batch * args.seq / step_s
    flops_per_token = config.flops_per_token(args.seq)
    peak = args.peak_flops
    return {
        "variant": variant.name,
        "ac": variant.ac,
        "compile": variant.compile,
        "attention": "cudnn-first" if variant.cudnn else "default",
        "sdpa_kernel": kernel,
        "batch": args.batch,
        "seq": args.seq,
        "params": n_params,
        "flops_per_token": flops_per_token,
        "tokens_per_s": round(tokens_per_s),
        "step_s": round(step_s, 4),
        "mfu_pct": round(100 * tokens_per_s * flops_per_token / peak, 1) if peak else None,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        "warmup_s": round(warm.seconds, 1),
        "loss": round(loss.item(), 4),
        # compiled graphs: 2 expected (one block, the loss); more means recompiles
        "graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before,
    }


def anchor_rows(path: str | None) -> list[dict]:
    """The JSON result lines of gpu_anchor.py's output (other lines ignored)."""
    if not path or not os.path.exists(path):
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("tokens_per_s"):
            rows.append(row)
    return rows


def table(results: list[dict], anchors: list[dict]) -> None:
    rows = []
    for r in results:
        if "tokens_per_s" not in r:
            rows.append((r["variant"], 0.0, 0, r.get("error") or r.get("skipped", "")))
            continue
        note = f"MFU {r['mfu_pct']}%  " if r["mfu_pct"] is not None else ""
        note += f"mem {r['peak_mem_gib']} GiB  " if r["peak_mem_gib"] is not None else ""
        note += f"warm-up {r['warmup_s']} s  sdpa {r['sdpa_kernel']}"
        for a in anchors:
            note += f"  x{r['tokens_per_s'] / a['tokens_per_s']:.2f} vs {a['variant']}"
        rows.append((r["variant"], float(r["tokens_per_s"]), r["batch"] * r["seq"], note))
    for a in anchors:
        note = f"MFU {a.get('mfu_pct')}%  mem {a.get('peak_mem_gib')} GiB  (anchor)"
        rows.append((a["variant"], float(a["tokens_per_s"]), 0, note))
    print_rows(rows, "variant", "tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("variants", nargs="*", help=f"default: {' '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, 2 steps")
    parser.add_argument("--batch", type=int, default=int(os.environ.get("BATCH", 8)))
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=320.0, help="start no variant after")
    parser.add_argument("--peak-flops", type=float, help="override the device table")
    parser.add_argument(
        "--out",
        help="results JSON (default bench/results/train_gpu.json; with --smoke, a temporary file)",
    )
    parser.add_argument("--anchor", help="gpu_anchor.py's output, for the ratio column")
    args = parser.parse_args()

    config = LlamaConfig.preset("1.36B")
    args.device = "cuda"
    if args.smoke:
        config = LlamaConfig.preset("tiny", vocab_size=1024)
        args.device, args.batch, args.seq, args.steps, args.warmup = "cpu", 2, 64, 2, 1
    if args.out is None:
        folder = tempfile.gettempdir() if args.smoke else "bench/results"
        args.out = os.path.join(folder, "train_gpu_smoke.json" if args.smoke else "train_gpu.json")
    variants = [
        Variant.parse(v)
        for v in args.variants or (SMOKE_VARIANTS if args.smoke else DEFAULT_VARIANTS)
    ]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    if args.peak_flops is None:
        args.peak_flops = next((p for key, p in PEAK_BF16_FLOPS if key in name), None)
    torch.backends.cuda.matmul.allow_tf32 = True  # as the anchor (matmuls here are bf16 anyway)
    meta = {
        "torch": torch.__version__,
        "device": name,
        "peak_flops": args.peak_flops,
        "shape": {
            "dim": config.dim,
            "layers": config.n_layers,
            "heads": config.n_heads,
            "ffn": config.ffn_hidden,
            "vocab": config.vocab_size,
        },
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    print(json.dumps(meta), flush=True)

    started, longest, results = time.monotonic(), 0.0, []
    for variant in variants:
        elapsed = time.monotonic() - started
        if elapsed + longest > args.budget_s:
            result = {"variant": variant.name, "skipped": f"budget: {elapsed:.0f} s used"}
        else:
            t0 = time.monotonic()
            try:
                result = run_variant(variant, config, args)
            except Exception as e:  # an OOM or compile error must not lose the other variants
                result = {"variant": variant.name, "error": repr(e)[:500]}
                print("".join(traceback.format_exc().splitlines(True)[-30:]), file=sys.stderr)
            longest = max(longest, time.monotonic() - t0)
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
        results.append(result)
        print(json.dumps(result), flush=True)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")

    anchors = anchor_rows(args.anchor)
    table(results, anchors)


if __name__ == "__main__":
    main()
