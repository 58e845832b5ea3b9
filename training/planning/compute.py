"""Compute and carbon of a pre-training run before it starts (`llamapipe plan run`), and the
paper's thesis as numbers.

From a model, a token count, a GPU count and a throughput: optimizer steps at the batch size,
FLOPs (6ND, N without the input embedding, a lookup, plus attention's 12 x layers x dim x seq
per token: `LlamaConfig.flops_per_token`), GPU-hours, days on the cluster, the MFU the
throughput implies, energy and tCO2eq by the paper's method (training/planning/carbon.py).

The throughput is stated (`--tokens-per-gpu-second`, as the paper states 380 for 65B) or, when
not, read from this project's own benchmark of that GPU and model (bench/train_gpu.py's JSON
in bench/results/), and said to be that measurement; with neither, the plan refuses rather
than guess.

The thesis (the paper's section 1): for a training budget, Hoffmann et al.'s compute-optimal
model has about 20 tokens per parameter; LLaMA trains smaller models on more tokens, because
what is paid once in training is saved on every token of inference. `size_choices` gives both
sizes for each budget and their inference FLOPs per token.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from model.config import LlamaConfig
from training.config import PAPER_BATCH_TOKENS
from training.planning.carbon import CarbonMethod, Footprint, footprint
from training.planning.hardware import Accelerator, accelerator, accelerator_for_device_name
from training.planning.paper import (
    CHINCHILLA_TOKENS_PER_PARAM,
    PAPER_KG_CO2_PER_KWH,
    PAPER_PUE,
    TABLE_2_MODELS,
    TABLE_2_TOKENS,
    TABLE_15,
)
from training.planning.tables import count, energy, text_table

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
TRAINER_AC = "selective"  # TrainConfig's default: the benchmark variant a run would match


class NoThroughput(ValueError):
    """No tokens/s was stated and this project has no measurement for the GPU and model."""


@dataclass(frozen=True)
class Throughput:
    """Tokens per second per GPU and where the number comes from."""

    tokens_per_gpu_s: float
    source: str


@dataclass(frozen=True)
class RunSpec:
    """What `plan run` is told. `tokens_per_gpu_s` None: look for a measurement."""

    model: str
    tokens: int
    gpus: int
    gpu: str
    tokens_per_gpu_s: float | None = None
    seq_len: int = 2048
    batch_tokens: int = PAPER_BATCH_TOKENS
    power_w: float | None = None  # None: the GPU's nominal power (400 W for an A100)
    pue: float = PAPER_PUE
    kg_co2_per_kwh: float = PAPER_KG_CO2_PER_KWH
    results_dir: Path = field(default=BENCH_RESULTS, compare=False)


@dataclass(frozen=True)
class RunPlan:
    """Steps, FLOPs, time and footprint of one run."""

    spec: RunSpec
    config: LlamaConfig
    accelerator: Accelerator
    throughput: Throughput
    footprint: Footprint

    @property
    def params(self) -> int:
        return self.config.num_params()

    @property
    def steps(self) -> int:
        """Optimizer steps, rounded up as `TrainConfig.resolve` rounds them."""
        return -(-self.spec.tokens // self.spec.batch_tokens)

    @property
    def flops_6nd(self) -> int:
        return 6 * self.config.num_params(include_embedding=False) * self.spec.tokens

    @property
    def flops_attention(self) -> int:
        c = self.config
        return 12 * c.n_layers * c.dim * self.spec.seq_len * self.spec.tokens

    @property
    def flops(self) -> int:
        return self.flops_6nd + self.flops_attention

    @property
    def gpu_hours(self) -> float:
        return self.spec.tokens / self.throughput.tokens_per_gpu_s / 3600

    @property
    def days(self) -> float:
        return self.gpu_hours / self.spec.gpus / 24

    @property
    def mfu(self) -> float | None:
        """The model-FLOPs utilization the throughput implies (None: unknown peak)."""
        peak = self.accelerator.peak_bf16_flops
        tps = self.throughput.tokens_per_gpu_s
        return None if peak is None else self.flops / self.spec.tokens * tps / peak


def plan_run(spec: RunSpec) -> RunPlan:
    """The plan of `spec`; raises `NoThroughput` when no tokens/s is stated or measured."""
    config = LlamaConfig.preset(spec.model, max_seq_len=spec.seq_len)
    gpu = accelerator(spec.gpu)
    if spec.tokens_per_gpu_s is not None:
        throughput = Throughput(spec.tokens_per_gpu_s, "stated (--tokens-per-gpu-second)")
    else:
        throughput = measured_throughput(gpu, spec.model, spec.seq_len, spec.results_dir)
    power = spec.power_w if spec.power_w is not None else gpu.nominal_power_w
    method = CarbonMethod(power, spec.pue, spec.kg_co2_per_kwh)
    hours = spec.tokens / throughput.tokens_per_gpu_s / 3600
    return RunPlan(spec, config, gpu, throughput, footprint(hours, method))


def measured_throughput(
    gpu: Accelerator, model: str, seq_len: int, results_dir: Path = BENCH_RESULTS
) -> Throughput:
    """Tokens/s of this project's benchmark (bench/train_gpu.py, one GPU) for this GPU, model
    shape and sequence length, in the trainer's AC mode and default bf16 (the fastest such
    variant; float8 rows are a different run)."""
    shape = LlamaConfig.preset(model)
    for path in sorted(results_dir.glob("train_gpu_*.json")):
        meta, results = _bench_file(path)
        device = accelerator_for_device_name(meta.get("device", ""))
        if device is None or device.key != gpu.key or meta.get("seq") != seq_len:
            continue
        if meta.get("shape") != _bench_shape(shape):
            continue
        rows = [
            r
            for r in results
            if r.get("ac") == TRAINER_AC and r.get("tokens_per_s") and not r.get("float8")
        ]
        if rows:
            best = max(rows, key=lambda r: r["tokens_per_s"])
            source = (
                f"measured by this project's benchmark (bench/train_gpu.py): {path.name}, "
                f"variant {best['variant']}, {meta['device']}, batch {best['batch']} x "
                f"{best['seq']}, one GPU, no communication"
            )
            return Throughput(float(best["tokens_per_s"]), source)
    raise NoThroughput(
        f"no tokens/s given and no measurement of {model} on {gpu.key} at seq {seq_len} in "
        f"{results_dir} (bench/train_gpu.py writes them); pass --tokens-per-gpu-second"
    )


def _bench_file(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data.get("meta", {}), data.get("results", [])


def _bench_shape(config: LlamaConfig) -> dict:
    """The `shape` bench/train_gpu.py records for a config."""
    return {
        "dim": config.dim,
        "layers": config.n_layers,
        "heads": config.n_heads,
        "ffn": config.ffn_hidden,
        "vocab": config.vocab_size,
    }


# --- The thesis: smaller models trained longer --------------------------------------------


def inference_flops_per_token(config: LlamaConfig, context: int) -> int:
    """Forward FLOPs to generate one token after `context` tokens: 2 per weight of every matmul
    (the input embedding is a lookup) plus attention's scores and weighted values over the
    context, 4 x dim x context per layer."""
    attention = 4 * config.n_layers * config.dim * context
    return 2 * config.num_params(include_embedding=False) + attention


@dataclass(frozen=True)
class SizeChoice:
    """A training budget spent LLaMA's way (this model, these tokens) and Chinchilla's way
    (about 20 tokens per parameter). The budget is 6 x params x tokens (Hoffmann et al.'s C)."""

    model: str
    params: int
    tokens: int

    @property
    def budget_flops(self) -> float:
        return 6 * self.params * self.tokens

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def optimal_params(self) -> float:
        """N with C = 6 N (20 N)."""
        return math.sqrt(self.budget_flops / (6 * CHINCHILLA_TOKENS_PER_PARAM))

    @property
    def optimal_tokens(self) -> float:
        return CHINCHILLA_TOKENS_PER_PARAM * self.optimal_params

    @property
    def inference_saving(self) -> float:
        """How many times cheaper each generated token is with LLaMA's model than with the
        compute-optimal one (2N FLOPs per token on both sides)."""
        return self.optimal_params / self.params


def size_choice(model: str, tokens: int) -> SizeChoice:
    return SizeChoice(model, LlamaConfig.preset(model).num_params(), tokens)


def size_choices() -> list[SizeChoice]:
    """Table 2's models at their own training tokens."""
    return [size_choice(m, TABLE_2_TOKENS[m]) for m in TABLE_2_MODELS]


# --- Reports --------------------------------------------------------------------------------


def render_run_plan(plan: RunPlan) -> str:
    spec, fp = plan.spec, plan.footprint
    mfu = "-" if plan.mfu is None else f"{100 * plan.mfu:.1f}%"
    rows = [
        ("model", f"{spec.model} ({count(plan.params)} parameters)"),
        ("tokens", f"{count(spec.tokens)} ({spec.tokens:,})"),
        ("batch", f"{spec.batch_tokens:,} tokens, sequences of {spec.seq_len}"),
        ("steps", f"{plan.steps:,}"),
        ("FLOPs, 6ND", f"{plan.flops_6nd:.3e} (N = params without the input embedding)"),
        ("FLOPs, attention", f"{plan.flops_attention:.3e} (12 x layers x dim x seq x D)"),
        ("FLOPs, total", f"{plan.flops:.3e}"),
        ("GPUs", f"{spec.gpus:,} x {plan.accelerator.description}"),
        ("throughput", f"{plan.throughput.tokens_per_gpu_s:,.0f} tokens/s/GPU"),
        ("  source", plan.throughput.source),
        ("implied MFU", mfu),
        ("GPU-hours", f"{plan.gpu_hours:,.0f}"),
        ("days", f"{plan.days:.1f}"),
        ("power", f"{fp.method.power_w:.0f} W per GPU x PUE {fp.method.pue}"),
        ("energy", energy(fp.energy_kwh)),
        ("carbon", f"{fp.tco2eq:,.4g} tCO2eq at {fp.method.kg_co2_per_kwh} kg/kWh"),
    ]
    run = text_table(("run", ""), rows)
    choices = size_choices()
    choice = size_choice(spec.model, spec.tokens)
    if choice not in choices:
        choices.append(choice)
    return "\n\n".join([run, render_size_choices(choices, spec.seq_len)])


def render_size_choices(choices: list[SizeChoice], context: int = 2048) -> str:
    """The thesis table: each budget, LLaMA's size beside the compute-optimal one."""
    rows = []
    for c in choices:
        config = LlamaConfig.preset(c.model)
        rows.append(
            (
                f"{c.model} @ {count(c.tokens)}",
                f"{c.budget_flops:.2e}",
                f"{count(c.params)} x {c.tokens_per_param:.0f}",
                f"{inference_flops_per_token(config, context) / 1e9:.1f}",
                f"{count(c.optimal_params)} x {count(c.optimal_tokens)}",
                f"{2 * c.optimal_params / 1e9:.1f}",
                f"{c.inference_saving:.1f}x",
            )
        )
    headers = (
        "budget",
        "6ND FLOPs",
        "LLaMA: params x tok/param",
        f"GFLOPs/token (ctx {context})",
        "20 tok/param: params x tokens",
        "GFLOPs/token (2N)",
        "inference saving",
    )
    note = (
        "The thesis (section 1): for each training budget, the compute-optimal model "
        "(Hoffmann et al. 2022, ~20 tokens/parameter)\nis larger; LLaMA trains a smaller one "
        "longer, so every token of inference costs less."
    )
    return note + "\n" + text_table(headers, rows)


def render_table15(method: CarbonMethod | None = None) -> str:
    """Table 15's LLaMA rows recomputed from their GPU-hours, beside the printed values."""
    method = method or CarbonMethod()
    rows = []
    for row in TABLE_15:
        fp = footprint(row.gpu_hours, method)
        tps = TABLE_2_TOKENS[row.model] / (row.gpu_hours * 3600)
        rows.append(
            (
                row.model,
                f"{row.gpu_hours:,}",
                f"{fp.energy_mwh:.1f}",
                row.mwh,
                f"{fp.tco2eq:.1f}",
                row.tco2eq,
                f"{tps:,.0f}",
            )
        )
    headers = ("model", "GPU-hours", "MWh", "paper", "tCO2eq", "paper", "implied tok/s/GPU")
    method_line = (
        f"Table 15, by the paper's method: GPU-hours x {method.power_w:.0f} W x PUE "
        f"{method.pue}, x {method.kg_co2_per_kwh} kg CO2eq/kWh"
    )
    return method_line + "\n" + text_table(headers, rows)
