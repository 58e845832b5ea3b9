"""Training throughput of our LLaMA on one GPU: tokens/s, MFU and peak memory.

The 1.36B shape (dim 2048, 24 layers, 16 heads, ffn 5632, vocabulary 32000), sequence 2048,
micro-batch 8; fp32 master weights, bf16 autocast, fused AdamW, gradient clipping 1.0, the LR
schedule, per-block torch.compile. Methodology is that of /work/shared/bench/gpu_anchor.py (HF
LlamaForCausalLM and a minimal model.py, run in the same device call), so ratios are fair: seed 0,
one random batch reused, loss = cross-entropy of `logits.float()` over the vocabulary, 3 warm-up
steps (compile included, reported as warmup_s), blocks of 10 timed steps, peak memory from
`max_memory_allocated`, MFU = flops/token * tokens/s / peak bf16 dense FLOPs (989.4e12 for
H100 SXM and H200, as the anchor).

Timing: interleaved rounds (bench/report.py's `interleaved_staged`). Round 0 builds each variant
in the listed order and times its first block; each later round times one block of every
variant, the order rotated, so a slow spell of the machine lands on all variants alike. A
variant's rate is its fastest block (the least disturbed), every ratio between variants comes
from those minima, and the spread of its rounds is shown beside it. A block is wall-clock time
bracketed by `torch.cuda.synchronize()`.

Memory: variants are rebuilt for every turn, not kept resident, for two reasons. (1) They do
not fit together on an 80 GB H100: each holds 12 bytes per parameter between steps (fp32
weights, AdamW's two moments), 15.2 GiB for the 1.36B, and a step adds up to 34 GiB more
(gradients and activations: 48.9 GiB peak with AC off on the H200), so four resident variants
need about 95 GiB; numbers must not depend on which card the device call gets. (2)
torch.compile's cache is per process and its guards do not include SDPA's backend priority,
so a `_cudnn` variant compiled while another variant's graphs are cached would silently run
them: every build starts with `torch._dynamo.reset()`. A rebuild costs seconds: inductor's
FX-graph and AOTAutograd caches hit after the first compile, and the seed-0 weights are drawn
once and kept on the host (drawing 1.36B normals on the CPU takes longer than copying them),
loaded into a model made on the meta device. With a fresh optimizer each time, every round
trains the very same steps. Round 0 builds a variant twice, cold and then as every later turn
does (see `interleaved_staged`); `setup_s` lists every build's seconds (model, compile,
warm-up; the cold one first), `warmup_s` the cold build's warm-up steps alone.

Variants are named ac_<off|selective|full>[_eager][_cudnn][_float8]: activation checkpointing
mode, `_eager` for no torch.compile, `_cudnn` to have SDPA try cuDNN attention before
FlashAttention-2 (faster on Hopper at the same accuracy), `_float8` for float8 matmuls in
training (`training.parallelize.apply_float8`: torchao's tensorwise recipe) applied to the
built model before activation checkpointing and compile. It is imported inside the variant, so
where it or torchao is missing only the float8 variants fail, with that error.

`--curve-steps N` is the float8 loss-curve check: the first float8 variant named (else the
first variant with `_float8` added) and its bf16 twin train N steps from the same seed-0
weights on the same few seeded random batches, cycled (so the loss falls as they are
memorized), with the warm-up and cosine of a run N steps long; the result is the max and mean
absolute difference of the two loss curves. One pair: the AC mode and the attention kernel
choice do not change what float8 does to the arithmetic. It runs before the rounds (its
compiles warm the caches they use).

--budget-s bounds the whole run: the curve (first, not cut) spends from it, then a variant
starts only if it and the rounds still fit by the runner's estimate, and every turn is cut
at the budget left. A progress
line per turn, the JSON rewritten to --out after each, and a table last (with the ratio to
the anchor's rows when --anchor names its output: those ran earlier in another process,
one after another, so they are not interleaved with ours; the ratios between our variants
are).

    python3 bench/train_gpu.py --out $OUT/train_gpu.json [--anchor $OUT/anchor.txt] [VARIANT ...]
    python3 bench/train_gpu.py --smoke     # the same code on a CPU, tiny shape, 2-step blocks

Imports only torch and this repository's model/ and training/ (the GPU machine has no venv).
"""

from __future__ import annotations

import argparse
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
from accelerator import (  # noqa: E402
    device_name,
    free,
    peak_flops,
    single_thread_for_smoke,
    synchronizer,
)
from report import (  # noqa: E402
    MIN_ROUNDS,
    Staged,
    StagedTiming,
    interleaved_staged,
    print_rows,
    speed_ratio,
)
from torch.nn.attention import SDPBackend  # noqa: E402

