"""Memory per GPU of a training run before it starts (`llamapipe plan memory`): what the
parameters, gradients, optimizer state and activations take, whether it fits, and if not the
smallest change that does.

What the trainer keeps (training/train.py, training/parallelize.py, training/optim.py), per
parameter, sharded over dp x tp:

- fp32 parameters: FSDP2's sharded copy is the optimizer's master (4 bytes);
- fp32 gradients: reduce-scattered in fp32 and kept sharded (4 bytes), all of them at the
  peak once a step accumulates more than one micro-batch (the paper's 4M-token batches do);
- AdamW's two fp32 moments (8 bytes);
- working copies: FSDP gathers a unit's parameters in bf16 (the block running, the one
  prefetched, and the final norm + output projection, never resharded) and holds one unit's
  unsharded gradients before the reduce-scatter; without FSDP (one GPU) autocast caches a
  bf16 copy of every matmul weight for the step.

Activations per layer, bytes, in units of s x b x h (sequence x micro-batch x dim), divided by
tp (Megatron tensor parallelism with sequence parallelism shards all of them):

- `off`: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models"), s b h (34 + 5 a s / h) without recompute. The model always runs attention through
  SDPA's flash kernels, which store no a x s x s scores (they are recomputed in backward:
  exactly Korthikanti's "selective recompute"), so the second term is 0 and `off` is their
  34 s b h. That is the trainer's compiled blocks (the H200 benchmark of 1.36B matches it,
  tests/test_plan_memory.py). Eager PyTorch keeps more, the norms' and SwiGLU's intermediates
  that torch.compile's partitioner recomputes: (10 h + 4 f) elements (f: SwiGLU width), counted
  tensor by tensor with autograd's saved-tensor hooks (the block input, both norms' normalized
  and weighted outputs 4h, rotated q and k and v 3h, the attention output, the residual after
  attention; w1 and w3's outputs 2f, SiLU's and the product's 2f; rotary keeps only its
  tables, so q and k before rotation are freed) and measured on CPU.
- `selective`: the trainer's own (training/parallelize.py `SAVED_OPS`) goes further than
  Korthikanti's: it keeps the matmul and attention outputs and reruns the element-wise ops:
  the block input, q k v (3h), the attention output, w1 and w3's outputs (2f), and in eager
  mode the outputs of wo and w2 too (compiled, the partitioner drops them: backward does not
  need them): (5 h + 2 f) elements compiled, (7 h + 2 f) eager.
- `full`: each block's input only (h elements; Korthikanti's full recompute, 2 s b h at 16 bit).
- While a checkpointed block runs backward its activations are rematerialized: one layer's
  `off` minus what it stored, on top.

Plus the logits (s b v / tp): the trainer's loss is not compiled, so it holds the logits
(activation dtype) and cross_entropy's fp32 log-probabilities, and in backward their fp32
gradients: 12 bytes on top of the logits' own at the peak, which is the top of backward.

Tensor parallelism is modeled (Megatron-style TP + SP, so a plan can say how much a 65B needs);
the trainer itself shards with FSDP over one dimension and has no TP yet. A plan fits when its
total is under the GPU's memory less `HEADROOM` (the CUDA context, NCCL buffers and allocator
fragmentation, which `max_memory_allocated` does not show).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

from model.config import LlamaConfig
from model.init import BLOCK_ROWS
from training.config import AC_MODES, RECIPES
from training.planning.hardware import Accelerator, accelerator
from training.planning.paper import TABLE_2_MODELS
from training.planning.tables import gib, text_table

HEADROOM = 0.10  # of the GPU's memory, kept free
MAX_TP = 8  # one node's NVLink domain (the paper's nodes are 8 x A100)


@dataclass(frozen=True)
class Mesh:
    """Data parallel (FSDP shards over it) x tensor parallel. Under HSDP (`training.mesh`), `dp`
    is the shard degree `dp_shard`: the replicas hold the same shards."""

    dp: int = 1
    tp: int = 1

    def __post_init__(self) -> None:
        if self.dp < 1 or self.tp < 1:
            raise ValueError(f"mesh sizes must be >= 1, got dp={self.dp}, tp={self.tp}")

    @property
    def gpus(self) -> int:
        return self.dp * self.tp

    @classmethod
    def parse(cls, text: str) -> Mesh:
        """A mesh from text such as "dp=256,tp=8" (a size left out is 1)."""
        sizes: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = re.fullmatch(r"(dp|tp)=(\d+)", part)
            if match is None or match[1] in sizes:
                raise ValueError(f"mesh {text!r}: use dp=N,tp=M")
            sizes[match[1]] = int(match[2])
        return cls(**sizes)

    def __str__(self) -> str:
        return f"dp={self.dp},tp={self.tp}"


@dataclass(frozen=True)
class Precision:
    """Bytes per element of what the trainer keeps."""

    master: int = 4  # fp32 parameters, the optimizer's master
    grad: int = 4  # fp32 gradients
    optimizer: int = 8  # AdamW's exp_avg and exp_avg_sq, fp32
    compute: int = 2  # bf16: FSDP's gathered parameters, autocast's weight copies
    activation: int = 2  # bf16 activations under autocast


GPU_PRECISION = Precision()
CPU_PRECISION = Precision(compute=4, activation=4)  # the trainer on CPU: fp32 throughout


@dataclass(frozen=True)
class MemorySpec:
    """One configuration to plan: a shape, a mesh, a GPU and the per-GPU batch."""

    name: str
    config: LlamaConfig
    mesh: Mesh = Mesh()
    gpu: str = "a100-80gb"
    seq_len: int = 2048
    micro_batch: int = 1
    ac: str = "selective"
    compiled: bool = True  # TrainConfig.compile: the blocks run under torch.compile
    accumulating: bool = True  # grad_accum > 1: every gradient is held at the peak
    precision: Precision = GPU_PRECISION

    def __post_init__(self) -> None:
        if self.ac not in AC_MODES:
            raise ValueError(f"activation checkpointing {self.ac!r}: choose from {AC_MODES}")

    @classmethod
    def preset(cls, name: str, **fields) -> MemorySpec:
        """A `LlamaConfig` preset at `seq_len`, micro-batch its recipe's unless given."""
        seq_len = fields.get("seq_len", cls.seq_len)
        fields.setdefault("micro_batch", RECIPES[name].micro_batch_size)
        return cls(name, LlamaConfig.preset(name, max_seq_len=seq_len), **fields)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU at the step's peak (the top of backward)."""

    spec: MemorySpec
    params: int
    grads: int
    optimizer: int
    working: int  # gathered bf16 units and unsharded gradients, or autocast's weight copies
    activations: int  # every layer's stored activations
    transient: int  # the peak's extra: logits and their gradients, or a recomputed block

    @property
    def total(self) -> int:
        parts = (self.params, self.grads, self.optimizer, self.working, self.activations)
        return sum(parts) + self.transient

    @property
    def accelerator(self) -> Accelerator:
        return accelerator(self.spec.gpu)

    @property
    def capacity(self) -> int:
        """Bytes a plan may use: the GPU's memory less `HEADROOM`."""
        return int(self.accelerator.memory_bytes * (1 - HEADROOM))

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def block_params(config: LlamaConfig) -> int:
    """One transformer block: wq, wk, wv, wo, w1, w2, w3 and two RMSNorm weights (one FSDP
    unit)."""
    d, f = config.dim, config.ffn_hidden
    return 4 * d * d + 3 * d * f + 2 * d


