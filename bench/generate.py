"""Generation speed of our LLaMA against HF transformers `generate`: same run, weights.

The 1.36B shape (dim 2048, 24 layers, 16 heads, ffn 5632, vocabulary 32000), random weights
(seed 0), bf16, greedy, a random 32-token prompt (ids 3..31999, seeded), 256 new tokens (no
stopping), batch 1 and 16. Methodology is /work/shared/bench/gen_anchor.py's: one warm-up call
of 8 new tokens, then one timed call of 256, `torch.cuda.synchronize()` after it; new tokens/s =
batch * 256 / wall seconds (prefill included). HF runs on the very same tensors (our state dict
converted in memory by `model.hf.to_hf_state_dict`) with `generate(do_sample=False,
min_new_tokens=256)`, dynamic cache and `cache_implementation="static"`, exactly as the anchor.

Variants (name@batch):
    ours_eager     model.generate.Generator, no compile, no CUDA graph (the fallback path)
    ours_graph     decode step replayed from a CUDA graph
    ours_compile   per-block torch.compile inside the CUDA graph (on a CPU: compile only)
    hf_dynamic     transformers generate, default (dynamic) cache
    hf_static      transformers generate, static cache (compiles during its warm-up)
Ours use a fixed cache (cache_len = prompt + new tokens) so the warm-up call compiles and
captures the shapes the timed call runs. `same_prefix` is the mean number of leading tokens
equal to ours_eager's at the same batch: bf16 paths that round differently part ways at some
near-tie and then differ for good, but a correct path agrees for many tokens, a broken one for
none or one.

One JSON line per variant as it finishes (a failure prints its error and the rest still run),
all rows rewritten to --out after each, a ratio table last. --budget-s bounds the whole run: a
variant gets the time left (SIGALRM, then it is reported as timed out) and none starts without
15 s left. The order puts ours and hf_dynamic first; hf_static (minutes of compilation) last.

    python3 bench/generate.py --out FILE [--budget-s 150] [VARIANT@BATCH ...]
    python3 bench/generate.py --smoke          # CPU, tiny shape, every variant that runs there

Imports only torch, transformers, safetensors and this repository's model/ (no venv needed).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from report import print_rows  # noqa: E402

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
MIN_START_S = 15.0
WARMUP_TOKENS = 8


class Timeout(Exception):
    """The variant ran past the budget left when it started."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Timeout` in the main thread after `seconds` (checked between Python bytecodes, so
    a long kernel or compile step ends first)."""

    def expire(*_: object) -> None:
        raise Timeout(f"over the budget left ({seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(kind: str, model: Llama, prompt: torch.Tensor, new_tokens: int) -> tuple:
    """(warm-up seconds, timed seconds, tokens (batch, new_tokens), prefill seconds)."""
    cuda = prompt.device.type == "cuda"
    generator = Generator(
        model,
        compile=kind == "ours_compile",
        cuda_graph=cuda and kind != "ours_eager",
        cache_len=prompt.size(1) + new_tokens,
    )
    prompts = prompt.tolist()

    def call(n: int):
        return generator.generate(prompts, Sampling(max_new_tokens=n, eos_id=None))

    warm, _ = timed(call, WARMUP_TOKENS, prompt.device)
    seconds, result = timed(call, new_tokens, prompt.device)
    return warm, seconds, torch.tensor(result.tokens), result.prefill_s


def run_hf(kind: str, hf, prompt: torch.Tensor, new_tokens: int) -> tuple:
    """The anchor's calls: warm-up with 8 tokens, then the timed call."""
    kwargs = {"do_sample": False, "pad_token_id": 0}
    if kind == "hf_static":
        kwargs["cache_implementation"] = "static"
    mask = torch.ones_like(prompt)

    def call(n: int) -> torch.Tensor:
        out = hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **kwargs)
        return out[:, prompt.size(1) :]

    warm, _ = timed(call, WARMUP_TOKENS, prompt.device)
    seconds, tokens = timed(call, new_tokens, prompt.device)
    return warm, seconds, tokens.cpu(), None


def timed(fn: Callable, arg: int, device: torch.device) -> tuple[float, object]:
    synchronize(device)
    started = time.perf_counter()
    result = fn(arg)
    synchronize(device)
    return time.perf_counter() - started, result


