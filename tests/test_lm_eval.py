"""Our checkpoint in lm-evaluation-harness: the `llamapipe` model scores like a direct forward
and like the harness's own `hf` model on the export, and runs the offline tasks from Python
and from the command line, reporting what the model's own log-likelihoods give.

The checkpoint is trained (30 steps of the tiny preset on real shards), so the scores are not
those of a uniform model, where any framing or window mistake could hide. Every text is framed
as in training: `<s>` first."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from test_evaluate import build_run

from curation.core.storage import Storage
from curation.tokens.shards import decode_documents
from model import Llama
from model.hf import export_hf
from training.checkpoint import load_model
from training.evaluation.lm_eval_model import LlamapipeLM
from training.evaluation.offline_tasks import (
    CONTINUATION_TASK,
    OFFLINE_TASKS,
    ROLLING_TASK,
    write_offline_tasks,
)

pytestmark = pytest.mark.slow
REQUESTS = [
    ("All human beings are born", " free and equal"),
    ("def fibonacci_7(n: int)", " -> list[int]:"),
    ("the strings ", "and the numbers 12"),
    ("", "Tous les êtres humains"),
]


BOS = 1
RTOL = 1e-4


def instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


@torch.no_grad()
def target_logprobs(model: Llama, inputs: list[int], targets: list[int]) -> torch.Tensor:
    """log p(targets[i] | inputs[: i + 1]) from one forward of our model."""
    logprobs = F.log_softmax(model(torch.tensor([inputs])).float(), -1)[0]
    return logprobs.gather(1, torch.tensor(targets)[:, None])[:, 0]


def direct_loglikelihood(model: Llama, sp, context: str, continuation: str) -> float:
    """log p(continuation | `<s>` context), split into tokens as the harness splits: the
    continuation is what context + continuation encodes to after the context (whose trailing
    spaces move to the continuation)."""
    ctx = [BOS, *sp.encode(context.rstrip())] if context else [BOS]
    whole = [BOS, *sp.encode(context + continuation)]
    scores = target_logprobs(model, whole[:-1], whole[1:])
    return scores[len(ctx) - 1 :].sum().item()


def direct_rolling(model: Llama, ids: list[int], max_length: int) -> float:
    """log p(ids | `<s>`): each token once, in blocks of `max_length` targets, each block
    predicted from the `max_length` tokens before it (the first from `<s>` on)."""
    sequence = [BOS, *ids]
    total = 0.0
    for start in range(1, len(sequence), max_length):
        end = min(start + max_length, len(sequence))
        first = max(0, end - 1 - max_length)
        scores = target_logprobs(model, sequence[first : end - 1], sequence[first + 1 : end])
        total += scores[start - first - 1 :].sum().item()
    return total


def choice_metrics(model: Llama, sp, items: list[dict]) -> dict[str, float]:
    """acc and acc_norm of multiple-choice items (lm-eval's definitions: the most likely choice
    after " ", raw and per character), from direct log-likelihoods."""
    hits = {"acc": 0, "acc_norm": 0}
    for item in items:
        lls = [direct_loglikelihood(model, sp, item["context"], " " + c) for c in item["choices"]]
        per_char = [ll / len(c) for ll, c in zip(lls, item["choices"], strict=True)]
        hits["acc"] += max(range(len(lls)), key=lls.__getitem__) == item["label"]
        hits["acc_norm"] += max(range(len(lls)), key=per_char.__getitem__) == item["label"]
    return {name: count / len(items) for name, count in hits.items()}


def task_rows(run_dir: Path, task: str, limit: int) -> list[dict]:
    """The first `limit` rows of an offline task: the items the harness evaluates."""
    lines = (run_dir / "tasks" / f"{task}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:limit]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = build_run(tmp_path_factory.mktemp("lm_eval"), steps=30)
    texts = decode_documents(Storage(str(root)), str(root / "shards"), "validation")
    write_offline_tasks(texts, root / "tasks", max_items=24)
    return root


@pytest.fixture(scope="module")
def lm(run_dir) -> LlamapipeLM:
    return LlamapipeLM(checkpoint=str(run_dir / "run"), batch_size=3, device="cpu")


def test_loglikelihood_is_the_sum_of_log_softmax(lm, run_dir):
    model, _ = load_model(run_dir / "run")
    results = lm.loglikelihood(instances("loglikelihood", REQUESTS))
    for (context, continuation), (value, greedy) in zip(REQUESTS, results, strict=True):
        assert value == pytest.approx(direct_loglikelihood(model, lm.sp, context, continuation))
        assert isinstance(greedy, bool)
    text = " ".join(["abc 123 the strings and more"] * 12)  # several windows of 64
    assert len(lm.sp.encode(text)) > 2 * lm.max_length
    [rolling] = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
    direct = direct_rolling(model, lm.sp.encode(text), lm.max_length)
    assert rolling == pytest.approx(direct, rel=RTOL)
    out = lm.generate_until(
        instances("generate_until", [("the", {"until": ["\n"], "max_gen_toks": 8})])
    )
    assert isinstance(out[0], str) and "\n" not in out[0]


def test_the_export_in_the_harness_scores_what_our_model_scores(lm, run_dir):
    """The trained checkpoint exported in float32, in the harness's own `hf` model: the same
    log-likelihoods to 1e-4 relative, with `<s>` first either way."""
    model, state = load_model(run_dir / "run")
    export = export_hf(
        model, Path(state["config"]["data_dir"]) / "tokenizer.model", run_dir / "hf", torch.float32
    )
    settings = {"pretrained": str(export), "device": "cpu", "batch_size": 2, "dtype": "float32"}
    hf = HFLM(add_bos_token=True, **settings)
    ours = lm.loglikelihood(instances("loglikelihood", REQUESTS))
    theirs = hf.loglikelihood(instances("loglikelihood", REQUESTS))
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, rel=RTOL)
        assert greedy_a == greedy_b

    # Rolling texts, several windows of the model's 64 tokens each: the harness conditions on
    # `<s>` itself, so its tokenizer must not add one (add_bos_token=False).
    texts = [t for t in (r["text"] for r in task_rows(run_dir, ROLLING_TASK, 40)) if t[0] != " "]
    texts = [t for t in texts if len(lm.sp.encode(t)) > 2 * lm.max_length][:4]
    assert len(texts) == 4
    requests = instances("loglikelihood_rolling", [(t,) for t in texts])
    ours_rolling = lm.loglikelihood_rolling(requests)
    theirs_rolling = HFLM(add_bos_token=False, **settings).loglikelihood_rolling(requests)
    assert ours_rolling == pytest.approx(theirs_rolling, rel=RTOL)
    # With add_bos_token=True it scores `<s>` `<s>` text: the second `<s>` as the first target.
    [doubled] = hf.loglikelihood_rolling(requests[:1])
    expected = direct_rolling(model, [BOS, *lm.sp.encode(texts[0])], lm.max_length)
    assert doubled == pytest.approx(expected, rel=RTOL) and doubled < ours_rolling[0]

    # The offline multiple-choice task through the harness: the same scores either way.
    task = {"tasks": [CONTINUATION_TASK], "limit": 8}
    manager = TaskManager(include_path=str(run_dir / "tasks"))
    on_export = simple_evaluate(model=hf, task_manager=manager, **task)["results"]
    on_ours = simple_evaluate(model=lm, task_manager=manager, **task)["results"]
    for metric in ("acc,none", "acc_norm,none"):
        assert on_export[CONTINUATION_TASK][metric] == on_ours[CONTINUATION_TASK][metric]


def test_offline_tasks_from_python(lm, run_dir):
    """The harness's numbers are the ones the model's own log-likelihoods give."""
    results = simple_evaluate(
        model=lm,
        tasks=list(OFFLINE_TASKS),
        task_manager=TaskManager(include_path=str(run_dir / "tasks")),
        limit=12,
    )["results"]
    model, _ = load_model(run_dir / "run")
    expected = choice_metrics(model, lm.sp, task_rows(run_dir, CONTINUATION_TASK, 12))
    choice = results[CONTINUATION_TASK]
    assert (choice["acc,none"], choice["acc_norm,none"]) == (expected["acc"], expected["acc_norm"])

    texts = [row["text"] for row in task_rows(run_dir, ROLLING_TASK, 12)]
    nats = -sum(direct_rolling(model, lm.sp.encode(t), lm.max_length) for t in texts)
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    words = sum(len(re.split(r"\s+", t)) for t in texts)
    rolling = results[ROLLING_TASK]
    assert rolling["bits_per_byte,none"] == pytest.approx(nats / text_bytes / math.log(2), RTOL)
    assert rolling["byte_perplexity,none"] == pytest.approx(math.exp(nats / text_bytes), RTOL)
    assert rolling["word_perplexity,none"] == pytest.approx(math.exp(nats / words), RTOL)


def test_offline_tasks_from_the_command_line(run_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-m", "training.evaluation.lm_eval_model", "--model", "llamapipe",
         "--model_args", f"checkpoint={run_dir / 'run'}", "--batch_size", "4", "--device", "cpu",
         "--tasks", CONTINUATION_TASK, "--include_path", str(run_dir / "tasks"),
         "--limit", "8", "--output_path", str(tmp_path / "out")],
        check=True, capture_output=True, text=True, timeout=600, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    [result] = list((tmp_path / "out").rglob("results_*.json"))
    reported = json.loads(result.read_text())["results"][CONTINUATION_TASK]
    model, _ = load_model(run_dir / "run")
    sp = LlamapipeLM(checkpoint=str(run_dir / "run"), device="cpu").sp
    expected = choice_metrics(model, sp, task_rows(run_dir, CONTINUATION_TASK, 8))
    assert (reported["acc,none"], reported["acc_norm,none"]) == (
        expected["acc"], expected["acc_norm"]
    )  # fmt: skip