def layer_activation_bytes(spec: MemorySpec, ac: str | None = None) -> int:
    """Bytes one layer stores for backward under `ac` (default: the spec's), per GPU."""
    ac = ac or spec.ac
    sb, h, f = spec.seq_len * spec.micro_batch, spec.config.dim, spec.config.ffn_hidden
    if ac == "full":
        elements = h
    elif ac == "selective":
        elements = (5 if spec.compiled else 7) * h + 2 * f
    elif spec.compiled:
        elements = 17 * h  # Korthikanti's 34 s b h bytes at 16 bit, flash attention
    else:
        elements = 10 * h + 4 * f
    return _ceil_div(sb * elements * spec.precision.activation, spec.mesh.tp)


def logits_bytes(spec: MemorySpec) -> tuple[int, int]:
    """(held through backward, at the loss's backward): the logits and fp32 log-probabilities;
    then also the fp32 gradients of both."""
    elements = _ceil_div(spec.seq_len * spec.micro_batch * spec.config.vocab_size, spec.mesh.tp)
    held = elements * (spec.precision.activation + 4)
    return held, held + elements * 8


def working_bytes(spec: MemorySpec) -> int:
    """Parameters and gradients that exist unsharded for a while (see the module docstring)."""
    c, p, tp = spec.config, spec.precision, spec.mesh.tp
    output_unit = c.vocab_size * c.dim + c.dim
    if spec.mesh.dp == 1:  # no FSDP: autocast's bf16 copies of the matmul weights
        if p.compute == p.master:
            return 0
        matmuls = c.num_params(include_embedding=False) - 2 * c.dim * c.n_layers - c.dim
        return _ceil_div(matmuls * p.compute, tp)
    block = block_params(c)
    gathered = p.compute * (2 * block + output_unit)
    grads = (p.compute + (p.grad if p.grad != p.compute else 0)) * max(block, output_unit)
    return _ceil_div(gathered + grads, tp)