from model import Llama, LlamaConfig  # noqa: E402
from training.optim import build_optimizer, build_scheduler  # noqa: E402
from training.parallelize import apply_ac, apply_compile, prefer_cudnn_attention  # noqa: E402

DEFAULT_VARIANTS = ["ac_off", "ac_selective", "ac_off_cudnn", "ac_selective_cudnn"]
SMOKE_VARIANTS = ["ac_off_eager", "ac_selective_eager", "ac_full_eager_cudnn"]
FLAGS = ("eager", "cudnn", "float8")
BENCH_TOTAL_STEPS = 250_000  # the schedule the benchmark's steps are taken from (warm-up phase)
CURVE_BATCHES = 4


@dataclass(frozen=True)
class Variant:
    name: str
    ac: str
    compile: bool
    cudnn: bool
    float8: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        parts = name.split("_")
        flags = set(parts[2:])
        valid = len(parts) >= 2 and parts[0] == "ac" and flags <= set(FLAGS)
        if not valid or parts[1] not in ("off", "selective", "full"):
            raise ValueError(
                f"variant {name!r}: expected ac_<off|selective|full>[_eager][_cudnn][_float8]"
            )
        return cls(name, parts[1], "eager" not in flags, "cudnn" in flags, "float8" in flags)

    def twin(self, float8: bool) -> Variant:
        """The same variant with float8 on or off."""
        parts = [p for p in self.name.split("_") if p != "float8"]
        return Variant.parse("_".join(parts + ["float8"] * float8))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The anchor's loss: mean cross-entropy over the vocabulary, in float32."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def sdpa_kernel_used(config: LlamaConfig, batch: int, seq: int, device: torch.device) -> str:
    """The SDPA backend that the current context picks for the model's q, k, v (same layout:
    (batch, seq, heads, head_dim) projections viewed as (batch, heads, seq, head_dim)), to
    tell whether "cudnn-first" got cuDNN."""
    shape = (batch, seq, config.n_heads, config.head_dim)
    q, k, v = (
        torch.empty(shape, device=device, dtype=torch.bfloat16, requires_grad=True).transpose(1, 2)
        for _ in range(3)
    )
    return SDPBackend(torch._fused_sdp_choice(q, k, v, is_causal=True)).name


