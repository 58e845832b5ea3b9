"""The paper's suites (suites.py) run through lm-evaluation-harness on a checkpoint or on its
Hugging Face export, every task reported as measured or as unavailable with the reason.

A task is unavailable, never dropped and never scored zero, when: it is offline and has no
local copy in the benchmark directory; its dataset cannot be loaded (the loader's error is the
reason); or it needs a scorer that is not configured (RealToxicityPrompts). Everything the
model answered is kept beside the report (`samples/<task>_<shots>shot.jsonl`), so a number can
be traced to its items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

from training.evaluation.contamination import clean_samples, load_contamination
from training.evaluation.paper import nearest_size
from training.evaluation.suites import Suite, Task
from training.evaluation.task_files import DATA_DIRS, leaves_of, local_copy, write_task_files
from training.evaluation.toxicity import configured_scorer


@dataclass(frozen=True)
class SuiteSettings:
    benchmarks: str = ""  # local benchmark directory (<dataset>/<split>.jsonl); "" = none
    offline: bool = False  # True: never reach the Hub; tasks without a local copy unavailable
    limit: int = 0  # items per task (0: all)
    batch_size: int = 8
    max_gen_toks: int = 0  # cap on generated tokens per item (0: each task's own)
    device: str = ""  # "": cuda when there is one, else cpu
    seed: int = 0
    contamination: str = ""  # the decontaminated stage's overlap report: rows marked ("": not)


def load_lm(model: str, hf: bool, settings: SuiteSettings) -> LM:
    """Our checkpoint as the harness's `llamapipe` model, or an HF export as its `hf` model
    (with `<s>` first, the framing our models are trained on)."""
    import torch

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if hf:
        from lm_eval.models.huggingface import HFLM

        return HFLM(
            pretrained=model, add_bos_token=True, device=device, batch_size=settings.batch_size
        )
    from training.evaluation.lm_eval_model import LlamapipeLM

    return LlamapipeLM(checkpoint=model, batch_size=settings.batch_size, device=device)


@cache
def harness_tasks() -> TaskManager:
    """The harness's own task index, built once per process: it parses some 15,000 YAML
    files (about 10 s), and a training run that evaluates at every checkpoint, or a test
    that runs the suites several times, would pay that each time. Only read."""
    return TaskManager()


class SuiteRunner:
    """Runs each (task, shots) once, however many rows of however many suites read it."""

    def __init__(self, lm: LM, suites: list[Suite], work_dir: Path, settings: SuiteSettings):
        self.lm, self.suites, self.settings = lm, suites, settings
        self.work_dir = work_dir
        self.benchmarks = Path(settings.benchmarks).resolve() if settings.benchmarks else None
        defaults = harness_tasks()
        self.leaves = {
            task.run: leaves_of(task.run, defaults) for suite in suites for task in suite.tasks
        }
        everything = sorted({leaf for leaves in self.leaves.values() for leaf in leaves})
        tasks_dir = work_dir / "suite_tasks"
        write_task_files(tasks_dir, self.benchmarks, everything, defaults)
        self.manager = TaskManager(include_path=[str(tasks_dir)])
        self._runs: dict[tuple[str, int], dict] = {}
        self.contamination = (
            load_contamination(settings.contamination) if settings.contamination else None
        )

    def report(self) -> dict:
        """{suite: {"table", "rows": [...]}}, one row per task and number of shots."""
        return {
            suite.name: {
                "table": suite.table,
                "rows": [self._row(task, shots) for task in suite.tasks for shots in task.shots],
            }
            for suite in self.suites
        }

    def _row(self, task: Task, shots: int) -> dict:
        row = {"task": task.name, "row": task.row, "shots": shots, "metric": task.metric}
        run = self._run(task, shots)
        if run["status"] != "ok":
            return row | run
        key = f"{task.metric},{task.filter}"
        values = run["results"].get(task.name, {})
        if key not in values:
            return row | {"status": "unavailable", "reason": f"the harness reported no {key}"}
        stderr = values.get(f"{task.metric}_stderr,{task.filter}")
        return row | {
            "status": "ok",
            "value": values[key],
            "stderr": stderr if isinstance(stderr, float) else None,
            "n": sum(run["n"].get(leaf, 0) for leaf in leaves_of(task.name, self.manager)),
            **self._contamination(task, run),
        }

    def _contamination(self, task: Task, run: dict) -> dict:
        """How many of the row's items the training corpus held, and the value without them
        (training/evaluation/contamination.py); nothing without a report."""
        if self.contamination is None:
            return {}
        clean, items = [], 0
        for leaf in leaves_of(task.name, self.manager):
            samples = [s for s in run["samples"].get(leaf, []) if s["filter"] == task.filter]
            config = run["configs"][leaf]
            split = config.get("test_split") or config.get("validation_split")
            name, folder = f"{DATA_DIRS.get(leaf, leaf)}/{split}", local_copy(self.benchmarks, leaf)
            if name not in self.contamination or folder is None:
                return {"contamination": f"not checked: the report has no {name}"}
            kept = clean_samples(
                samples, self.contamination[name], folder / f"{split}.jsonl", run["documents"][leaf]
            )
            if isinstance(kept, str):
                return {"contamination": kept}
            clean, items = clean + kept, items + len(samples)
        values = [s[task.metric] for s in clean]
        return {
            "contaminated": items - len(clean),
            "clean_value": sum(values) / len(values) if values else None,
        }

    def _run(self, task: Task, shots: int) -> dict:
        if (task.run, shots) not in self._runs:
            reason = self._unavailable(task)
            unavailable = {"status": "unavailable", "reason": reason}
            self._runs[task.run, shots] = unavailable if reason else self._evaluate(task, shots)
        return self._runs[task.run, shots]

    def _unavailable(self, task: Task) -> str:
        """Why `task` cannot run here, or "" when it can."""
        if task.needs_toxicity_scorer:
            scorer, reason = configured_scorer()
            if scorer is None:
                return reason
        missing = [leaf for leaf in self.leaves[task.run] if not local_copy(self.benchmarks, leaf)]
        if self.settings.offline and missing:
            more = f" and {len(missing) - 3} more" if missing[3:] else ""
            shown = ", ".join(missing[:3]) + more
            return f"offline and no local copy of {shown} in {self.benchmarks}"
        try:
            self.manager.load([task.run])
        except Exception as error:  # the loader's own words are the reason
            return f"dataset could not be loaded: {type(error).__name__}: {error}"
        return ""

    def _evaluate(self, task: Task, shots: int) -> dict:
        settings = self.settings
        output = simple_evaluate(
            model=self.lm,
            tasks=[task.run],
            num_fewshot=shots,
            task_manager=self.manager,
            limit=settings.limit or None,
            gen_kwargs={"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None,
            confirm_run_unsafe_code=True,  # generated code runs only in the sandbox
            log_samples=True,
            random_seed=settings.seed,
            numpy_random_seed=settings.seed,
            torch_random_seed=settings.seed,
            fewshot_random_seed=settings.seed,
        )
        self._keep_samples(task.run, shots, output["samples"])
        counts = output.get("n-samples", {})
        return {
            "status": "ok",
            "results": output["results"],
            "n": {name: n["effective"] for name, n in counts.items()},
            "documents": {name: n["original"] for name, n in counts.items()},
            "samples": output["samples"],
            "configs": output["configs"],
        }

    def _keep_samples(self, run: str, shots: int, samples: dict[str, list]) -> None:
        folder = self.work_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{run}_{shots}shot.jsonl", "w") as f:
            for leaf, rows in sorted(samples.items()):
                for sample in rows:
                    f.write(json.dumps({"task": leaf, **sample}, default=str) + "\n")


def run_suites(
    model: str, suites: list[Suite], work_dir: str | Path, settings: SuiteSettings, hf: bool = False
) -> dict:
    """The suites' rows for `model` (a checkpoint or run directory; an HF export with `hf`),
    with the model's size and the paper's size it is compared with."""
    lm = load_lm(model, hf, settings)
    parameters = sum(p.numel() for p in lm.model.parameters())
    return {
        "parameters": parameters,
        "paper_size": nearest_size(parameters),
        "suites": SuiteRunner(lm, suites, Path(work_dir), settings).report(),
    }