def plan_memory(spec: MemorySpec) -> MemoryPlan:
    c, p, mesh = spec.config, spec.precision, spec.mesh
    shard = _ceil_div(c.num_params(), mesh.gpus)
    grads = shard if spec.accumulating else _ceil_div(c.vocab_size * c.dim, mesh.gpus)
    stored = layer_activation_bytes(spec)
    recompute = 0 if spec.ac == "off" else layer_activation_bytes(spec, "off") - stored
    held, peak = logits_bytes(spec)
    return MemoryPlan(
        spec=spec,
        params=shard * p.master,
        grads=grads * p.grad,
        optimizer=shard * p.optimizer,
        working=working_bytes(spec),
        activations=c.n_layers * stored,
        transient=max(peak, held + recompute),
    )


# --- Fitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A way to make a plan fit, and how far it is from what was asked."""

    plan: MemoryPlan
    changes: tuple[str, ...]
    asked: MemorySpec

    @property
    def cost(self) -> tuple[int, int, int, int]:
        """Fewest knobs first; then less recomputation (full AC reruns the forward), less
        tensor parallelism (communication every layer), fewer halvings of the micro-batch."""
        asked, got = self.asked, self.plan.spec
        return (
            len(self.changes),
            AC_MODES.index(got.ac) - AC_MODES.index(asked.ac),
            got.mesh.tp.bit_length() - asked.mesh.tp.bit_length(),
            asked.micro_batch.bit_length() - got.micro_batch.bit_length(),
        )


