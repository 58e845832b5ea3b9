"""The functions the `humaneval` and `mbpp` task files name (training/evaluation/task_files.py).

The harness calls them by reference from YAML: a filter that turns a generation into a whole
program, a docs hook, and pass@1. Every program runs in `sandbox.run_program`'s subprocess,
never in the evaluating process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from training.evaluation.sandbox import check_completions, pass_at_k

MBPP_PROMPT_IDS = range(1, 11)  # MBPP's `prompt` split: its few-shot examples
WORKERS = min(4, os.cpu_count() or 1)  # sandboxes at once, as the harness's code_eval


def humaneval_programs(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """HumanEval completes a function body: the program is the prompt plus the generation."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]


def mbpp_docs(dataset):
    """Marks MBPP's few-shot examples, whose target is their code rather than their tests."""
    return dataset.map(lambda doc: {"is_fewshot": doc["task_id"] in MBPP_PROMPT_IDS})


def pass_at_1(references: Sequence[str], predictions: Sequence[str | Sequence[str]]) -> float:
    """pass@1 over one document's samples: each program followed by the tests, run in the
    sandbox. The harness hands one reference and either one string (MBPP) or the list of a
    filter's programs (HumanEval)."""
    [tests] = references
    [samples] = predictions
    samples = [samples] if isinstance(samples, str) else list(samples)
    [outcomes] = check_completions([[f"{p}\n{tests}\n" for p in samples]], workers=WORKERS)
    return pass_at_k(len(samples), sum(o.passed for o in outcomes), 1)
