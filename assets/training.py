"""Pre-training: the trainer launched through Dagster Pipes on the configured backend.

`pretrain` reads `tokenized_shards` and trains in `stages/pretrain/all/runs/<run_name>/`
(checkpoints/, metrics.jsonl, tensorboard/, result.json, and one `launches/<run id>/` per
Dagster run with the config, the rendered command or script, logs and the Pipes messages).
The run directory is stable across Dagster runs, so a re-launched run resumes from its
latest checkpoint; `restart: true` starts it over. The trainer scores the validation split
every `eval_every` steps, per corpus when the `mixture` the shards were made from is
materialized, and the metadata shows those curves over training tokens. The asset runs in the
`gpu` concurrency pool: cap that pool (`dagster instance concurrency set gpu 1`) and two
training runs never share the accelerators.
"""

import json
import os
import posixpath
import re
from collections.abc import Sequence

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.config import build, config_class
from assets.launchers import Launch, TrainingLauncher
from assets.resources import DataRoot
from assets.stage_assets import asset_args
from curation.core.figures import plt
from curation.core.storage import Storage, cache_dir
from curation.recipe import LOSS_DECREASED, step
from training.config import TrainConfig
from training.evaluation.paper import suite_tables
from training.run_files import METRICS_FILE, RESULT_FILE, SUITES_FILE

POOL = "gpu"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one directory level, no "..", no "/"


PretrainConfig = config_class(
    "PretrainConfig",
    TrainConfig,
    exclude={"data_dir", "output_dir", "eval_mixture"},
    extra={
        "run_name": (str, "", "the run directory's name; '' = the model preset"),
        "restart": (bool, False, "delete the run's checkpoints and metrics first"),
        "nodes": (int, 0, "0: the launcher's setting"),
        "nproc_per_node": (int, 0, "0: the launcher's setting"),
    },
    doc="`TrainConfig`'s fields (training/config.py) except the paths, which come from the "
    "data root (the mixture's too, for per-corpus held-out curves); plus the run's name and "
    "the launcher overrides for this run. The defaults are "
    "the paper's 7B run; 0 in `lr`, `max_steps` or `micro_batch_size` takes the preset's value.",
)


def train_config(
    config: PretrainConfig, data_dir: str, output_dir: str, eval_mixture: str = ""
) -> TrainConfig:
    """The run's `TrainConfig`, resolved: the launch's config.json and the asset's metadata
    show the rate, steps and micro-batch the run uses, not zeros."""
    locations = {"data_dir": data_dir, "output_dir": output_dir, "eval_mixture": eval_mixture}
    return build(TrainConfig, config, **locations).resolve()


def mixture_location(data_root: DataRoot) -> str:
    """The mixture the token shards were made from, which labels held-out documents by
    corpus; "" (curves of the total only) while it is not materialized."""
    storage, mixture = data_root.storage(), data_root.output("mixture")
    return storage.uri(mixture) if storage.is_dir(mixture) else ""


def read_metrics(storage: Storage, run_dir: str) -> list[dict]:
    """The trainer's records, one per logged step (rank 0 keeps each step once on resume)."""
    path = posixpath.join(run_dir, METRICS_FILE)
    if not storage.exists(path):
        return []
    lines = storage.read_bytes(path).decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_result(storage: Storage, run_dir: str) -> dict:
    path = posixpath.join(run_dir, RESULT_FILE)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}


