"""Generation speed of our LLaMA against HF transformers `generate`: same run, weights.

The 1.36B shape (dim 2048, 24 layers, 16 heads, ffn 5632, vocabulary 32000), random weights
(seed 0), bf16, greedy, a random 32-token prompt (ids 3..31999, seeded), 256 new tokens (no
stopping), batch 1 and 16. Methodology is /work/shared/bench/gen_anchor.py's: a warm-up call,
then timed calls of 256 new tokens between `torch.cuda.synchronize()`s; new tokens/s = batch *
256 / seconds (prefill included). HF runs on the very same tensors (our state dict converted
in memory by `model.hf.to_hf_state_dict`) with `generate(do_sample=False, min_new_tokens=256)`,
dynamic cache and `cache_implementation="static"`, exactly as the anchor.

Variants (name@batch):
    ours_eager     model.generate.Generator, no compile, no CUDA graph (the fallback path)
    ours_graph     decode step replayed from a CUDA graph
    ours_compile   per-block torch.compile inside the CUDA graph (on a CPU: compile only)
    hf_dynamic     transformers generate, default (dynamic) cache
    hf_static      transformers generate, static cache (compiles during its warm-up)
Ours use a fixed cache (cache_len = prompt + new tokens), so the anchor's warm-up call of 8 new
tokens compiles and captures the shapes the timed calls run; HF's dynamic cache compiles
nothing. HF's static cache is sized by the call's length and its compiled graphs with it, so
hf_static warms up with the full 256 (with 8, its timed call compiled again: a second graph
and 24 s for hf_static@1 in bench/results/generate_h200.txt). `graphs` counts the
torch.compile graphs made in warm-up, `graphs_timed` those made in timed calls (0 expected:
more means recompiles were timed).
`same_prefix` is the mean number of leading tokens equal to ours_eager's at the same batch:
bf16 paths that round differently part ways at some near-tie and then differ for good, but a
correct path agrees for many tokens, a broken one for none or one.

Timing: interleaved rounds (bench/report.py's `interleaved_staged`): after every variant's
warm-up, each round times one call of every variant, the order rotated, so a slow spell of
the machine lands on all alike; a variant's rate is its fastest call, every ratio comes from
those minima, and the spread of its rounds is shown. All variants stay resident (two copies of
2.7 GB of bf16 weights and a KV cache and graph per variant: a few GB), so the warm-up is done
once per variant.

One progress line per timed call, all rows rewritten to --out after each, a ratio table last.
--budget-s bounds the whole run, model set-up included: a variant starts only if it and the
rounds still fit by the runner's estimate, and every turn is cut at the budget left. The order
puts ours and hf_dynamic first; hf_static (minutes of compilation) last.

    python3 bench/generate.py --out FILE [--budget-s 150] [VARIANT@BATCH ...]
    python3 bench/generate.py --smoke          # CPU, tiny shape, every variant that runs there

Imports only torch, transformers, safetensors and this repository's model/ (no venv needed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerator import device_name, free, single_thread_for_smoke, synchronizer  # noqa: E402
from report import (  # noqa: E402
    MIN_ROUNDS,
    Staged,
    StagedTiming,
    interleaved_staged,
    print_rows,
    speed_ratio,
)

from model import Generator, Llama, LlamaConfig, Sampling  # noqa: E402
from model.hf import hf_config, to_hf_state_dict  # noqa: E402

KINDS = ["ours_eager", "ours_graph", "ours_compile", "hf_dynamic", "hf_static"]
DEFAULT_VARIANTS = [
    *(f"{kind}@1" for kind in KINDS[:4]),
    *(f"{kind}@16" for kind in KINDS[:4]),
    "hf_static@1",
    "hf_static@16",
]
SMOKE_VARIANTS = [f"{kind}@{b}" for b in (1, 3) for kind in KINDS if kind != "ours_graph"]
WARMUP_TOKENS = 8

# A generate call: new tokens -> (tokens (batch, new), prefill seconds or None when unknown).
Call = Callable[[int], tuple[torch.Tensor, float | None]]


def build_ours(config: LlamaConfig, device: torch.device) -> Llama:
    """Seed 0, bf16 on a GPU (fp32 on a CPU)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = Llama(config)
    return model.to(torch.bfloat16 if device.type == "cuda" else torch.float32).eval()


