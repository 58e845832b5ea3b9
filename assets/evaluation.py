"""After training: the checkpoint measured (`evaluation`) and made usable elsewhere (`hf_export`).

Both read the checkpoint the latest `pretrain` materialization reported, so they follow
whatever run the training asset produced. The evaluation runs in the Dagster step by default
(`runner: in_process`, right for the sample's tiny model) or, with `runner: launcher`, as its
own program on the `training_launcher` resource's backend, on the accelerators a large model
needs (local torchrun, Slurm or Kubernetes, exactly as `pretrain` is launched).
"""

import dataclasses
import os
import posixpath
from pathlib import Path
from typing import Literal

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.config import build, config_class
from assets.launchers import TrainingLauncher
from assets.resources import DataRoot
from assets.stage_assets import asset_args
from assets.training import POOL
from curation.core.inputs import partition_shards
from curation.core.storage import cache_dir
from curation.decontamination.report import JSON_FILE, report_dir
from curation.recipe import BEATS_UNTRAINED, step
from training.evaluation.config import (
    REPORT_FILE,
    EvaluationConfig,
    EvaluationJob,
    headline,
    read_report,
    results_table,
)
from training.evaluation.paper import suite_tables

EVALUATION_MODULE = "training.evaluation.run"


def latest_checkpoint_of_pretrain(context: AssetExecutionContext) -> str:
    event = context.instance.get_latest_materialization_event(AssetKey("pretrain"))
    checkpoint = event and event.asset_materialization.metadata.get("checkpoint")
    if checkpoint is None or not checkpoint.value:
        raise FileNotFoundError("pretrain has no checkpoint yet: materialize pretrain first")
    return checkpoint.value


def work_dir(data_root: DataRoot) -> str:
    """Where the evaluation writes its task files and untrained model, which the harness
    and DCP open by name: the asset's output directory on a disk, this machine's cache when
    the data root is a store."""
    if data_root.storage().is_local:
        return data_root.output("evaluation")
    return os.path.join(cache_dir(), "evaluation")


class HFExportConfig(Config):
    dtype: str = "bfloat16"  # or float32


@asset(**asset_args(step("hf_export")), kinds={"safetensors"})
def hf_export(
    context: AssetExecutionContext, config: HFExportConfig, data_root: DataRoot
) -> MaterializeResult:
    """The latest checkpoint as a Hugging Face directory (`LlamaForCausalLM`, safetensors,
    the SentencePiece tokenizer): what `transformers` and the harness's `hf` model load."""
    import torch  # here, not at the top: the web server imports this module

    from model.hf import export_hf
    from training.checkpoint import load_model, tokenizer_of

    checkpoint = latest_checkpoint_of_pretrain(context)
    model, state = load_model(checkpoint)
    output = data_root.output("hf_export")
    parent = posixpath.dirname(output)  # export_hf stages beside its output, then renames
    with data_root.storage().local_directory(parent) as local:
        export_hf(
            model,
            tokenizer_of(state),
            os.path.join(local, posixpath.basename(output)),
            getattr(torch, config.dtype),
        )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(output),
            "checkpoint": MetadataValue.path(checkpoint),
            "step": state["state"]["step"],
            "dtype": config.dtype,
        }
    )


EvaluationAssetConfig = config_class(
    "EvaluationAssetConfig",
    EvaluationConfig,
    exclude={"extra_task_paths"},
    extra={
        "runner": (
            Literal["in_process", "launcher"],
            "in_process",
            "in the Dagster process, or launched on the training launcher's backend",
        )
    },
)


def with_overlap_report(settings: EvaluationConfig, data_root: DataRoot) -> EvaluationConfig:
    """The decontaminated stage's overlap report marks the suites' items, unless the config
    names another; without one the rows are not marked."""
    if settings.contamination:
        return settings
    storage = data_root.storage()
    report = report_dir(data_root.output("decontaminated"))
    if not storage.exists(posixpath.join(report, JSON_FILE)):
        return settings
    return dataclasses.replace(settings, contamination=storage.uri(report))


def _suite_metadata(report: dict, previous: dict) -> dict:
    """One table per suite (`suite common_sense`, ...): ours, the paper's, the previous run's."""
    suites = report.get("suites")
    if not suites:
        return {}
    before = previous.get("suites", {}).get("suites")
    tables = suite_tables(suites["suites"], suites["paper_size"], before)
    return {f"suite {name}": MetadataValue.md(table) for name, table in tables.items()} | {
        "paper_size": suites["paper_size"]
    }


def _previous(context: AssetExecutionContext) -> dict:
    event = context.instance.get_latest_materialization_event(AssetKey("evaluation"))
    if event is None:
        return {}
    value = event.asset_materialization.metadata.get("report")
    return value.value if value is not None else {}


@asset(
    **asset_args(step("evaluation")),
    pool=POOL,  # with `runner: launcher` it holds the accelerators, as training does
    kinds={"pytorch"},
)
def evaluation(
    context: AssetExecutionContext,
    config: EvaluationAssetConfig,
    data_root: DataRoot,
    training_launcher: TrainingLauncher,
) -> MaterializeResult:
    """Held-out perplexity and bits per byte per corpus, lm-evaluation-harness on tasks built
    from held-out documents (plus any configured task), and a greedy sample; the trained model
    next to an untrained one of the same configuration and to the previous evaluation. The
    paper's suites (config `suites`) as one table each, beside the paper's numbers."""
    storage = data_root.storage()
    mixture = [storage.uri(s.path) for s in partition_shards(storage, data_root.output("mixture"))]
    job = EvaluationJob(
        checkpoint=latest_checkpoint_of_pretrain(context),
        mixture_parts=tuple(mixture),
        work_dir=work_dir(data_root),
        config=with_overlap_report(build(EvaluationConfig, config), data_root),
    )
    if config.runner == "launcher":
        launch_dir = posixpath.join(job.work_dir, "launches", context.run.run_id)
        Path(job.work_dir, REPORT_FILE).unlink(missing_ok=True)  # never read an old run's
        training_launcher.run(
            context, job.to_json(), launch_dir, nodes=1, nproc_per_node=1, module=EVALUATION_MODULE
        )
        report = read_report(job.work_dir)
    else:
        from training.evaluation.run import evaluate_run  # torch and the harness: only now

        report = evaluate_run(job.checkpoint, list(job.mixture_parts), job.work_dir, job.config)
    trained, untrained = (report["models"][m]["heldout"] for m in ("trained", "untrained"))
    context.log.info(f"{headline(report)}; sample: {report['sample']!r}")
    previous = _previous(context)
    return MaterializeResult(
        metadata={
            **_suite_metadata(report, previous),
            "results": MetadataValue.md(results_table(report, previous)),
            "sample": MetadataValue.md(f"> {report['sample']}"),
            "heldout_perplexity": trained["perplexity"],
            "bits_per_byte": trained["bits_per_byte"],
            "step": report["step"],
            "checkpoint": MetadataValue.path(job.checkpoint),
            "runner": config.runner,
            "report": MetadataValue.json(report),
        },
        check_results=[
            AssetCheckResult(
                check_name=BEATS_UNTRAINED,
                passed=trained["perplexity"] < untrained["perplexity"],
                metadata={
                    "trained": trained["perplexity"],
                    "untrained": untrained["perplexity"],
                },
            )
        ],
    )