def smallest_fitting_change(spec: MemorySpec) -> Change | None:
    """The fitting variant of `spec` with the smallest change to AC mode (towards more
    recompute), micro-batch (halved down to 1) and tp (doubled up to `MAX_TP`, dp shrinking
    so the GPU count stays); None when nothing in that range fits. A fitting spec is its own
    answer, with no changes."""
    acs = AC_MODES[AC_MODES.index(spec.ac) :]
    batches = _halvings(spec.micro_batch)
    tps = [t for t in _doublings(spec.mesh.tp) if t <= max(MAX_TP, spec.mesh.tp)]
    fitting = []
    for ac, batch, tp in itertools.product(acs, batches, tps):
        if spec.mesh.gpus % tp:
            continue
        mesh = Mesh(spec.mesh.gpus // tp, tp)
        candidate = replace(spec, ac=ac, micro_batch=batch, mesh=mesh)
        plan = plan_memory(candidate)
        if plan.fits:
            fitting.append(Change(plan, _describe(spec, candidate), spec))
    return min(fitting, key=lambda c: c.cost, default=None)


def _halvings(n: int) -> list[int]:
    out = [n]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


def _doublings(n: int) -> list[int]:
    return [n * 2**i for i in range(MAX_TP.bit_length())]


def _describe(asked: MemorySpec, got: MemorySpec) -> tuple[str, ...]:
    changes = []
    if got.ac != asked.ac:
        changes.append(f"AC {asked.ac} -> {got.ac}")
    if got.micro_batch != asked.micro_batch:
        changes.append(f"micro-batch {asked.micro_batch} -> {got.micro_batch}")
    if got.mesh != asked.mesh:
        changes.append(f"mesh {asked.mesh} -> {got.mesh}")
    return tuple(changes)


# --- Reports --------------------------------------------------------------------------------


def breakdown_rows(specs: list[MemorySpec]) -> list[tuple]:
    rows = []
    for spec in specs:
        plan = plan_memory(spec)
        rows.append(
            (
                spec.ac,
                spec.seq_len,
                spec.micro_batch,
                gib(plan.params),
                gib(plan.grads),
                gib(plan.optimizer),
                gib(plan.working),
                gib(plan.activations),
                gib(plan.transient),
                gib(plan.total),
                "yes" if plan.fits else "no",
            )
        )
    return rows


def render_breakdown(spec: MemorySpec, micro_batches: list[int], seq_lens: list[int]) -> str:
    """Every AC mode x sequence length x micro-batch of one model on one mesh, in GiB/GPU."""
    specs = [
        replace(spec, ac=ac, seq_len=s, micro_batch=b)
        for ac in AC_MODES
        for s in seq_lens
        for b in micro_batches
    ]
    plan = plan_memory(spec)
    head = (
        f"{spec.name} ({plan.spec.config.num_params():,} parameters) on {spec.mesh} "
        f"({spec.mesh.gpus} x {plan.accelerator.description}, "
        f"{plan.accelerator.memory_gib:.1f} GiB; fits under {gib(plan.capacity)} GiB), GiB per GPU"
    )
    headers = ("AC", "seq", "mb", "params", "grads", "adam", "working", "activ.", "peak+")
    headers += ("total", "fits")
    return f"{head}\n{text_table(headers, breakdown_rows(specs))}\n{init_line(spec)}"


def init_line(spec: MemorySpec) -> str:
    """What initialization holds on one rank: its fp32 shard of the parameters and one
    64-row block being drawn (model/init.py), never the full model rank 0 once built."""
    config = spec.config
    full = config.num_params() * 4
    widest = max(config.dim, config.ffn_hidden)  # the longest row: w2 (dim x ffn_hidden)
    block = BLOCK_ROWS * widest * 4
    shard = plan_memory(spec).params
    return (
        f"initialization: each rank draws only its rows (model/init.py): {gib(shard)} GiB of "
        f"parameters + one {BLOCK_ROWS}-row block ({block / 2**20:.1f} MiB); the full model, "
        f"{gib(full)} GiB in fp32, is never on one rank"
    )


def render_fits(spec: MemorySpec, models: tuple[str, ...] = TABLE_2_MODELS) -> str:
    """Whether each model fits `spec`'s GPU and mesh at its recipe's micro-batch, and if not
    the smallest change that does."""
    rows = []
    for name in models:
        asked = MemorySpec.preset(
            name,
            mesh=spec.mesh,
            gpu=spec.gpu,
            seq_len=spec.seq_len,
            ac=spec.ac,
            compiled=spec.compiled,
            precision=spec.precision,
        )
        plan = plan_memory(asked)
        change = smallest_fitting_change(asked)
        if plan.fits:
            verdict = "fits"
        elif change is None:
            verdict = f"does not fit at tp <= {MAX_TP}: needs more GPUs or pipeline parallelism"
        else:
            verdict = "; ".join(change.changes) + f" ({gib(change.plan.total)} GiB)"
        rows.append((name, asked.ac, asked.micro_batch, gib(plan.total), verdict))
    headers = ("model", "AC", "mb", "GiB/GPU", f"on {spec.mesh} x {spec.gpu}")
    return text_table(headers, rows)


NOTES = (
    "params/grads/adam: fp32, sharded over dp x tp (FSDP2, as the trainer keeps them); working: "
    "FSDP's gathered bf16 units and one unit's unsharded gradients;\nactiv.: every layer's stored "
    "activations (Korthikanti et al. 2022; off = their 34 sbh with flash attention); peak+: logits "
    "and their gradients, or a recomputed block.\ntp is planned as Megatron TP + sequence "
    "parallelism; the trainer shards with FSDP only."
)
