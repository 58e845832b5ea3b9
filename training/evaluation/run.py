"""One evaluation of a checkpoint, as the `evaluation` asset and `llamapipe eval` run it.

Held-out perplexity and bits per byte on the validation shards (in total and per corpus), the
same for an untrained model of the same configuration (the floor a trained model must beat),
lm-evaluation-harness on tasks built from held-out documents (offline, so CI runs the harness
for real), one greedy continuation of a prompt, and the paper's suites (`suites`: one per
table, on the real datasets or local copies, training/evaluation/suite_run.py).

Two ways to run it, one code path: in the caller's process (`evaluate_run`; right for the
small models of a laptop or CI), or as its own program, `python -m training.evaluation.run
--config JOB.json`, which the training launchers start under torchrun on the cluster's GPUs
like the trainer. The program evaluates on rank 0 (a model that fits one accelerator: the
paper's sizes do in bf16 up to 33B on an 80 GB card), writes `report.json` atomically into the
work directory and reports the headline numbers through Dagster Pipes.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import sentencepiece as spm
import torch

from curation.core.storage import Storage
from curation.tokens.shards import decode_documents
from model import Generator, Llama, Sampling
from training.checkpoint import load_model, save_model, tokenizer_of
from training.evaluation.config import EvaluationConfig, EvaluationJob, headline, write_report
from training.evaluation.heldout import heldout_metrics, labelled_validation_documents
from training.evaluation.offline_tasks import write_offline_tasks
from training.evaluation.suite_run import SuiteSettings, run_suites
from training.evaluation.suites import suites_named


def _untrained(model: Llama, seed: int) -> Llama:
    torch.manual_seed(seed)
    return Llama(model.config)


def _harness(checkpoint: str, config: EvaluationConfig, tasks_dir: Path) -> dict[str, dict]:
    """lm-eval results per task: {task: {metric: value}} (the harness's "acc,none" keys)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from training.evaluation.lm_eval_model import LlamapipeLM

    lm = LlamapipeLM(
        checkpoint=checkpoint, batch_size=config.batch_size, device=str(config.torch_device)
    )
    results = simple_evaluate(
        model=lm,
        tasks=list(config.tasks),
        task_manager=TaskManager(include_path=[str(tasks_dir), *config.extra_task_paths]),
        limit=config.limit or None,
        random_seed=config.seed,
        numpy_random_seed=config.seed,
        torch_random_seed=config.seed,
    )["results"]
    return {
        task: {k.split(",")[0]: v for k, v in values.items() if isinstance(v, int | float)}
        for task, values in results.items()
    }


def _sample(model: Llama, tokenizer: str, config: EvaluationConfig) -> str:
    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    prompt = [sp.bos_id(), *sp.encode(config.prompt)]
    sampling = Sampling(max_new_tokens=config.max_new_tokens, eos_id=sp.eos_id())
    [tokens] = Generator(model.eval()).generate([prompt], sampling).tokens
    return config.prompt + sp.decode([t for t in tokens if t != sp.eos_id()])


def evaluate_run(
    run: str, mixture_parts: list[str], work_dir: str, config: EvaluationConfig
) -> dict:
    """Everything the evaluation reports for the checkpoint `run` (a run directory or one
    checkpoint), trained and untrained side by side. `mixture_parts` labels the validation
    documents with their corpus; `work_dir` receives the task files and the untrained model."""
    model, state = load_model(run)
    model = model.to(config.torch_device)
    data_dir = state["config"]["data_dir"]
    work = Path(work_dir)
    untrained = _untrained(model, config.seed).to(config.torch_device)
    untrained_dir = work / "untrained"
    save_model(untrained, untrained_dir, {"state": {"step": 0}, "config": {"data_dir": data_dir}})
    shards = Storage(data_dir)
    texts = decode_documents(shards, shards.base, "validation")
    tasks_dir = write_offline_tasks(texts, work / "tasks", seed=config.seed)

    report = {"step": state["state"]["step"], "models": {}}
    for name, net, checkpoint in (
        ("trained", model, run),
        ("untrained", untrained, str(untrained_dir)),
    ):
        documents = labelled_validation_documents(data_dir, mixture_parts)
        report["models"][name] = {
            "heldout": heldout_metrics(
                net, data_dir, max_tokens=config.max_tokens, documents=documents
            ),
            "tasks": _harness(checkpoint, config, tasks_dir),
        }
    report["sample"] = _sample(model, tokenizer_of(state), config)
    if config.suites:
        report["suites"] = run_suites(
            run, suites_named(config.suites), work / "suites", suite_settings(config)
        )
    return report


def suite_settings(config: EvaluationConfig) -> SuiteSettings:
    return SuiteSettings(
        benchmarks=config.benchmarks,
        offline=config.offline,
        limit=config.limit,
        batch_size=config.batch_size,
        max_gen_toks=config.max_gen_toks,
        device=config.device,
        seed=config.seed,
        contamination=config.contamination,
    )


def main(argv: list[str] | None = None) -> int:
    """The launched form: rank 0 evaluates; other ranks (a launcher asked for more) exit."""
    from training.train import open_pipes

    parser = argparse.ArgumentParser(description="Evaluate a checkpoint (EvaluationJob JSON).")
    parser.add_argument("--config", required=True, help="an EvaluationJob as JSON")
    args = parser.parse_args(argv)
    job = EvaluationJob.load(args.config)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        return 0
    pipes = open_pipes(rank)
    with pipes if pipes is not None else nullcontext():
        report = evaluate_run(job.checkpoint, list(job.mixture_parts), job.work_dir, job.config)
        path = write_report(job.work_dir, report)
        print(f"evaluation: {headline(report)} -> {path}", flush=True)
        if pipes is not None:
            pipes.report_asset_materialization(metadata={**headline(report), "report": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
