"""The trainer that torchrun runs: LLaMA pre-training on `tokenized_shards`.

    python -m training.train --config run.json                         # one process
    torchrun --standalone --nproc-per-node 8 -m training.train --config run.json
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 -m training.train --config run.json

One process per device. A process group (NCCL on GPUs, Gloo on CPUs) is created only when
WORLD_SIZE > 1; the ranks then form the mesh of `training.mesh` (`tensor_parallel` ranks of
tensor and sequence parallelism inside, FSDP2 or HSDP over the data-parallel ranks outside), on
GPUs and CPUs alike (Gloo runs the collectives, which is how the tests exercise the distributed
paths).

Precision: fp32 master weights and optimizer state everywhere. On GPU, matmuls run in bf16
(autocast; FSDP also gathers parameters in bf16 and reduces gradients in fp32); on CPU all is
fp32. Loss and softmax are always fp32.

Weights start identical for every world size and device: each rank fills only its own shard,
in place, with the block-wise draws of `model.init` (a function of seed, parameter name and row
block, drawn on the CPU), which are bit for bit those of `Llama(config, seed=seed)` in one
process. No rank ever holds the full model (65B included); the model is built on the meta device.

The step: `grad_accum` micro-batches per rank (from `global_batch_tokens`; gradients are
reduce-scattered after each, which keeps only sharded gradients in memory), clip to
`grad_clip`, AdamW, the warmup-cosine schedule. A step whose loss or gradient norm is not
finite (on any rank) is not applied: gradients are dropped, its batch and schedule slot are
consumed, it is counted as skipped. `max_bad_steps` in a row stop the run (exit 3) without a
checkpoint, so the last one is the last good state.

Preemption: SIGTERM sets a flag; at the next step boundary (agreed by all ranks) the run saves
a checkpoint, writes result.json with status "preempted" and exits 143 (128 + SIGTERM, what a
scheduler expects of a process it terminated), so launchers see "not finished" and requeue.
Relaunching with the same output_dir resumes from `checkpoints/latest` (model, optimizer,
schedule as saved, data position, counters; another world size or micro-batch size is fine).
DataLoader workers ignore SIGTERM (training/data.py), so a signal sent to the whole
process group or job step reaches only the trainer. The checkpoint must finish within the
scheduler's grace period (torchrun: 30 s before SIGKILL; Slurm: KillWait; Kubernetes:
terminationGracePeriodSeconds).

Exit codes: 0 completed, 143 preempted, 3 diverged, 1 any other error.

Dagster Pipes: when launched by Dagster (DAGSTER_PIPES_CONTEXT set), rank 0 alone opens the
channel, sends progress lines as Pipes logs and, on completion, reports the materialization
with the final metrics. Other ranks never open it.

Held-out curves: every `eval_every` steps and at the last, all ranks score the validation split
together (training/evaluation/heldout.py `TrainingCurves`); that step's record carries it.
With `eval_suites`, rank 0 also runs the paper's suites on every checkpoint it writes
(training/evaluation/suite_curves.py), into `suites.jsonl`.

Long because the run loop and its ways out (completion, preemption, divergence) and in (resume)
are one state machine over the same counters, checked best when read in one place.

Output directory: checkpoints/ (see training/checkpoint.py), metrics.jsonl and tensorboard/
(training/metrics.py), and result.json, written by rank 0 when the process ends its run:
status (completed | preempted | diverged), steps, final_loss (of the last applied step),
tokens_seen, mean_tokens_per_s and mfu (this process's steps after its first, which carries
compilation), skipped_steps, last_checkpoint, world_size, mesh, model, output_dir, error, and what
the launch consumed (training/planning/usage.py): accelerator_hours, energy_kwh, tco2eq,
power_w with its power_source (NVML or nominal), pue, kg_co2_per_kwh.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from model import Llama, LlamaConfig
from training.checkpoint import Location, latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import LoaderConfig, TokenLoader, shards_manifest
from training.evaluation.heldout import Ranks, TrainingCurves
from training.evaluation.suite_curves import SuiteCurves
from training.mesh import MeshShape
from training.metrics import MetricsLogger, mfu, peak_flops
from training.optim import build_optimizer, build_scheduler
from training.parallelize import apply_ac, apply_compile, apply_float8, apply_fsdp, apply_tp
from training.planning.usage import UsageMeter
from training.run_files import RunFiles

if TYPE_CHECKING:
    from dagster_pipes import PipesContext

PREEMPTED_EXIT_CODE = 143
DIVERGED_EXIT_CODE = 3
PIPES_CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"  # set by Dagster's launchers
# Fault injection, for tests only: comma-separated step numbers (1-based) whose loss is made NaN.
FAULT_NAN_STEPS_ENV = "LLAMAPIPE_FAULT_NAN_STEPS"


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps."""


