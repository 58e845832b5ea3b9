"""One 65B-shaped transformer block on one GPU, forward + backward, and what it implies for the
paper's 65B run: tokens/s per GPU on 2048 A100-80GB, beside the paper's 380.

Measurement. `model.llama.Block` of the 65B shape (dim 8192, 64 heads, FFN hidden 22016),
sequence 2048, fp32 master weights under bf16 autocast, selective activation checkpointing and
torch.compile applied by training/parallelize.py's `apply_ac` and `apply_compile` (to a
one-block stack, as they wrap each block of the model), SDPA's default backend order
(FlashAttention-2: the A100's kernel too). One iteration is the forward of a random fp32
residual-stream input (it needs its gradient, as every block but the first does) and the
backward of a fixed random output gradient; gradients are dropped after each (FSDP
reduce-scatters and frees them). Micro-batches 1 and 2 by default (a failing one, e.g. out of
memory, is reported and the others go on). Timing: bench/report.py's `interleaved_staged`,
all micro-batches resident (a block is 0.81B parameters: 3.2 GB of fp32 weights, as much
again of gradients), each warmed up once (compile included, `setup_s`), then rounds of one
block of `--steps` iterations each, order rotated, the fastest block kept; each micro-batch
compiles its own static graph (automatic dynamic shapes off). FLOPs per token of the block are
the MFU convention's, 6 x block parameters + 12 x dim x seq (selective checkpointing's
recomputation not counted), and MFU is against the GPU's dense bf16 peak (989.4 TFLOP/s on
H100 SXM and H200).

Projection, per GPU and optimizer step, on the paper's cluster: 2048 A100-80GB in nodes of 8,
TP = 8 inside a node (Megatron-style tensor parallelism with sequence parallelism), FSDP over
the 256 nodes (one data-parallel group per TP rank), the paper's 4M-token batches (4,194,304
tokens: 2048 per GPU, 16,384 per TP group, i.e. 16384 / (mb x 2048) micro-batches per step).

    compute  = tokens per GPU x 65B FLOPs/token / (MFU x 312e12), with the MFU measured here
               or given by --mfu (the assumption: an A100 reaches the same fraction of its
               peak as this GPU, on 1/8 of each matmul)
    TP       = 80 blocks x micro-batches x 8 collectives x (7/8) x mb x 2048 x 8192 x 2 bytes
               / 300e9 B/s. Per block and micro-batch, sequence parallelism runs an all-gather
               before attention and before the FFN and a reduce-scatter after each (4 forward),
               and their conjugates in backward (4: a reduce-scatter for each all-gather, an
               all-gather for each reduce-scatter), each of the whole bf16 activation; a ring
               collective over n GPUs moves (n-1)/n of it through each GPU, at NVLink's 600
               GB/s counted both ways, 300 GB/s each way. Megatron's re-gather of the
               layer inputs in backward, a memory saving, would add 2 more; not counted.
    FSDP     = (255/256) x 65.3e9 / 8 parameters x (2 all-gathers x 2 bytes + 1 reduce-scatter
               x 4 bytes) / 25e9 B/s. Each TP rank's eighth of the model is sharded over 256
               nodes; per step its bf16 parameters are gathered twice (forward, and backward
               after resharding) and its gradients reduce-scattered once in fp32 (apply_fsdp's
               reduce_dtype), i.e. parameters stay gathered across a step's micro-batches
               (gathering them again for each would multiply the gathers by the micro-batch
               count, 8 at mb 1). A node's 8 x 200 Gb/s HDR InfiniBand is 25 GB/s per GPU each
               way.
    no overlap      step = compute + TP + FSDP
    perfect overlap step = max(compute, TP + FSDP)   (the two communications in series)
    tokens/s/GPU  = tokens per GPU per step / step

Links run at their nominal rates with no latency, so both columns are optimistic about
communication; the embedding and the output projection's own TP collectives are left out
(their FLOPs and FSDP traffic are in).

    python3 bench/block_65b.py --out $OUT/block_65b [--budget-s 60] [MICRO_BATCH ...]
    python3 bench/block_65b.py --smoke     # CPU, tiny block, eager, the same code otherwise

Writes OUT.json and OUT.txt (the printed table and projection). Imports only torch and this
repository's model/ and training/ (the GPU machine has no venv).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerator import (  # noqa: E402
    device_name,
    free,
    peak_flops,
    single_thread_for_smoke,
    synchronizer,
)
from report import Staged, StagedTiming, interleaved_staged, write_json  # noqa: E402
from torch import nn  # noqa: E402

from model import LlamaConfig  # noqa: E402
from model.llama import Block, rotary_tables  # noqa: E402
from training.parallelize import apply_ac, apply_compile  # noqa: E402

# The paper's cluster (section 2.4: 2048 A100-80GB) and our reading of its parallelism.
GPUS = 2048
GPUS_PER_NODE = 8
TP = 8  # tensor parallelism inside a node's NVLink domain
A100_PEAK_FLOPS = 312e12  # dense bf16
NVLINK_BYTES_PER_S = 600e9  # A100 NVLink 3, per GPU, both directions together
NVLINK_EACH_WAY = NVLINK_BYTES_PER_S / 2  # a ring step sends and receives at once
IB_BITS_PER_S_PER_NODE = 8 * 200e9  # 8 x HDR InfiniBand, each way
IB_EACH_WAY_PER_GPU = IB_BITS_PER_S_PER_NODE / 8 / GPUS_PER_NODE  # bytes; one HCA per GPU
BATCH_TOKENS = 4 * 1024 * 1024  # the paper's 4M-token batches
PAPER_TOKENS_PER_GPU_S = 380.0  # section 2.4, 65B
ACTIVATION_BYTES = 2  # bf16 activations in the TP collectives
PARAM_BYTES = 2  # bf16 parameters all-gathered (apply_fsdp's param_dtype)
GRAD_BYTES = 4  # fp32 gradients reduce-scattered (apply_fsdp's reduce_dtype)
TP_COLLECTIVES = 4 + 4  # per block and micro-batch: forward, then backward's conjugates
FSDP_GATHERS, FSDP_REDUCES = 2, 1  # per block and optimizer step

SEQ = 2048
DEFAULT_MICRO_BATCHES = [1, 2]


@dataclass(frozen=True)
class Cluster:
    """The machine projected onto; bandwidths are bytes/s each way, per GPU."""

    gpus: int = GPUS
    tp: int = TP
    peak_flops: float = A100_PEAK_FLOPS
    nvlink_bytes_per_s: float = NVLINK_EACH_WAY
    ib_bytes_per_s: float = IB_EACH_WAY_PER_GPU


@dataclass(frozen=True)
class Workload:
    """The model and batch projected."""

    params: int  # the whole model's
    flops_per_token: float  # training, the MFU convention
    layers: int
    dim: int
    seq: int
    micro_batch: int
    batch_tokens: int  # per optimizer step, all GPUs


def project(work: Workload, cluster: Cluster, mfu: float) -> dict[str, float]:
    """Seconds per optimizer step on each GPU (compute, TP and FSDP communication) and the
    tokens/s per GPU without overlap and with perfect overlap; see the module docstring."""
    dp = cluster.gpus // cluster.tp
    tokens = work.batch_tokens / cluster.gpus  # per GPU per step
    compute = tokens * work.flops_per_token / (mfu * cluster.peak_flops)
    micro_batches = tokens * cluster.tp / (work.micro_batch * work.seq)  # per TP group
    activation = work.micro_batch * work.seq * work.dim * ACTIVATION_BYTES
    tp_bytes = (cluster.tp - 1) / cluster.tp * activation * TP_COLLECTIVES
    tp = work.layers * micro_batches * tp_bytes / cluster.nvlink_bytes_per_s
    shard_params = work.params / cluster.tp
    per_param = FSDP_GATHERS * PARAM_BYTES + FSDP_REDUCES * GRAD_BYTES
    fsdp = (dp - 1) / dp * shard_params * per_param / cluster.ib_bytes_per_s
    no_overlap = compute + tp + fsdp
    overlap = max(compute, tp + fsdp)
    return {
        "tokens_per_gpu_step": tokens,
        "micro_batches_per_step": micro_batches,
        "compute_s": compute,
        "tp_s": tp,
        "fsdp_s": fsdp,
        "step_no_overlap_s": no_overlap,
        "step_overlap_s": overlap,
        "tokens_per_gpu_s_no_overlap": tokens / no_overlap,
        "tokens_per_gpu_s_overlap": tokens / overlap,
    }


class OneBlock(nn.Module):
    """A one-block stack, so `apply_ac` and `apply_compile` wrap the block as they wrap each
    of the model's."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(config)])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x, cos, sin)


