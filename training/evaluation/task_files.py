"""lm-eval task files that point the harness's own tasks at local copies of their datasets.

A benchmark directory holds one folder per dataset, `<name>/<split>.jsonl`, rows in the task's
own Hugging Face schema (the sample world's fixtures are `sample_world/benchmarks/`; a site
with the real datasets exported as JSONL uses the same layout). For each harness task with a
local copy, `write_task_files` writes a YAML that includes the harness's own YAML and swaps
only where the data comes from, so prompts, few-shot formatting, filters and metrics are the
harness's. The code tasks are the exception, with or without a local copy: the harness's
`humaneval` and `mbpp` modules download HF `evaluate`'s code_eval at import and run generated
code in the evaluating process, so they are declared here with the same prompts and our
sandboxed pass@1
(`training/evaluation/code_tasks.py`). RealToxicityPrompts keeps its prompt and swaps the
Perspective-only scorer for the configurable one (`training/evaluation/toxicity.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import Kind
from lm_eval.tasks._yaml_loader import load_yaml

from training.evaluation.suites import SUITES

CODE_MODULE = "training.evaluation.code_tasks"
TOXICITY_MODULE = "training.evaluation.toxicity"

# Where a leaf task's local copy lives when it is not the task's own name.
DATA_DIRS = {t.name: t.data_dir for s in SUITES.values() for t in s.tasks if t.data}

HUMANEVAL = f"""\
task: humaneval
output_type: generate_until
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{test}}}}\\ncheck({{{{entry_point}}}})"
metric_list:
  - metric: !function {CODE_MODULE}.pass_at_1
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"]
  max_gen_toks: 1024
  do_sample: false
num_fewshot: 0
filter_list:
  - name: create_test
    filter:
      - function: custom
        filter_fn: !function {CODE_MODULE}.humaneval_programs
metadata:
  version: 1.0
"""

# MBPP's few-shot examples are its `prompt` split (task ids 1-10), as in the MBPP paper.
MBPP = f"""\
task: mbpp
output_type: generate_until
test_split: test
fewshot_split: prompt
fewshot_config:
  sampler: first_n
process_docs: !function {CODE_MODULE}.mbpp_docs
doc_to_text: "You are an expert Python programmer, and here is your task: {{{{text}}}} \
Your code should pass these tests:\\n\\n{{{{test_list[0]}}}}\\n{{{{test_list[1]}}}}\\n\
{{{{test_list[2]}}}}\\n[BEGIN]\\n"
doc_to_target: "{{% if is_fewshot %}}{{{{code}}}}\\n[DONE]{{% else %}}{{{{test_list[0]}}}}\\n\
{{{{test_list[1]}}}}\\n{{{{test_list[2]}}}}{{% endif %}}"
target_delimiter: ""
metric_list:
  - metric: !function {CODE_MODULE}.pass_at_1
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["[DONE]"]
  do_sample: false
num_fewshot: 3
metadata:
  version: 1.0
"""

TOXICITY = f"""\
process_results: !function {TOXICITY_MODULE}.process_results
metric_list:
  - metric: toxicity
    aggregation: mean
    higher_is_better: false
  - metric: toxic
    aggregation: mean
    higher_is_better: false
"""

OWN_TASKS = {"humaneval": HUMANEVAL, "mbpp": MBPP}
HUB_SOURCES = {
    "humaneval": "dataset_path: openai/openai_humaneval\n",
    "mbpp": "dataset_path: google-research-datasets/mbpp\ndataset_name: full\n",
}
SCORER_OVERRIDES = {"realtoxicityprompts": TOXICITY}


def local_copy(benchmarks: Path | None, task: str) -> Path | None:
    """The folder holding `task`'s local dataset, if the benchmark directory has one."""
    if benchmarks is None:
        return None
    folder = benchmarks / DATA_DIRS.get(task, task)
    return folder if any(folder.glob("*.jsonl")) else None


SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def _data_source(folder: Path, config: dict) -> str:
    """The local files as the task's dataset. A split the task names but the copy lacks
    (a zero-shot fixture without `train`) is switched off rather than failing the load."""
    splits = {path.stem: str(path.resolve()) for path in sorted(folder.glob("*.jsonl"))}
    absent = [key for key in SPLIT_KEYS if config.get(key) and config[key] not in splits]
    return (
        "dataset_path: json\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files: {json.dumps(splits)}\n"
        + "".join(f"{key}: null\n" for key in absent)
    )


def leaves_of(name: str, manager: TaskManager) -> list[str]:
    """The leaf tasks a task, group or tag runs (a group is available when all are)."""
    entry = manager.task_index.get(name)
    if entry is None:
        return [name]
    if entry.kind is Kind.TAG:
        members = sorted(entry.tags)
    elif entry.kind is Kind.GROUP:
        listed = load_yaml(entry.yaml_path, resolve_func=False).get("task", [])
        members = [m["task"] if isinstance(m, dict) else m for m in listed]
    else:
        return [name]
    return [leaf for member in members for leaf in leaves_of(member, manager)]


def write_task_files(
    out_dir: Path, benchmarks: Path | None, leaves: list[str], harness: TaskManager
) -> Path:
    """One YAML per leaf with a local copy (module docstring); return `out_dir` for the
    harness's include path. The files name the tasks as the harness does, so they replace
    its versions and groups such as `mmlu` aggregate them unchanged. `harness` is the
    harness's own task index, where the included YAMLs are found."""
    out_dir.mkdir(parents=True, exist_ok=True)
    defaults = harness.task_index
    for leaf in leaves:
        folder = local_copy(benchmarks, leaf)
        if leaf in OWN_TASKS:
            head, config = OWN_TASKS[leaf], {}  # their splits are the datasets' own
        elif folder is not None or leaf in SCORER_OVERRIDES:
            head = f"include: {defaults[leaf].yaml_path}\ntask: {leaf}\n"
            config = load_yaml(defaults[leaf].yaml_path, resolve_func=False)
        else:
            continue  # the harness's own task, reading its dataset from the Hub
        source = _data_source(folder, config) if folder else HUB_SOURCES.get(leaf, "")
        (out_dir / f"{leaf}.yaml").write_text(head + source + SCORER_OVERRIDES.get(leaf, ""))
    return out_dir