def build_hf(ours: Llama):
    """transformers' LlamaForCausalLM holding copies of our weights, same dtype and device."""
    import transformers

    dtype, device = ours.output.weight.dtype, ours.output.weight.device
    hf_cfg = transformers.LlamaConfig.from_dict(hf_config(ours.config, dtype=dtype))
    with torch.device(device):
        hf = transformers.LlamaForCausalLM(hf_cfg)
    hf = hf.to(dtype).eval()
    hf.load_state_dict(to_hf_state_dict(ours), strict=True)
    return hf


def ours_call(kind: str, model: Llama, prompt: torch.Tensor, new_tokens: int) -> Call:
    cuda = prompt.device.type == "cuda"
    generator = Generator(
        model,
        compile=kind == "ours_compile",
        cuda_graph=cuda and kind != "ours_eager",
        cache_len=prompt.size(1) + new_tokens,
    )
    prompts = prompt.tolist()

    def call(n: int) -> tuple[torch.Tensor, float | None]:
        result = generator.generate(prompts, Sampling(max_new_tokens=n, eos_id=None))
        return torch.tensor(result.tokens), result.prefill_s

    return call


def hf_call(kind: str, hf, prompt: torch.Tensor) -> Call:
    """The anchor's call."""
    kwargs = {"do_sample": False, "pad_token_id": 0}
    if kind == "hf_static":
        kwargs["cache_implementation"] = "static"
    mask = torch.ones_like(prompt)

    def call(n: int) -> tuple[torch.Tensor, float | None]:
        out = hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **kwargs)
        return out[:, prompt.size(1) :], None

    return call


def compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


class Variant:
    """One variant as a contender of the rounds: `setup` builds its call and warms it up,
    `run` times one call; its last tokens and prefill times are kept here."""

    def __init__(self, name: str, models: tuple, args: argparse.Namespace) -> None:
        kind, _, batch = name.partition("@")
        if kind not in KINDS or not batch.isdigit():
            raise ValueError(f"unknown variant {name!r}: KIND@BATCH with KIND in {KINDS}")
        self.name, self.kind, self.batch = name, kind, int(batch)
        self.device = torch.device(args.device)
        generator = torch.Generator().manual_seed(self.batch)
        prompt = torch.randint(3, args.vocab, (self.batch, args.prompt), generator=generator)
        self.prompt = prompt.to(self.device)
        self.models, self.new_tokens = models, args.new_tokens
        self.call: Call | None = None
        self.tokens: torch.Tensor | None = None
        self.prefill_s: list[float] = []
        self.graphs = 0
        self.graphs_timed = 0

    def staged(self) -> Staged:
        return Staged(self.name, self.setup, self.run, self.release)

    def setup(self) -> None:
        before = compiled_graphs()
        ours, hf = self.models
        if self.kind.startswith("hf"):
            if isinstance(hf, Exception):
                raise RuntimeError(f"no HF model: {hf!r}")
            self.call = hf_call(self.kind, hf, self.prompt)
        else:
            self.call = ours_call(self.kind, ours, self.prompt, self.new_tokens)
        self.call(self.new_tokens if self.kind == "hf_static" else WARMUP_TOKENS)
        self.graphs += compiled_graphs() - before

    def run(self) -> int:
        assert self.call is not None
        before = compiled_graphs()
        self.tokens, prefill_s = self.call(self.new_tokens)
        if prefill_s is not None:
            self.prefill_s.append(prefill_s)
        self.graphs_timed += compiled_graphs() - before
        return self.batch * self.new_tokens

    def release(self) -> None:
        self.call = None
        free(self.device)


