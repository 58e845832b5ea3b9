"""What an evaluation is asked to do and what it reports, without torch.

The `evaluation` asset and the web server import this module; the measuring itself
(training/evaluation/run.py) imports torch, the model and the harness only when it runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from training.evaluation.offline_tasks import CONTINUATION_TASK, ROLLING_TASK
from training.evaluation.suites import SUITES

if TYPE_CHECKING:
    import torch

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
    device: str = ""  # "": cuda when there is one, else cpu
    suites: tuple[str, ...] = tuple(SUITES)  # the paper's tables (suites.py); () for none
    benchmarks: str = ""  # local copies of the benchmarks, <dataset>/<split>.jsonl
    offline: bool = False  # never reach the Hub: a task without a local copy is unavailable
    max_gen_toks: int = 0  # cap on generated tokens per suite item (0: each task's own)
    contamination: str = ""  # overlap report marking suite items ("": decontaminated's, if any)

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))


REPORT_FILE = "report.json"


@dataclass(frozen=True)
class EvaluationJob:
    """What the launched program needs: the checkpoint, the mixture parts that label the
    validation documents, where to work, and the settings. Written as the launch's config."""

    checkpoint: str
    mixture_parts: tuple[str, ...]
    work_dir: str
    config: EvaluationConfig = EvaluationConfig()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> EvaluationJob:
        values = json.loads(Path(path).read_text())
        settings = values.pop("config", {})
        for key in ("tasks", "extra_task_paths", "suites"):
            if key in settings:
                settings[key] = tuple(settings[key])
        return cls(
            checkpoint=values["checkpoint"],
            mixture_parts=tuple(values["mixture_parts"]),
            work_dir=values["work_dir"],
            config=EvaluationConfig(**settings),
        )


def write_report(work_dir: str | Path, report: dict) -> Path:
    """`report.json` in the work directory, replaced atomically: the launcher's caller reads
    it after the job ends and must never see half of one."""
    path = Path(work_dir) / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_report(work_dir: str | Path) -> dict:
    return json.loads((Path(work_dir) / REPORT_FILE).read_text())


def headline(report: dict) -> dict:
    """The numbers a person looks at first, for the Pipes report and the log."""
    trained, untrained = (report["models"][m]["heldout"] for m in ("trained", "untrained"))
    return {
        "heldout_perplexity": trained["perplexity"],
        "untrained_heldout_perplexity": untrained["perplexity"],
        "bits_per_byte": trained["bits_per_byte"],
        "step": report["step"],
    }


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