@dataclass(frozen=True)
class Runtime:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: torch.device
    mesh: MeshShape

    @property
    def dp_rank(self) -> int:
        """The data-parallel rank: which batches this process reads."""
        return self.mesh.dp_rank(self.rank)


@dataclass
class TrainState:
    """Progress counters, saved in every checkpoint."""

    step: int = 0  # optimizer steps done (skipped ones included)
    tokens_seen: int = 0
    skipped_steps: int = 0
    last_loss: float | None = None


def init_runtime(config: TrainConfig) -> Runtime:
    """Device from LOCAL_RANK; a process group when torchrun started more than one process; the
    mesh from the config's parallel degrees."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    kind = config.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    mesh = MeshShape.of(world_size, config.tensor_parallel, config.data_parallel_replicate)
    return Runtime(rank, world_size, device, mesh)


def build_model(config: TrainConfig, model_config: LlamaConfig, runtime: Runtime) -> Llama:
    """The network on the meta device, laid out on the run's mesh (TP, then float8, AC, compile,
    then FSDP or HSDP over the data-parallel ranks), then given uninitialized storage on the
    device (`initialize_weights` or a checkpoint fills it)."""
    shape = runtime.mesh
    shape.check(model_config, config.seq_len)
    with torch.device("meta"):
        model = Llama(model_config)
    mesh = shape.build(runtime.device.type) if runtime.world_size > 1 else None
    if shape.tp > 1:
        apply_tp(model, mesh["tp"])
    if config.float8:
        apply_float8(model)
    apply_ac(model, config.activation_checkpointing)
    if config.compile:
        apply_compile(model)
    if shape.dp > 1:
        dp_mesh = mesh["dp_shard"] if shape.dp_replicate == 1 else mesh["dp_replicate", "dp_shard"]
        cuda = runtime.device.type == "cuda"
        apply_fsdp(
            model,
            dp_mesh,
            param_dtype=torch.bfloat16 if cuda else None,
            reduce_dtype=torch.float32 if cuda else None,
        )
    model.to_empty(device=runtime.device)
    return model


def initialize_weights(model: Llama, seed: int) -> None:
    """The weights of `Llama(model.config, seed=seed)`, whatever the world size and device: each
    rank draws only the rows of its shards (`model.init`), so none holds the full model and no
    collective is needed."""
    model.init_weights(seed=seed)


def fault_nan_steps() -> set[int]:
    value = os.environ.get(FAULT_NAN_STEPS_ENV, "")
    return {int(s) for s in value.split(",") if s.strip()}


class SigtermFlag:
    """Records SIGTERM instead of dying, while the context is open."""

    def __init__(self) -> None:
        self.raised = False

    def __enter__(self) -> SigtermFlag:
        self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.raised = True

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)


@dataclass
class Meter:
    """Tokens, seconds and applied-step losses over a span of steps (a log window, a session)."""

    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    def add(self, tokens: int, seconds: float, loss: float | None) -> None:
        self.tokens += tokens
        self.seconds += seconds
        if loss is not None:
            self.losses.append(loss)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None

    @property
    def mean_loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None


class Trainer:
    """Model, optimizer, schedule and loader of one run, built from a `TrainConfig` (resolved:
    the preset's rate, steps and micro-batch where the config says 0) and resumed from the
    output directory's latest checkpoint when there is one."""

    def __init__(
        self, config: TrainConfig, runtime: Runtime, echo: Callable[[str], None] = print
    ) -> None:
        config = config.resolve()
        self.config, self.runtime, self.echo = config, runtime, echo
        self.output = config.output_dir
        self.files = RunFiles(config.output_dir)
        self.main = runtime.rank == 0
        if self.main:
            self.files.pull()
        manifest = shards_manifest(config.data_dir)
        vocab_size = config.vocab_size or manifest.tokenizer.vocab_size
        self.model_config = LlamaConfig.preset(
            config.model, vocab_size=vocab_size, max_seq_len=config.seq_len
        )
        self.grad_accum = config.grad_accum(runtime.mesh.dp)
        self.batch_tokens = config.micro_batch_tokens(runtime.mesh.dp) * self.grad_accum
        cuda = runtime.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

        self.model = build_model(config, self.model_config, runtime)
        self.optimizer = build_optimizer(
            self.model,
            config.lr,
            weight_decay=config.weight_decay,
            betas=(config.adam_beta1, config.adam_beta2),
        )
        self.scheduler = build_scheduler(
            self.optimizer, config.max_steps, config.warmup_steps, config.min_lr_ratio
        )
        loader_config = LoaderConfig(
            seq_len=config.seq_len,
            batch_size=config.micro_batch_size,
            seed=config.seed,
            num_workers=config.loader_workers,
            pin_memory=cuda,
        )
        self.loader = TokenLoader(
            config.data_dir, "train", loader_config, runtime.dp_rank, runtime.mesh.dp
        )
        self.state = TrainState()
        self.checkpoint = latest_checkpoint(self.output)
        if self.checkpoint is None:
            initialize_weights(self.model, config.seed)
        else:
            self._resume(self.checkpoint)
        mesh = runtime.mesh
        ranks = Ranks(runtime.dp_rank, mesh.dp, runtime.rank % mesh.tp, mesh.tp)
        self.curves = TrainingCurves(config, manifest, ranks, echo)
        self.suite_curves = SuiteCurves(config, self.main, self.files.local, runtime.device)
        self.flops_per_token = self.model_config.flops_per_token(config.seq_len)
        self.peak = peak_flops(runtime.device)
        self.session = Meter()  # throughput of this process's steps after its first
        self.usage = UsageMeter.start(runtime.device, runtime.world_size)  # GPU-hours, energy

    def _resume(self, path: Location) -> None:
        saved = load_checkpoint(path, self.model, self.optimizer)
        self.state = TrainState(**saved["state"])
        self.loader.load_state_dict(saved["loader"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.main:
            self.echo(f"resumed from {path} at step {self.state.step}")

    def save(self) -> None:
        trainer_state = {
            "state": dataclasses.asdict(self.state),
            "loader": self.loader.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "config": dataclasses.asdict(self.config),
            "model_config": dataclasses.asdict(self.model_config),
            "world_size": self.runtime.world_size,
            "mesh": dataclasses.asdict(self.runtime.mesh),
        }
        if self.main:  # the metrics up to this step reach a store before `latest` moves
            self.files.push()
        self.checkpoint = save_checkpoint(
            self.output,
            self.state.step,
            self.model,
            self.optimizer,
            trainer_state,
            self.config.keep_checkpoints,
        )

    def step(self, batches: Iterator, inject_nan: bool, stop_requested: bool) -> tuple:
        """One optimizer step over `grad_accum` micro-batches. Returns (mean loss over ranks,
        gradient norm, whether any rank asked to stop); the update is applied only when both
        numbers are finite."""
        device = self.runtime.device
        loss_sum = torch.zeros((), device=device)
        for _ in range(self.grad_accum):
            inputs, targets = next(batches)
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with self.autocast:
                logits = self.model(inputs)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
            loss = loss / self.grad_accum
            if inject_nan:
                loss = loss * math.nan
            loss.backward()
            loss_sum += loss.detach()
        max_norm = self.config.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if isinstance(grad_norm, DTensor):
            grad_norm = grad_norm.full_tensor()
        # The step's one host sync: loss summed over ranks, SIGTERM votes, the (global) norm.
        shared = torch.stack([loss_sum, torch.tensor(float(stop_requested), device=device)])
        if self.runtime.world_size > 1:
            dist.all_reduce(shared)
        loss_total, stop_votes, norm = torch.cat([shared, grad_norm.view(1)]).tolist()
        loss = loss_total / self.runtime.world_size
        if math.isfinite(loss) and math.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss, norm, stop_votes > 0

    def record(
        self, window: Meter, lr: float, grad_norm: float, heldout: dict | None = None
    ) -> dict:
        """The step's metrics record; `heldout` when the step evaluated."""
        tokens_per_s = window.tokens_per_s
        return {
            "step": self.state.step,
            "loss": window.mean_loss,
            "lr": lr,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
            "tokens_per_s": tokens_per_s,
            "mfu": self.mfu(tokens_per_s),
            "tokens_seen": self.state.tokens_seen,
            "skipped_steps": self.state.skipped_steps,
            "epoch": self.loader.epoch,
            **({"heldout": heldout} if heldout else {}),
        }

    def mfu(self, tokens_per_s: float | None) -> float | None:
        if tokens_per_s is None:
            return None
        return mfu(self.flops_per_token, tokens_per_s, self.peak, self.runtime.world_size)

    def result(self, status: str, error: str | None = None) -> dict:
        return {
            "status": status,
            "steps": self.state.step,
            "max_steps": self.config.max_steps,
            "final_loss": self.state.last_loss,
            "tokens_seen": self.state.tokens_seen,
            "mean_tokens_per_s": self.session.tokens_per_s,
            "mfu": self.mfu(self.session.tokens_per_s),
            "skipped_steps": self.state.skipped_steps,
            "last_checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "world_size": self.runtime.world_size,
            "mesh": str(self.runtime.mesh),
            "model": self.config.model,
            "output_dir": str(self.output),
            "error": error,
            **self.usage.report(),  # accelerator_hours, energy_kwh, tco2eq, power and its source
        }

    def run(self) -> dict:
        """Train to `max_steps` or preemption; return the result (also in result.json)."""
        config, state = self.config, self.state
        logger = None
        if self.main:
            logger = MetricsLogger(self.files.local, config.max_steps, state.step, self.echo)
        nan_steps = fault_nan_steps()
        window, bad_streak, status, first_step_done = Meter(), 0, "completed", False
        batches = iter(self.loader)
        self.model.train()
        with SigtermFlag() as sigterm:
            while state.step < config.max_steps:
                started = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]
                inject_nan = state.step + 1 in nan_steps
                loss, grad_norm, preempted = self.step(batches, inject_nan, sigterm.raised)
                finite = math.isfinite(loss) and math.isfinite(grad_norm)
                bad_streak = 0 if finite else bad_streak + 1
                state.skipped_steps += not finite
                state.last_loss = loss if finite else state.last_loss
                state.step += 1
                state.tokens_seen += self.batch_tokens
                seconds = time.perf_counter() - started
                window.add(self.batch_tokens, seconds, loss if finite else None)
                if first_step_done:  # the first step carries compilation and warm-up
                    self.session.add(self.batch_tokens, seconds, None)
                first_step_done = True

                diverged = bad_streak >= config.max_bad_steps
                done = state.step == config.max_steps
                heldout = None
                if not (preempted or diverged) and self.curves.due(state.step, done):
                    heldout = self.curves.evaluate(self.model, self.autocast)
                logged = state.step % config.log_interval == 0 or done or preempted or diverged
                if logged or heldout:
                    if logger:
                        logger.log(self.record(window, lr, grad_norm, heldout))
                    window = Meter()
                if diverged:
                    error = (
                        f"{bad_streak} consecutive steps (to step {state.step}) had a "
                        "non-finite loss or gradient norm; stopped. The last checkpoint "
                        f"({self.checkpoint}) holds the last good state."
                    )
                    self._finish(logger, self.result("diverged", error))
                    raise TrainingDiverged(error)
                if done or preempted or state.step % config.checkpoint_interval == 0:
                    self.save()
                    if not preempted:
                        self.suite_curves.evaluate(self.checkpoint, state.step, state.tokens_seen)
                if preempted:
                    status = "preempted"
                    break
        return self._finish(logger, self.result(status))

    def _finish(self, logger: MetricsLogger | None, result: dict) -> dict:
        if logger:
            logger.close()
            self.files.write_result(result)
        return result


def train(
    config: TrainConfig, runtime: Runtime | None = None, echo: Callable[[str], None] = print
) -> dict:
    """Train (or resume) to `max_steps` or preemption; return the result (also result.json).
    Raises `TrainingDiverged` after `max_bad_steps` consecutive non-finite steps."""
    return Trainer(config, runtime or init_runtime(config), echo).run()


def open_pipes(rank: int) -> PipesContext | None:
    """The Dagster Pipes context on rank 0 of a run launched by Dagster, else None. The
    variable is the one `PipesEnvVarParamsLoader` checks; the import waits for it, so a bare
    GPU image without dagster-pipes runs the trainer standalone."""
    if rank != 0 or PIPES_CONTEXT_ENV not in os.environ:
        return None
    from dagster_pipes import open_dagster_pipes

    return open_dagster_pipes()


def materialization_metadata(result: dict) -> dict:
    keys = ("final_loss", "tokens_seen", "mfu", "mean_tokens_per_s", "steps", "skipped_steps")
    keys += ("last_checkpoint", "output_dir", "world_size", "mesh", "model")
    return {key: result[key] for key in keys if result[key] is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TrainConfig as JSON")
    args = parser.parse_args(argv)
    config = TrainConfig.load(args.config)
    runtime = init_runtime(config)
    pipes = open_pipes(runtime.rank)

    def echo(line: str) -> None:
        print(line, flush=True)
        if pipes is not None:
            pipes.log.info(line)

    try:
        with pipes if pipes is not None else nullcontext():
            result = train(config, runtime, echo)
            if pipes is not None and result["status"] == "completed":
                pipes.report_asset_materialization(metadata=materialization_metadata(result))
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return DIVERGED_EXIT_CODE
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result["status"] == "preempted":
        if runtime.rank == 0:
            print(f"preempted: checkpoint {result['last_checkpoint']}", flush=True)
        return PREEMPTED_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