def loss_decreased(records: Sequence[dict], window: int = 0) -> tuple[bool, dict]:
    """The mean loss of the last logged steps is below that of the first. The window is a
    quarter of the records (at most 10) unless given: long enough to average out noise,
    short enough that the first window is still the untrained model."""
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    k = window or max(1, min(10, len(losses) // 4))
    if len(losses) < 2 * k or len(losses) < 2:
        return False, {"records": len(losses), "reason": "too few logged steps"}
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return last < first, {"records": len(losses), "window": k, "first": first, "last": last}


def loss_figure(records: Sequence[dict], title: str):
    """Training loss per logged step, with the learning rate on a second axis."""
    steps = [r["step"] for r in records if r.get("loss") is not None]
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    axis.plot(steps, losses, color="#4c72b0", label="loss")
    axis.set_xlabel("step")
    axis.set_ylabel("training loss", color="#4c72b0")
    if records and "lr" in records[0]:
        lr_axis = axis.twinx()
        lr_axis.plot([r["step"] for r in records], [r["lr"] for r in records], color="#c44e52")
        lr_axis.set_ylabel("learning rate", color="#c44e52")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def heldout_table(record: dict) -> str:
    """The last held-out evaluation as markdown: loss, perplexity and bits per byte, for all
    documents and per corpus."""
    heldout = record["heldout"]
    rows = [("all", heldout), *heldout.get("per_corpus", {}).items()]
    lines = [
        f"Held-out at step {record['step']} ({record['tokens_seen']:,} training tokens)",
        "",
        "| corpus | loss | perplexity | bits per byte | tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in rows:
        bpb = values["bits_per_byte"]
        lines.append(
            f"| {name} | {values['loss']:.4f} | {values['perplexity']:.2f} | "
            f"{'-' if bpb is None else format(bpb, '.4f')} | {values['tokens']:,} |"
        )
    return "\n".join(lines)


def heldout_metadata(records: Sequence[dict], storage: Storage, run_dir: str, title: str) -> dict:
    """The held-out curves (PNG) and the last point (a table, and its loss as a number Dagster
    plots across materializations); nothing when the run did not evaluate."""
    evaluated = [r for r in records if r.get("heldout")]
    if not evaluated:
        return {}
    figure = plots.heldout_curves(records, title)
    return {
        "heldout_curve": plots.save_png(figure, storage, run_dir, "heldout"),
        "heldout": MetadataValue.md(heldout_table(evaluated[-1])),
        "heldout_loss": evaluated[-1]["heldout"]["loss"],
    }


def suite_metadata(storage: Storage, run_dir: str, title: str) -> dict:
    """The suites evaluated at the run's checkpoints (`eval_suites`): their curves over training
    tokens (PNG) and the last checkpoint's tables beside the paper's; nothing when none ran."""
    path = posixpath.join(run_dir, SUITES_FILE)
    if not storage.exists(path):
        return {}
    points = [json.loads(line) for line in storage.read_bytes(path).decode().splitlines()]
    last = points[-1]
    tables = suite_tables(last["suites"], last["paper_size"])
    figure = plots.suite_curves(points, title)
    return {
        "suite_curve": plots.save_png(figure, storage, run_dir, "suites"),
        **{
            f"suite {name} at step {last['step']}": MetadataValue.md(table)
            for name, table in tables.items()
        },
    }


def _reported_metadata(launch: Launch) -> dict:
    """What rank 0 reported with `report_asset_materialization`, as asset metadata."""
    metadata: dict = {}
    for result in launch.reported:
        if isinstance(result, MaterializeResult):
            metadata.update(result.metadata or {})
    return metadata


def _fresh(storage: Storage, run_dir: str) -> None:
    """Start the run over: its checkpoints, metrics and result go (its launches stay)."""
    for name in ("checkpoints", "tensorboard"):
        storage.remove_tree(posixpath.join(run_dir, name))
    for name in (METRICS_FILE, RESULT_FILE):
        storage.discard(posixpath.join(run_dir, name))


def launch_dir(storage: Storage, run_dir: str, run_id: str) -> str:
    """Where a launch keeps its config, command, logs and Pipes messages: in the run
    directory on a disk; under this machine's cache when the run directory is on a store
    (torchrun and the Pipes reader write files by name)."""
    if storage.is_local:
        return posixpath.join(run_dir, "launches", run_id)
    return os.path.join(cache_dir(), "launches", run_id)


@asset(**asset_args(step("pretrain")), pool=POOL, kinds={"pytorch"})
def pretrain(
    context: AssetExecutionContext,
    config: PretrainConfig,
    data_root: DataRoot,
    training_launcher: TrainingLauncher,
) -> MaterializeResult:
    """The LLaMA trainer (FSDP under torchrun) on the token shards, launched by the
    `training_launcher` resource (local torchrun, Slurm or Kubernetes). Rank 0 reports through
    Pipes; the loss curve, the held-out curves per corpus, final loss, tokens seen, MFU and
    checkpoint are the metadata."""
    storage = data_root.storage()
    run_name = config.run_name or config.model
    if not RUN_NAME.fullmatch(run_name):
        raise ValueError(f"run_name {run_name!r}: letters, digits, '.', '_' and '-' only")
    run_dir = posixpath.join(data_root.output("pretrain"), "runs", run_name)
    if config.restart:
        _fresh(storage, run_dir)
    shards = data_root.output("tokenized_shards")
    train = train_config(
        config, storage.uri(shards), storage.uri(run_dir), mixture_location(data_root)
    )
    launch = training_launcher.run(
        context,
        train.to_json(),
        launch_dir(storage, run_dir, context.run.run_id),
        nodes=config.nodes,
        nproc_per_node=config.nproc_per_node,
    )
    records = read_metrics(storage, run_dir)
    result = read_result(storage, run_dir)
    checkpoint = result.get("last_checkpoint")
    ok, details = loss_decreased(records)
    context.log.info(f"pretrain: {len(records)} records, final loss {result.get('final_loss')}")
    return MaterializeResult(
        metadata={
            **_reported_metadata(launch),
            "path": MetadataValue.path(run_dir),
            "final_loss": result.get("final_loss"),
            "tokens_seen": result.get("tokens_seen"),
            "mfu": result.get("mfu"),
            "tokens_per_s": result.get("mean_tokens_per_s"),
            "steps": result.get("steps"),
            # What this launch consumed, by the paper's method (training/planning/usage.py).
            "accelerator_hours": result.get("accelerator_hours"),
            "energy_kwh": result.get("energy_kwh"),
            "tco2eq": result.get("tco2eq"),
            "power_w": result.get("power_w"),
            "power_source": result.get("power_source"),
            "checkpoint": MetadataValue.path(checkpoint) if checkpoint else None,
            "loss_curve": plots.save_png(
                loss_figure(records, f"pretrain: {train.model}"), storage, run_dir, "loss"
            ),
            **heldout_metadata(records, storage, run_dir, f"pretrain: {train.model}, held out"),
            **suite_metadata(storage, run_dir, f"pretrain: {train.model}, suites"),
            "launch": MetadataValue.json(
                {
                    "backend": launch.backend,
                    "job": launch.description,
                    "state": launch.status.state,
                    "launch_dir": launch.launch_dir,
                    "pipes_channels_opened": launch.opened_channels,
                }
            ),
            "config": MetadataValue.json(json.loads(train.to_json())),
        },
        check_results=[
            AssetCheckResult(
                check_name=LOSS_DECREASED,
                passed=ok,
                metadata={"details": MetadataValue.json(details)},
            )
        ],
    )