def seeded_batches(
    config: LlamaConfig, batch: int, seq: int, count: int, seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` random (inputs, targets) batches drawn on the CPU from `seed`: the same tokens
    whatever the device."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        tokens = torch.randint(0, config.vocab_size, (batch, seq + 1), generator=generator)
        tokens = tokens.to(device)
        out.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))
    return out


def apply_float8(model: Llama) -> None:
    """The lead's float8 conversion, imported here so that its absence fails this variant
    alone, with a message that says what is missing."""
    try:
        from training.parallelize import apply_float8 as convert
    except ImportError as e:
        raise RuntimeError(f"float8 needs training.parallelize.apply_float8: {e}") from e
    try:
        convert(model)
    except ImportError as e:
        raise RuntimeError(f"float8 needs torchao: {e}") from e


def initial_weights(config: LlamaConfig) -> dict[str, torch.Tensor]:
    """The seed-0 weights on the CPU, drawn once for every build of every variant."""
    return Llama(config, seed=0).state_dict()


class Trainer:
    """One variant's model (holding `weights`), optimizer and schedule, built afresh, with a
    reset of torch.compile's state (see the module docstring)."""

    def __init__(
        self,
        variant: Variant,
        config: LlamaConfig,
        weights: dict[str, torch.Tensor],
        device: torch.device,
        total_steps: int = BENCH_TOTAL_STEPS,
        warmup_steps: int | None = None,
    ) -> None:
        torch._dynamo.reset()
        with torch.device("meta"):
            model = Llama(config)
        model.to_empty(device=device)
        model.load_state_dict(weights)
        self.params = sum(p.numel() for p in model.parameters())
        if variant.float8:
            apply_float8(model)
        apply_ac(model, variant.ac)
        self.loss_fn = cross_entropy
        if variant.compile:
            apply_compile(model)
            self.loss_fn = torch.compile(cross_entropy)
        self.model, self.device = model, device
        self.optimizer = build_optimizer(model, lr=3e-4)
        schedule = {} if warmup_steps is None else {"warmup_steps": warmup_steps}
        self.scheduler = build_scheduler(self.optimizer, total_steps=total_steps, **schedule)
        self.attention = prefer_cudnn_attention if variant.cudnn else nullcontext

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with self.attention():  # around backward too: checkpointing recomputes attention there
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                loss = self.loss_fn(self.model(inputs), targets)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


class Turns:
    """A variant as a contender of the rounds: `setup` builds and warms it up, `run` times a
    block of steps, `release` drops it; what the turns saw is kept here."""

    def __init__(
        self,
        variant: Variant,
        config: LlamaConfig,
        weights: dict[str, torch.Tensor],
        args: argparse.Namespace,
    ) -> None:
        self.variant, self.config, self.weights, self.args = variant, config, weights, args
        self.device = torch.device(args.device)
        self.inputs, self.targets = seeded_batches(config, args.batch, args.seq, 1, 0, self.device)[
            0
        ]
        self.trainer: Trainer | None = None
        self.warmup_s: list[float] = []
        self.peak_bytes = 0
        self.loss: float | None = None
        self.graphs: int | None = None
        self.kernel: str | None = None

    def staged(self) -> Staged:
        return Staged(self.variant.name, self.setup, self.run, self.release)

    def setup(self) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        self.trainer = Trainer(self.variant, self.config, self.weights, self.device)
        assert self.trainer.params == self.config.num_params()
        with self.trainer.attention():
            self.kernel = sdpa_kernel_used(self.config, self.args.batch, self.args.seq, self.device)
        synchronize = synchronizer(self.device)
        started = time.perf_counter()
        for _ in range(self.args.warmup):
            self.trainer.step(self.inputs, self.targets)
        synchronize()
        self.warmup_s.append(time.perf_counter() - started)
        if self.graphs is None:
            # compiled graphs: 2 expected (one block, the loss); more means recompiles
            self.graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before

    def run(self) -> int:
        assert self.trainer is not None
        for _ in range(self.args.steps):
            loss = self.trainer.step(self.inputs, self.targets)
        self.loss = loss.item()
        if self.device.type == "cuda":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated())
        return self.args.batch * self.args.seq * self.args.steps

    def release(self) -> None:
        self.trainer = None
        free(self.device)


def row(turns: Turns, timing: StagedTiming, args: argparse.Namespace) -> dict:
    """The variant's result: its rate from the fastest round, or why it has none."""
    v = turns.variant
    out = {
        "variant": v.name,
        "ac": v.ac,
        "compile": v.compile,
        "attention": "cudnn-first" if v.cudnn else "default",
        "float8": v.float8,
        "batch": args.batch,
        "seq": args.seq,
        "round_step_s": [round(s / args.steps, 4) for s in timing.seconds],
        "setup_s": [round(s, 1) for s in timing.setup_s],
    }
    if missing := timing.missing(args.rounds):
        return {**out, **missing}
    flops_per_token = turns.config.flops_per_token(args.seq)
    tokens_per_s = timing.rate
    peak = args.peak_flops
    return {
        **out,
        "sdpa_kernel": turns.kernel,
        "params": turns.config.num_params(),
        "flops_per_token": flops_per_token,
        "tokens_per_s": round(tokens_per_s),
        "step_s": round(timing.best / args.steps, 4),
        "spread_pct": round(100 * timing.spread, 1),
        "mfu_pct": round(100 * tokens_per_s * flops_per_token / peak, 1) if peak else None,
        "peak_mem_gib": round(turns.peak_bytes / 2**30, 1) if turns.peak_bytes else None,
        "warmup_s": round(turns.warmup_s[0], 1),
        "loss": round(turns.loss, 4),
        "graphs": turns.graphs,
    }


def loss_curve(
    variant: Variant, config: LlamaConfig, weights: dict, args: argparse.Namespace
) -> list[float]:
    """Losses of `args.curve_steps` steps from `weights` on CURVE_BATCHES seeded batches,
    cycled, under a schedule whose warm-up (a tenth) and cosine span those steps."""
    device = torch.device(args.device)
    steps = args.curve_steps
    batches = seeded_batches(config, args.batch, args.seq, CURVE_BATCHES, 1, device)
    warmup = max(1, steps // 10)
    trainer = Trainer(variant, config, weights, device, total_steps=steps, warmup_steps=warmup)
    losses = [trainer.step(*batches[i % CURVE_BATCHES]) for i in range(steps)]
    return [round(loss.item(), 5) for loss in losses]


def curve_check(
    variants: list[Variant], config: LlamaConfig, weights: dict, args: argparse.Namespace
) -> dict:
    """The float8 loss-curve check (an error instead if either side fails)."""
    float8 = next((v for v in variants if v.float8), variants[0].twin(float8=True))
    bf16 = float8.twin(float8=False)
    result: dict = {"bf16": bf16.name, "float8": float8.name, "steps": args.curve_steps}
    try:
        ours = loss_curve(bf16, config, weights, args)
        free(torch.device(args.device))
        theirs = loss_curve(float8, config, weights, args)
        diffs = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
        result.update(
            max_abs_diff=round(max(diffs), 5),
            mean_abs_diff=round(sum(diffs) / len(diffs), 5),
            curve_bf16=ours,
            curve_float8=theirs,
        )
    except Exception as e:  # a missing torchao must not lose the throughput rounds
        result["error"] = repr(e)[:500]
        print("".join(traceback.format_exc().splitlines(True)[-30:]), file=sys.stderr)
    free(torch.device(args.device))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("curve_")}), flush=True)
    return result


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


def table(rows: list[dict], timings: dict[str, StagedTiming], anchors: list[dict]) -> None:
    """Ratios between our variants (to the first one measured: interleaved), then to the
    anchor's rows (sequential)."""
    measured = [r for r in rows if "tokens_per_s" in r]
    reference = measured[0]["variant"] if measured else None
    lines = []
    for r in rows:
        if "tokens_per_s" not in r:
            lines.append((r["variant"], 0.0, 0, r.get("error") or r.get("skipped", "")))
            continue
        note = f"MFU {r['mfu_pct']}%  " if r["mfu_pct"] is not None else ""
        note += f"mem {r['peak_mem_gib']} GiB  " if r["peak_mem_gib"] is not None else ""
        note += f"warm-up {r['warmup_s']} s  sdpa {r['sdpa_kernel']}"
        if r["variant"] != reference:
            ratio = speed_ratio(timings[r["variant"]], timings[reference])
            note += f"  x{ratio:.2f} vs {reference}"
        for a in anchors:
            note += f"  x{r['tokens_per_s'] / a['tokens_per_s']:.2f} vs {a['variant']}"
        note += f"  [min of {len(r['round_step_s'])}, spread {r['spread_pct']}%]"
        lines.append((r["variant"], float(r["tokens_per_s"]), r["batch"] * r["seq"], note))
    for a in anchors:
        note = f"MFU {a.get('mfu_pct')}%  mem {a.get('peak_mem_gib')} GiB  (anchor, sequential)"
        lines.append((a["variant"], float(a["tokens_per_s"]), 0, note))
    print_rows(lines, "variant", "tokens/s")


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("variants", nargs="*", help=f"default: {' '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, 2-step blocks")
    parser.add_argument("--batch", type=int, default=int(os.environ.get("BATCH", 8)))
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after each build")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--budget-s", type=float, default=320.0, help="bound on the whole run")
    parser.add_argument("--curve-steps", type=int, default=0, help="float8 loss-curve check")
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
        single_thread_for_smoke()
    if args.out is None:
        folder = tempfile.gettempdir() if args.smoke else "bench/results"
        args.out = os.path.join(folder, "train_gpu_smoke.json" if args.smoke else "train_gpu.json")
    variants = [
        Variant.parse(v)
        for v in args.variants or (SMOKE_VARIANTS if args.smoke else DEFAULT_VARIANTS)
    ]
    device = torch.device(args.device)
    name = device_name(device)
    if args.peak_flops is None:
        args.peak_flops = peak_flops(name)
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
        "rounds": args.rounds,
        "timing": "interleaved rounds, min per variant; every variant rebuilt for each turn",
    }
    print(json.dumps(meta), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    weights = initial_weights(config)
    curve = curve_check(variants, config, weights, args) if args.curve_steps else None
    turns = {v.name: Turns(v, config, weights, args) for v in variants}
    timings: dict[str, StagedTiming] = {}

    def save(timing: StagedTiming) -> None:
        timings[timing.name] = timing
        print(timing.turn_note(), flush=True)
        rows = [row(turns[n], timings[n], args) for n in turns if n in timings]
        payload = {"meta": meta, "results": rows, "float8_curve": curve}
        out.write_text(json.dumps(payload, indent=1) + "\n")

    interleaved_staged(
        [t.staged() for t in turns.values()],
        args.rounds,
        resident=False,
        budget_s=args.budget_s - (time.monotonic() - started),
        synchronize=synchronizer(device),
        after_turn=save,
    )
    rows = [row(turns[n], timings[n], args) for n in turns]
    for r in rows:
        print(json.dumps(r), flush=True)
    table(rows, timings, anchor_rows(args.anchor))
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