class BlockRun:
    """One micro-batch size as a contender of the rounds: `setup` builds, compiles and warms
    up the block, `run` times `steps` forward + backward iterations."""

    def __init__(self, micro_batch: int, config: LlamaConfig, args: argparse.Namespace) -> None:
        self.name = f"mb{micro_batch}"
        self.micro_batch, self.config, self.args = micro_batch, config, args
        self.device = torch.device(args.device)
        self.model: OneBlock | None = None
        self.params = 0

    def staged(self) -> Staged:
        return Staged(self.name, self.setup, self.run, self.release)

    def setup(self) -> None:
        config, device = self.config, self.device
        torch.manual_seed(0)
        with torch.device(device):
            self.model = OneBlock(config)
            shape = (self.micro_batch, self.args.seq, config.dim)
            self.x = torch.randn(shape, requires_grad=True)
            self.grad = torch.randn(shape)
            positions = torch.arange(self.args.seq)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.cos, self.sin = rotary_tables(positions, config.head_dim, config.rope_theta)
        apply_ac(self.model, "selective")
        if self.args.compile:
            apply_compile(self.model)
        for _ in range(self.args.warmup):
            self.step()

    def step(self) -> None:
        assert self.model is not None
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = self.model(self.x, self.cos, self.sin)
        out.backward(self.grad)
        self.model.zero_grad(set_to_none=True)
        self.x.grad = None

    def run(self) -> int:
        for _ in range(self.args.steps):
            self.step()
        return self.micro_batch * self.args.seq * self.args.steps

    def release(self) -> None:
        self.model = None
        free(self.device)

    def flops_per_token(self) -> int:
        return 6 * self.params + 12 * self.config.dim * self.args.seq


