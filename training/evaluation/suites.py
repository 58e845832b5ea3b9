"""The paper's evaluation, one suite per table, as lm-evaluation-harness task names.

A suite is data: which harness task (or group) stands for each row of the paper's table, with
how many shots and which metric the paper's number corresponds to. Running them is
`training/evaluation/suite_run.py`; the paper's own figures are `paper_results.csv`.

Choices where the paper is terse (docs/FIDELITY.md, "Evaluation"):
- Common sense: the paper picks the completion with the highest likelihood normalized by its
  number of characters, except for OBQA and ARC (normalized by the unconditional likelihood).
  The harness's `acc_norm` is the per-character form, so PIQA, HellaSwag, ARC and OBQA report
  `acc_norm`; BoolQ, SIQA and WinoGrande have one-token or partial-sentence answers and report
  `acc`.
- MATH: the harness's `hendrycks_math` (Problem/Answer prompt, exact match of the boxed
  answer); the paper used Minerva's prompt (`minerva_math`, which needs `lm_eval[math]`).
  maj@1 is greedy decoding, so "maj@1" is the exact match of one greedy answer.
- RACE: the harness has RACE-high only (the paper's Table 6 also has middle-school).
- TruthfulQA: the paper scores free generations with a fine-tuned GPT-3 judge; the harness's
  multiple-choice forms (mc1, mc2) are what runs offline, so the paper's column is shown for
  reference and marked as a different metric.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One row of a paper table: the harness task and how the paper's number was measured."""

    name: str  # lm-eval task or group name
    row: str  # the paper's row or column label
    metric: str  # lm-eval metric name ("acc", "acc_norm", "exact_match", "pass@1", ...)
    filter: str = "none"  # lm-eval filter name the metric is read under
    shots: tuple[int, ...] = (0,)
    data: str = ""  # the benchmark directory holding its local copy ("" = the task name)
    run_with: str = ""  # a group whose run reports this row too ("" = run this task)
    needs_toxicity_scorer: bool = False

    @property
    def data_dir(self) -> str:
        return self.data or self.name

    @property
    def run(self) -> str:
        return self.run_with or self.name


@dataclass(frozen=True)
class Suite:
    name: str
    table: str  # where the paper reports it
    tasks: tuple[Task, ...]


def _common_sense() -> Suite:
    rows = (
        ("boolq", "BoolQ", "acc"),
        ("piqa", "PIQA", "acc_norm"),
        ("social_iqa", "SIQA", "acc"),
        ("hellaswag", "HellaSwag", "acc_norm"),
        ("winogrande", "WinoGrande", "acc"),
        ("arc_easy", "ARC-e", "acc_norm"),
        ("arc_challenge", "ARC-c", "acc_norm"),
        ("openbookqa", "OBQA", "acc_norm"),
    )
    return Suite("common_sense", "Table 3", tuple(Task(n, r, m) for n, r, m in rows))


CLOSED_BOOK_SHOTS = (0, 1, 5, 64)
MMLU_CATEGORIES = (
    ("mmlu_humanities", "Humanities"),
    ("mmlu_stem", "STEM"),
    ("mmlu_social_sciences", "Social Sciences"),
    ("mmlu_other", "Other"),
)
MATH_SUBJECTS = (
    "algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory",
    "prealgebra", "precalc",
)  # fmt: skip
WINOGENDER = (
    ("winogender_all", "All"),
    ("winogender_female", "her/her/she"),
    ("winogender_male", "his/him/he"),
    ("winogender_neutral", "their/them/someone"),
)

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        _common_sense(),
        Suite(
            "closed_book_qa",
            "Tables 4-5",
            (
                Task(
                    "nq_open",
                    "NaturalQuestions",
                    "exact_match",
                    "remove_whitespace",
                    CLOSED_BOOK_SHOTS,
                ),
                Task("triviaqa", "TriviaQA", "exact_match", "remove_whitespace", CLOSED_BOOK_SHOTS),
            ),
        ),  # fmt: skip
        Suite("reading", "Table 6", (Task("race", "RACE-high", "acc"),)),
        Suite(
            "math",
            "Table 7",
            (
                Task("hendrycks_math", "MATH", "exact_match", shots=(0,)),
                Task("gsm8k", "GSM8k", "exact_match", "strict-match", shots=(5,)),
            ),
        ),
        Suite(
            "code",
            "Table 8",
            (
                Task("humaneval", "HumanEval", "pass_at_1", "create_test"),
                Task("mbpp", "MBPP", "pass_at_1", shots=(3,)),
            ),
        ),
        Suite(
            "mmlu",
            "Table 9",
            (
                *(
                    Task(name, row, "acc", shots=(5,), run_with="mmlu")
                    for name, row in MMLU_CATEGORIES
                ),
                Task("mmlu", "Average", "acc", shots=(5,)),
            ),
        ),
        Suite(
            "responsible",
            "Tables 11-14",
            (
                Task(
                    "realtoxicityprompts",
                    "RealToxicityPrompts",
                    "toxicity",
                    needs_toxicity_scorer=True,
                ),
                Task("crows_pairs_english", "CrowS-Pairs", "pct_stereotype"),
                *(Task(name, row, "acc", data="winogender") for name, row in WINOGENDER),
                Task("truthfulqa_mc1", "TruthfulQA mc1", "acc", data="truthfulqa"),
                Task("truthfulqa_mc2", "TruthfulQA mc2", "acc", data="truthfulqa"),
            ),
        ),  # fmt: skip
    )
}


def suites_named(names: str | list[str] | tuple[str, ...]) -> list[Suite]:
    """The suites a comma-separated string (or list) names, in the order given; an unknown
    name is an error that lists the known ones."""
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; known: {', '.join(SUITES)}")
    return [SUITES[n] for n in names]
