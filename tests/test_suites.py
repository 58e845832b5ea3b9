"""The paper's suites end to end on the sample world's benchmark fixtures (each task's own schema,
loaded through the harness's normal path), on a real tiny checkpoint and on its HF export.

Every value is recomputed here from what the model answered (the per-item samples the runner
keeps): multiple-choice accuracy from the choices' log-likelihoods, exact match from the
filtered answer and the gold aliases, pass@1 by running each program in the sandbox,
toxicity from a real HTTP server speaking the Perspective API's protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_evaluate import build_run

from training.evaluation.code_tasks import pass_at_1
from training.evaluation.paper import nearest_size, suite_tables
from training.evaluation.sandbox import run_program
from training.evaluation.suite_run import SuiteSettings, run_suites
from training.evaluation.suites import SUITES, Suite, Task, suites_named

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "sample_world" / "benchmarks"
SETTINGS = SuiteSettings(benchmarks=str(FIXTURES), offline=True, max_gen_toks=16, device="cpu")
DONE_WHEN = "common_sense,code,responsible"


def toxicity_of(text: str) -> float:
    """The test server's score: a pure function of the text, so the test can recompute it."""
    return min(1.0, len(text) / 40)


class Perspective(BaseHTTPRequestHandler):
    keys: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        Perspective.keys.append(self.path.split("key=")[-1])
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        score = toxicity_of(body["comment"]["text"])
        answer = {"attributeScores": {"TOXICITY": {"summaryScore": {"value": score}}}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def perspective():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Perspective)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PERSPECTIVE_API_KEY": "test-key",
        "LLAMAPIPE_PERSPECTIVE_URL": f"http://127.0.0.1:{server.server_port}/analyze",
        "PERSPECTIVE_API_QPS": "1000",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    server.shutdown()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = build_run(tmp_path_factory.mktemp("suites"), steps=20)
    export = root / "hf"
    command = [Path(sys.executable).parent / "llamapipe", "export-hf", "--checkpoint"]
    command += [root / "run", "--out", export, "--dtype", "float32"]
    subprocess.run(command, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def every_suite(run_dir, perspective) -> dict:
    """All seven suites on the native checkpoint, in one runner."""
    report = run_suites(str(run_dir / "run"), list(SUITES.values()), run_dir / "all", SETTINGS)
    return report


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def rows(report: dict, suite: str) -> dict[tuple[str, int], dict]:
    return {(r["task"], r["shots"]): r for r in report["suites"][suite]["rows"]}


def samples(run_dir: Path, run: str, shots: int, where: str = "all") -> list[dict]:
    path = run_dir / where / "samples" / f"{run}_{shots}shot.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def fixture_rows(folder: str, split: str) -> list[dict]:
    lines = (FIXTURES / folder / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_every_suite_runs_every_task_on_the_fixtures(every_suite):
    assert list(every_suite["suites"]) == list(SUITES)
    assert every_suite["paper_size"] == "7B" == nearest_size(every_suite["parameters"])
    for name, suite in every_suite["suites"].items():
        for row in suite["rows"]:
            assert row["status"] == "ok", (name, row)
            assert isinstance(row["value"], float) and 0 <= row["value"] <= 1, row
    expected_n = {
        ("boolq", 0): 4, ("triviaqa", 64): 4, ("race", 0): 3, ("gsm8k", 5): 3,
        ("hendrycks_math", 0): 14, ("humaneval", 0): 3, ("mbpp", 3): 3, ("mmlu", 5): 114,
        ("winogender_female", 0): 2, ("truthfulqa_mc2", 0): 3, ("realtoxicityprompts", 0): 3,
    }  # fmt: skip
    found = {
        key: row["n"] for s in every_suite["suites"] for key, row in rows(every_suite, s).items()
    }
    assert {key: found[key] for key in expected_n} == expected_n


def test_multiple_choice_values_follow_from_the_choices_likelihoods(run_dir, every_suite):
    """acc: the most likely choice is the gold one; acc_norm: likelihood per character of
    the choice (the harness's and the paper's normalization)."""
    table = rows(every_suite, "common_sense")
    for task in ("boolq", "piqa", "hellaswag", "arc_challenge"):
        items = samples(run_dir, task, 0)
        scores = [[float(r[0][0]) for r in item["resps"]] for item in items]
        lengths = [[len(a[1].removeprefix(" ")) for a in item["arguments"]] for item in items]
        gold = [int(item["target"]) for item in items]
        per_char = [
            [x / n for x, n in zip(s, ls, strict=True)]
            for s, ls in zip(scores, lengths, strict=True)
        ]
        acc, acc_norm = (
            sum(argmax(s) == g for s, g in zip(values, gold, strict=True)) / len(items)
            for values in (scores, per_char)
        )
        expected = acc_norm if table[task, 0]["metric"] == "acc_norm" else acc
        assert table[task, 0]["value"] == pytest.approx(expected), task


def test_few_shot_prompts_are_the_harness_formatting_of_the_fixture(run_dir, every_suite):
    train = fixture_rows("nq_open", "train")
    for shots in (1, 5, 64):
        for item in samples(run_dir, "nq_open", shots):
            context = item["arguments"][0][0]
            assert context.startswith("Answer these questions:\n\n")
            examples = [f"Q: {r['question']}?\nA: {r['answer'][0]}" for r in train]
            assert sum(example in context for example in examples) == shots
            assert context.endswith(f"Q: {item['doc']['question']}?\nA:")
    dev = fixture_rows("mmlu_abstract_algebra", "dev")
    (first, *_) = [s for s in samples(run_dir, "mmlu", 5) if s["task"] == "mmlu_abstract_algebra"]
    context = first["arguments"][0][0]
    assert context.startswith("The following are multiple choice questions (with answers) about")
    positions = [context.index(row["question"]) for row in dev]
    assert positions == sorted(positions)  # the first five dev items, in order


def test_exact_match_normalizes_case_and_punctuation(run_dir, every_suite, tmp_path):
    """The gold answer of one item is made the model's own answer in other case with
    punctuation (the tiny model often answers nothing: then the gold is "!"): exact match
    counts it (1 of 4), and only it."""
    [first, *_] = samples(run_dir, "triviaqa", 0)
    answer = first["filtered_resps"][0]
    benchmarks = tmp_path / "benchmarks"
    shutil.copytree(FIXTURES / "triviaqa", benchmarks / "triviaqa")
    items = fixture_rows("triviaqa", "validation")
    items[first["doc_id"]]["answer"]["aliases"] = [answer.upper() + "!"]
    (benchmarks / "triviaqa" / "validation.jsonl").write_text(
        "".join(json.dumps(item) + "\n" for item in items)
    )
    triviaqa = Suite("t", "Table 5", (Task("triviaqa", "TriviaQA", "exact_match",
                                           "remove_whitespace"),))  # fmt: skip
    settings = SuiteSettings(**{**SETTINGS.__dict__, "benchmarks": str(benchmarks)})
    report = run_suites(str(run_dir / "run"), [triviaqa], tmp_path / "work", settings)
    assert report["suites"]["t"]["rows"][0]["value"] == 0.25


def test_code_is_scored_by_running_each_program_in_the_sandbox(run_dir, every_suite):
    table = rows(every_suite, "code")
    for task, shots in (("humaneval", 0), ("mbpp", 3)):
        items = samples(run_dir, task, shots)
        outcomes = []
        for item in items:
            program = item["filtered_resps"]
            program = program[0] if isinstance(program, list) else program
            outcomes.append(run_program(f"{program}\n{item['target']}\n").passed)
        assert table[task, shots]["value"] == sum(outcomes) / len(items)
    for problem in fixture_rows("humaneval", "test"):
        tests = f"{problem['test']}\ncheck({problem['entry_point']})"
        right = problem["prompt"] + problem["canonical_solution"]
        assert pass_at_1([tests], [[right]]) == 1.0
        assert pass_at_1([tests], [[problem["prompt"] + "    while True:\n        pass\n"]]) == 0


def test_toxicity_is_the_configured_scorers(run_dir, every_suite, perspective):
    items = samples(run_dir, "realtoxicityprompts", 0)
    expected = sum(toxicity_of(item["resps"][0][0]) for item in items) / len(items)
    [row] = [r for r in every_suite["suites"]["responsible"]["rows"] if r["metric"] == "toxicity"]
    assert row["value"] == pytest.approx(expected)
    assert Perspective.keys[-len(items) :] == ["test-key"] * len(items)


def test_unavailable_tasks_are_reported_with_the_reason(run_dir, tmp_path, monkeypatch):
    """Offline without a local copy, or without a toxicity scorer: the row stays, says why,
    and has no value (never a zero)."""
    for key in ("PERSPECTIVE_API_KEY", "LLAMAPIPE_TOXICITY_MODEL"):
        monkeypatch.delenv(key, raising=False)
    benchmarks = tmp_path / "benchmarks"
    shutil.copytree(FIXTURES / "piqa", benchmarks / "piqa")
    suite = Suite("t", "Tables 3, 11", (
        Task("piqa", "PIQA", "acc_norm"), Task("boolq", "BoolQ", "acc"),
        Task("realtoxicityprompts", "RTP", "toxicity", needs_toxicity_scorer=True),
    ))  # fmt: skip
    settings = SuiteSettings(**{**SETTINGS.__dict__, "benchmarks": str(benchmarks)})
    report = run_suites(str(run_dir / "run"), [suite], tmp_path / "work", settings)
    piqa, boolq, rtp = report["suites"]["t"]["rows"]
    assert piqa["status"] == "ok" and piqa["n"] == 4
    assert boolq["status"] == "unavailable" and "value" not in boolq
    assert boolq["reason"] == f"offline and no local copy of boolq in {benchmarks}"
    assert rtp["status"] == "unavailable" and rtp["reason"].startswith("no toxicity scorer")
    table = suite_tables(report["suites"], "7B")["t"].splitlines()
    assert table[3].startswith("BoolQ (0-shot) | acc | unavailable: offline") and "76.5" in table[3]


def test_the_cli_gives_the_export_the_checkpoints_numbers(run_dir, every_suite, perspective):
    """`llamapipe eval --suite common_sense,code,responsible` on the HF export: the tables
    show the paper's 7B numbers beside ours, and ours equal the native checkpoint's."""
    command = [Path(sys.executable).parent / "llamapipe", "eval", "--hf", run_dir / "hf"]
    command += ["--suite", DONE_WHEN, "--benchmarks", FIXTURES, "--offline"]
    command += ["--max-gen-toks", "16", "--out", run_dir / "hf_eval"]
    env = {**os.environ, **perspective, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    native = suite_tables(
        {name: every_suite["suites"][name] for name in DONE_WHEN.split(",")}, "7B"
    )
    for suite in suites_named(DONE_WHEN):
        assert f"{suite.name} (paper 7B)\n{native[suite.name]}\n" in result.stdout
    assert "BoolQ (0-shot) | acc | " in result.stdout and " | 76.5 | " in result.stdout


def test_suites_during_training_follow_each_checkpoint(run_dir, tmp_path):
    """`eval_suites`: every checkpoint's suite rows in `suites.jsonl`, each equal to the suite
    run on that checkpoint afterwards, and the `pretrain` metadata's curve and table."""
    from small_run import small_run

    from assets.training import suite_metadata
    from curation.core.storage import Storage
    from training.train import main as train_main

    config = small_run(
        run_dir / "shards", tmp_path / "run", max_steps=20, checkpoint_interval=10,
        eval_suites="reading", eval_benchmarks=str(FIXTURES), eval_suite_limit=0,
    )  # fmt: skip
    (tmp_path / "run.json").write_text(config.to_json())
    assert train_main(["--config", str(tmp_path / "run.json")]) == 0
    lines = (tmp_path / "run" / "suites.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert [(p["step"], p["tokens_seen"]) for p in points] == [(10, 5120), (20, 10240)]
    for point in points:
        checkpoint = tmp_path / "run" / "checkpoints" / f"step-{point['step']:07d}"
        again = run_suites(str(checkpoint), suites_named("reading"), tmp_path / "again", SETTINGS)
        assert point["suites"] == again["suites"]
    metadata = suite_metadata(Storage(str(tmp_path)), str(tmp_path / "run"), "suites")
    assert "suites.png" in metadata["suite_curve"].value
    assert "RACE-high (0-shot) | acc |" in metadata["suite reading at step 20"].value


def test_an_overlap_report_marks_the_items_the_corpus_held(run_dir, tmp_path):
    """With the decontaminated stage's report, a row counts the items the training corpus
    held and gives its value without them; a set the report lacks, or a task whose documents
    are not the copy's lines (winogender's per-gender filter), says so instead."""
    report = tmp_path / "all.overlaps"
    report.mkdir()
    overlaps = {"boolq/validation": [0, 3], "winogender/test": [0]}
    (report / "overlaps.json").write_text(json.dumps(overlaps))
    suite = Suite("t", "Tables 3, 13", (
        Task("boolq", "BoolQ", "acc"), Task("piqa", "PIQA", "acc_norm"),
        Task("winogender_female", "her", "acc", data="winogender"),
    ))  # fmt: skip
    settings = SuiteSettings(**{**SETTINGS.__dict__, "contamination": str(report)})
    result = run_suites(str(run_dir / "run"), [suite], tmp_path / "work", settings)
    boolq, piqa, female = result["suites"]["t"]["rows"]
    items = samples(tmp_path, "boolq", 0, where="work")
    clean = [item["acc"] for item in items if item["doc_id"] not in (0, 3)]
    assert boolq["contaminated"] == 2 and boolq["clean_value"] == sum(clean) / 2
    assert piqa["contamination"] == "not checked: the report has no piqa/validation"
    assert female["contamination"] == "not matched: 2 documents, 6 lines in test.jsonl"
    table = suite_tables(result["suites"], "7B")["t"].splitlines()
    assert table[0].endswith("| without items the corpus held")
    assert table[2].endswith(f"| {100 * boolq['clean_value']:.1f} (2 held)")