def measured_row(run: BlockRun, timing: StagedTiming, args: argparse.Namespace) -> dict:
    out = {
        "variant": run.name,
        "micro_batch": run.micro_batch,
        "round_s": [round(s, 4) for s in timing.seconds],
        "setup_s": [round(s, 1) for s in timing.setup_s],
    }
    if missing := timing.missing(args.rounds):
        return {**out, **missing}
    achieved = timing.rate * run.flops_per_token()
    return {
        **out,
        "block_params": run.params,
        "flops_per_token": run.flops_per_token(),
        "tokens_per_s": round(timing.rate, 1),
        "iteration_s": round(timing.best / args.steps, 5),
        "spread_pct": round(100 * timing.spread, 1),
        "tflops": round(achieved / 1e12, 1),
        "mfu": round(achieved / args.peak_flops, 4) if args.peak_flops else None,
    }


def projection_rows(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """The projection for each measured micro-batch, at its measured MFU (or --mfu)."""
    shape = LlamaConfig.preset("65B")
    cluster = Cluster()
    out = []
    for r in rows:
        mfu = args.mfu if args.mfu is not None else r.get("mfu")
        if "tokens_per_s" not in r or mfu is None:
            continue
        work = Workload(
            params=shape.num_params(),
            flops_per_token=shape.flops_per_token(SEQ),
            layers=shape.n_layers,
            dim=shape.dim,
            seq=SEQ,
            micro_batch=r["micro_batch"],
            batch_tokens=BATCH_TOKENS,
        )
        # The measured block's iteration on one A100 at the same MFU, then its 1/TP share.
        flops = r["flops_per_token"] * r["micro_batch"] * args.seq
        a100_block_ms = 1e3 * flops / (mfu * cluster.peak_flops) / cluster.tp
        out.append(
            {
                "variant": r["variant"],
                "micro_batch": r["micro_batch"],
                "mfu": mfu,
                "a100_block_ms_per_gpu": a100_block_ms,
                **project(work, cluster, mfu),
            }
        )
    return out


def report_lines(meta: dict, rows: list[dict], projected: list[dict]) -> list[str]:
    lines = [
        f"one 65B-shaped block on {meta['device']}: dim {meta['dim']}, heads {meta['heads']}, "
        f"ffn {meta['ffn']}, seq {meta['seq']}, selective AC, "
        f"{'compiled' if meta['compile'] else 'eager'}, bf16 autocast",
        f"{'variant':8} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6}  rounds",
    ]
    for r in rows:
        if "tokens_per_s" not in r:
            lines.append(f"{r['variant']:8} {r.get('error') or r.get('skipped')}")
            continue
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "     -"
        lines.append(
            f"{r['variant']:8} {r['tokens_per_s']:10.1f} {r['tflops']:8.1f} {mfu}  "
            f"[min of {len(r['round_s'])}, spread {r['spread_pct']}%, "
            f"warm-up {r['setup_s'][0]} s]"
        )
    paper_mfu = PAPER_TOKENS_PER_GPU_S * meta["flops_per_token_65b"] / A100_PEAK_FLOPS
    lines += [
        "",
        f"65B on {GPUS} A100-80GB (TP {TP} in a node over NVLink "
        f"{NVLINK_EACH_WAY / 1e9:.0f} GB/s each way, FSDP over {GPUS // TP} nodes at "
        f"{IB_EACH_WAY_PER_GPU / 1e9:.0f} GB/s InfiniBand per GPU), "
        f"{BATCH_TOKENS:,}-token batches, at the MFU {meta['mfu_source']}:",
        "  block ms: the measured block's forward + backward on one A100 at the same MFU, / TP",
        "  compute, TP, FSDP: seconds per optimizer step on each GPU",
        f"{'variant':8} {'MFU':>6} {'block ms':>8} {'compute':>8} {'TP':>6} {'FSDP':>6}  "
        f"tokens/s/GPU: {'no overlap':>10} {'overlap':>8}",
    ]
    for p in projected:
        lines.append(
            f"{p['variant']:8} {100 * p['mfu']:5.1f}% {p['a100_block_ms_per_gpu']:8.2f} "
            f"{p['compute_s']:8.2f} {p['tp_s']:6.2f} {p['fsdp_s']:6.2f}  "
            f"{'':13} {p['tokens_per_gpu_s_no_overlap']:10.0f} "
            f"{p['tokens_per_gpu_s_overlap']:8.0f}"
        )
    if not projected:
        lines.append("no projection: no MFU (unknown device peak; pass --peak-flops or --mfu)")
    lines.append(
        f"paper: {PAPER_TOKENS_PER_GPU_S:.0f} tokens/s/GPU "
        f"(MFU {100 * paper_mfu:.1f}% of the A100's peak by the same FLOPs count)"
    )
    return lines


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("micro_batches", nargs="*", type=int, default=DEFAULT_MICRO_BATCHES)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny eager block, 2 steps")
    parser.add_argument("--seq", type=int, default=SEQ)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations, compile incl.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=90.0, help="bound on the whole run")
    parser.add_argument("--eager", action="store_true", help="no torch.compile")
    parser.add_argument("--peak-flops", type=float, help="override the device table")
    parser.add_argument("--mfu", type=float, help="project with this MFU, not the measured one")
    parser.add_argument("--out", help="path prefix of .json and .txt (default bench/results/)")
    args = parser.parse_args()

    config = LlamaConfig.preset("65B", n_layers=1)
    args.device = "cuda"
    if args.smoke:
        config = LlamaConfig.preset("tiny", n_layers=1)
        args.device, args.seq, args.steps, args.warmup = "cpu", 64, 2, 1
        single_thread_for_smoke()
        args.eager = True  # compiling even a tiny block takes most of a minute on a CPU
        if args.mfu is None:
            args.mfu = 0.5  # a CPU has no peak in the table: exercise the projection anyway
    args.compile = not args.eager
    folder = tempfile.gettempdir() if args.smoke else "bench/results"
    out = Path(args.out or Path(folder) / ("block_65b_smoke" if args.smoke else "block_65b"))
    device = torch.device(args.device)
    name = device_name(device)
    if args.peak_flops is None:
        args.peak_flops = peak_flops(name)
    torch._dynamo.config.automatic_dynamic_shapes = False  # a static graph per micro-batch
    meta = {
        "torch": torch.__version__,
        "device": name,
        "peak_flops": args.peak_flops,
        "dim": config.dim,
        "heads": config.n_heads,
        "ffn": config.ffn_hidden,
        "seq": args.seq,
        "compile": args.compile,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "mfu_source": "given by --mfu" if args.mfu is not None else "measured here",
        "flops_per_token_65b": LlamaConfig.preset("65B").flops_per_token(SEQ),
        "constants": {
            "gpus": GPUS,
            "gpus_per_node": GPUS_PER_NODE,
            "tp": TP,
            "a100_peak_flops": A100_PEAK_FLOPS,
            "nvlink_bytes_per_s_both_ways": NVLINK_BYTES_PER_S,
            "ib_bits_per_s_per_node": IB_BITS_PER_S_PER_NODE,
            "batch_tokens": BATCH_TOKENS,
            "activation_bytes": ACTIVATION_BYTES,
            "param_bytes": PARAM_BYTES,
            "grad_bytes": GRAD_BYTES,
            "tp_collectives_per_block_micro_batch": TP_COLLECTIVES,
            "fsdp_gathers_reduces_per_block_step": [FSDP_GATHERS, FSDP_REDUCES],
            "cluster": asdict(Cluster()),
        },
    }
    print(json.dumps(meta), flush=True)
    runs = {f"mb{mb}": BlockRun(mb, config, args) for mb in args.micro_batches}

    def progress(timing: StagedTiming) -> None:
        print(timing.turn_note(), flush=True)

    timings = interleaved_staged(
        [r.staged() for r in runs.values()],
        args.rounds,
        resident=True,
        budget_s=args.budget_s - (time.monotonic() - started),
        synchronize=synchronizer(device),
        after_turn=progress,
    )
    rows = [measured_row(runs[n], timings[n], args) for n in runs]
    projected = projection_rows(rows, args)
    lines = report_lines(meta, rows, projected)
    print("\n".join(lines), flush=True)
    write_json(f"{out}.json", {"meta": meta, "measured": rows, "projection": projected})
    Path(f"{out}.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json, {out}.txt; total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