def run_variant(name: str, models: tuple, args: argparse.Namespace, eager: dict) -> dict:
    kind, batch = name.split("@")
    batch = int(batch)
    if kind not in KINDS:
        raise ValueError(f"unknown variant {name!r}: kinds are {KINDS}")
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(batch)
    prompt = torch.randint(3, args.vocab, (batch, args.prompt), generator=generator).to(device)
    ours, hf = models
    if kind.startswith("hf") and isinstance(hf, Exception):
        raise RuntimeError(f"no HF model: {hf!r}")
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if kind.startswith("hf"):
        warm, seconds, tokens, prefill = run_hf(kind, hf, prompt, args.new_tokens)
    else:
        warm, seconds, tokens, prefill = run_ours(kind, ours, prompt, args.new_tokens)
    if kind == "ours_eager":
        eager[batch] = tokens
    reference = eager.get(batch)
    prefix = None if reference is None else same_prefix(tokens, reference)
    return {
        "variant": name,
        "batch": batch,
        "new_tokens_per_s": round(batch * args.new_tokens / seconds, 1),
        "per_seq_tok_s": round(args.new_tokens / seconds, 1),
        "seconds": round(seconds, 3),
        "prefill_s": None if prefill is None else round(prefill, 4),
        "warmup_s": round(warm, 1),
        "same_prefix": prefix,
        # torch.compile graphs made by this variant: ours_compile 1 (a block), else 0 (HF static:
        # its own count); more means recompiles
        "graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before,
        "roofline_b1_tok_s": args.roofline,
    }


def same_prefix(tokens: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean number of leading tokens equal to the reference's, per sequence (all of them when
    the two never part)."""
    differ = (tokens != reference).int()
    first = torch.where(differ.any(1), differ.argmax(1), differ.size(1))
    return round(first.float().mean().item(), 1)


def table(results: list[dict]) -> None:
    """One row per variant with its ratio to HF at the same batch (dynamic and static)."""
    by_name = {r["variant"]: r for r in results if "new_tokens_per_s" in r}
    rows = []
    for r in results:
        if r["variant"] not in by_name:
            rows.append((r["variant"], 0.0, 0, r.get("error") or r.get("skipped", "")))
            continue
        batch = r["batch"]
        notes = [f"{r['per_seq_tok_s']} tok/s per sequence"]
        for ref in ("hf_dynamic", "hf_static"):
            other = by_name.get(f"{ref}@{batch}")
            if other and not r["variant"].startswith("hf"):
                notes.append(f"x{r['new_tokens_per_s'] / other['new_tokens_per_s']:.1f} vs {ref}")
        if r["same_prefix"] is not None and not r["variant"].startswith("ours_eager"):
            notes.append(f"same first {r['same_prefix']} tokens as ours_eager")
        rows.append((r["variant"], r["new_tokens_per_s"], batch, "  ".join(notes)))
    print_rows(rows, "variant", "new tok/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("variants", nargs="*", help=f"default: {' '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, 16 new tokens")
    parser.add_argument("--budget-s", type=float, default=150.0, help="bound on the whole run")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--out", help="results JSON (default: a temporary file)")
    args = parser.parse_args()
    started = time.monotonic()

    config = LlamaConfig.preset("1.36B")
    args.device = "cuda"
    if args.smoke:
        config = LlamaConfig.preset("tiny", vocab_size=1024)
        args.device, args.prompt, args.new_tokens = "cpu", 8, 16
    args.vocab = config.vocab_size
    args.out = args.out or str(Path(tempfile.gettempdir()) / "generate_bench.json")
    variants = args.variants or (SMOKE_VARIANTS if args.smoke else DEFAULT_VARIANTS)
    device = torch.device(args.device)
    ours = build_ours(config, device)
    hf: object = None
    if any(v.startswith("hf") for v in variants):
        try:
            hf = build_hf(ours)
        except Exception as e:  # ours still run; the HF rows report this
            hf = e
            traceback.print_exc()
    models = (ours, hf)
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    args.roofline = round(3.0e12 / weight_bytes)  # the anchor's figure (3 TB/s)
    meta = {
        "torch": torch.__version__,
        "transformers": getattr(sys.modules.get("transformers"), "__version__", None),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "shape": {"dim": config.dim, "layers": config.n_layers, "heads": config.n_heads,
                  "ffn": config.ffn_hidden, "vocab": config.vocab_size},
        "dtype": str(ours.output.weight.dtype),
        "weight_gb": round(weight_bytes / 1e9, 2),
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "setup_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    print(json.dumps(meta), flush=True)

    results: list[dict] = []
    eager: dict[int, torch.Tensor] = {}
    for name in variants:
        left = args.budget_s - (time.monotonic() - started)
        if left < MIN_START_S:
            result = {"variant": name, "skipped": f"budget: {left:.0f} s left"}
        else:
            try:
                with time_limit(left):
                    result = run_variant(name, models, args, eager)
            except Exception as e:  # an OOM, compile error or timeout must not lose the rest
                result = {"variant": name, "error": repr(e)[:400]}
                print("".join(traceback.format_exc().splitlines(True)[-20:]), file=sys.stderr)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results.append(result)
        print(json.dumps(result), flush=True)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    table(results)
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