def same_prefix(tokens: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean number of leading tokens equal to the reference's, per sequence (all of them when
    the two never part)."""
    differ = (tokens.cpu() != reference.cpu()).int()
    first = torch.where(differ.any(1), differ.argmax(1), differ.size(1))
    return round(first.float().mean().item(), 1)


def row(variant: Variant, timing: StagedTiming, variants: dict[str, Variant], rounds: int):
    out = {
        "variant": variant.name,
        "batch": variant.batch,
        "round_s": [round(s, 3) for s in timing.seconds],
        "setup_s": [round(s, 1) for s in timing.setup_s],
    }
    if missing := timing.missing(rounds):
        return {**out, **missing}
    reference = getattr(variants.get(f"ours_eager@{variant.batch}"), "tokens", None)
    return {
        **out,
        "new_tokens_per_s": round(timing.rate, 1),
        "per_seq_tok_s": round(timing.rate / variant.batch, 1),
        "seconds": round(timing.best, 3),
        "spread_pct": round(100 * timing.spread, 1),
        "prefill_s": round(min(variant.prefill_s), 4) if variant.prefill_s else None,
        "warmup_s": round(timing.setup_s[0], 1),
        "same_prefix": None if reference is None else same_prefix(variant.tokens, reference),
        "graphs": variant.graphs,
        "graphs_timed": variant.graphs_timed,
    }


def table(rows: list[dict], timings: dict[str, StagedTiming]) -> None:
    """One row per variant with its ratio to HF at the same batch (dynamic and static), both
    from the same interleaved rounds."""
    measured = {r["variant"] for r in rows if "new_tokens_per_s" in r}
    lines = []
    for r in rows:
        if r["variant"] not in measured:
            lines.append((r["variant"], 0.0, 0, r.get("error") or r.get("skipped", "")))
            continue
        batch = r["batch"]
        notes = [f"{r['per_seq_tok_s']} tok/s per sequence"]
        for ref in ("hf_dynamic", "hf_static"):
            other = f"{ref}@{batch}"
            if other in measured and not r["variant"].startswith("hf"):
                ratio = speed_ratio(timings[r["variant"]], timings[other])
                notes.append(f"x{ratio:.1f} vs {ref}")
        if r["same_prefix"] is not None and not r["variant"].startswith("ours_eager"):
            notes.append(f"same first {r['same_prefix']} tokens as ours_eager")
        notes.append(f"[min of {len(r['round_s'])}, spread {r['spread_pct']}%]")
        lines.append((r["variant"], r["new_tokens_per_s"], batch, "  ".join(notes)))
    print_rows(lines, "variant", "new tok/s")


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("variants", nargs="*", help=f"default: {' '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, 16 new tokens")
    parser.add_argument("--budget-s", type=float, default=150.0, help="bound on the whole run")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--out", help="results JSON (default: a temporary file)")
    args = parser.parse_args()

    config = LlamaConfig.preset("1.36B")
    args.device = "cuda"
    if args.smoke:
        config = LlamaConfig.preset("tiny", vocab_size=1024)
        args.device, args.prompt, args.new_tokens = "cpu", 8, 16
        single_thread_for_smoke()
    args.vocab = config.vocab_size
    args.out = args.out or str(Path(tempfile.gettempdir()) / "generate_bench.json")
    names = args.variants or (SMOKE_VARIANTS if args.smoke else DEFAULT_VARIANTS)
    device = torch.device(args.device)
    ours = build_ours(config, device)
    hf: object = None
    if any(v.startswith("hf") for v in names):
        try:
            hf = build_hf(ours)
        except Exception as e:  # ours still run; the HF rows report this
            hf = e
            traceback.print_exc()
    variants = {name: Variant(name, (ours, hf), args) for name in names}
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    meta = {
        "torch": torch.__version__,
        "transformers": getattr(sys.modules.get("transformers"), "__version__", None),
        "device": device_name(device),
        "shape": {"dim": config.dim, "layers": config.n_layers, "heads": config.n_heads,
                  "ffn": config.ffn_hidden, "vocab": config.vocab_size},
        "dtype": str(ours.output.weight.dtype),
        "weight_gb": round(weight_bytes / 1e9, 2),
        "roofline_b1_tok_s": round(3.0e12 / weight_bytes),  # the anchor's figure (3 TB/s)
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "timing": "interleaved rounds, min per variant; every variant resident",
        "setup_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    print(json.dumps(meta), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    timings: dict[str, StagedTiming] = {}

    def save(timing: StagedTiming) -> None:
        timings[timing.name] = timing
        print(timing.turn_note(), flush=True)
        rows = [row(variants[n], timings[n], variants, args.rounds) for n in names if n in timings]
        out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")

    interleaved_staged(
        [v.staged() for v in variants.values()],
        args.rounds,
        resident=True,
        budget_s=args.budget_s - (time.monotonic() - started),
        synchronize=synchronizer(device),
        after_turn=save,
    )
    rows = [row(variants[n], timings[n], variants, args.rounds) for n in names]
    for r in rows:
        print(json.dumps(r), flush=True)
    table(rows, timings)
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
