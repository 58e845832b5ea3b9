"""One evaluation of a checkpoint, as the `evaluation` asset and `llamapipe eval` run it.

Held-out perplexity and bits per byte on the validation shards (in total and per corpus), the
same for an untrained model of the same configuration (the floor a trained model must beat),
lm-evaluation-harness on tasks built from held-out documents (offline, so CI runs the harness
for real; `tasks` adds the paper's when the machine reaches their datasets), and one greedy
continuation of a prompt. In-process: right for the small models of a laptop or CI; a large
model's evaluation goes through the launchers like training does (not built yet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm
import torch

from curation.storage import Storage
from curation.token_shards import decode_documents
from model import Generator, Llama, Sampling
from training.checkpoint import load_model, save_model, tokenizer_of
from training.evaluate import heldout_metrics, labelled_validation_documents
from training.offline_tasks import CONTINUATION_TASK, ROLLING_TASK, write_offline_tasks

OFFLINE_TASKS = (CONTINUATION_TASK, ROLLING_TASK)


@dataclass(frozen=True)
class EvaluationConfig:
    max_tokens: int = 200_000  # held-out tokens scored per model
    tasks: tuple[str, ...] = OFFLINE_TASKS
    limit: int = 100  # items per lm-eval task (0: all)
    batch_size: int = 8
    prompt: str = "The Debian project"
    max_new_tokens: int = 48
    seed: int = 0
    extra_task_paths: tuple[str, ...] = field(default=())


def _untrained(model: Llama, seed: int) -> Llama:
    torch.manual_seed(seed)
    return Llama(model.config)


def _harness(checkpoint: str, config: EvaluationConfig, tasks_dir: Path) -> dict[str, dict]:
    """lm-eval results per task: {task: {metric: value}} (the harness's "acc,none" keys)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from training.lm_eval_model import LlamapipeLM

    lm = LlamapipeLM(checkpoint=checkpoint, batch_size=config.batch_size, device="cpu")
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
    data_dir = state["config"]["data_dir"]
    work = Path(work_dir)
    untrained = _untrained(model, config.seed)
    untrained_dir = work / "untrained"
    save_model(untrained, untrained_dir, {"state": {"step": 0}, "config": {"data_dir": data_dir}})
    texts = decode_documents(Storage("/"), os.path.abspath(data_dir), "validation")
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
    return report


def results_table(report: dict, previous: dict) -> str:
    """Metric rows, one column per model, and the previous evaluation's trained column."""
    columns = {name: _flat(body) for name, body in report["models"].items()}
    if previous:
        columns["previous"] = _flat(previous["models"]["trained"])
    names = sorted({k for column in columns.values() for k in column})
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in names:
        cells = [_cell(column.get(name)) for column in columns.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _flat(body: dict) -> dict[str, float]:
    heldout = body["heldout"]
    flat = {f"heldout {k}": heldout[k] for k in ("perplexity", "bits_per_byte", "loss")}
    for corpus, values in heldout.get("per_corpus", {}).items():
        flat[f"heldout perplexity: {corpus}"] = values["perplexity"]
    for task, values in body["tasks"].items():
        for metric, value in values.items():
            if not metric.endswith("_stderr"):
                flat[f"{task} {metric}"] = value
    return flat


def _cell(value) -> str:
    return "" if value is None else f"{value:.4g}"
