"""Our checkpoint in lm-evaluation-harness: the `llamapipe` model scores like a direct forward
and like the harness's own `hf` model on the export, and runs the offline tasks from Python
and from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager
from test_evaluate import build_run

from curation.storage import Storage
from curation.token_shards import decode_documents
from model.hf import export_hf
from training.checkpoint import load_model
from training.lm_eval_model import LlamapipeLM
from training.offline_tasks import OFFLINE_TASKS, write_offline_tasks

pytestmark = pytest.mark.slow
REQUESTS = [
    ("All human beings are born", " free and equal"),
    ("def fibonacci_7(n: int)", " -> list[int]:"),
    ("the strings ", "and the numbers 12"),
    ("", "Tous les êtres humains"),
]


def instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


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
        # The harness moves a context's trailing spaces to the continuation.
        ctx = [1, *lm.sp.encode(context.rstrip())] if context else [1]
        whole = [1, *lm.sp.encode(context + continuation)]
        cont = whole[len(ctx) :]
        with torch.no_grad():
            logprobs = F.log_softmax(model(torch.tensor([whole[:-1]])).float(), -1)[0]
        picked = logprobs[len(ctx) - 1 :].gather(1, torch.tensor(cont)[:, None])
        assert value == pytest.approx(picked.sum().item(), abs=1e-4)
        assert isinstance(greedy, bool)
    rolling = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [("abc 123",)]))
    ids = [1, *lm.sp.encode("abc 123")]
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([ids[:-1]])).float(), -1)[0]
    direct = logprobs.gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert rolling[0] == pytest.approx(direct, abs=1e-4)
    out = lm.generate_until(
        instances("generate_until", [("the", {"until": ["\n"], "max_gen_toks": 8})])
    )
    assert isinstance(out[0], str) and "\n" not in out[0]


def test_hf_model_on_the_export_agrees(lm, run_dir):
    from lm_eval.models.huggingface import HFLM

    model, state = load_model(run_dir / "run")
    export = export_hf(
        model, Path(state["config"]["data_dir"]) / "tokenizer.model", run_dir / "hf", torch.float32
    )
    hf = HFLM(pretrained=str(export), add_bos_token=True, device="cpu", batch_size=2,
              dtype="float32")  # fmt: skip
    ours = lm.loglikelihood(instances("loglikelihood", REQUESTS))
    theirs = hf.loglikelihood(instances("loglikelihood", REQUESTS))
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
        assert greedy_a == greedy_b
    # Rolling: the harness's `hf` model encodes the text with its tokenizer's `<s>` AND
    # conditions on `<s>`, so it also scores an `<s>` after `<s>`; ours scores the text only.
    text = "abc 123 the strings and more"
    [ours_rolling] = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
    [theirs_rolling] = hf.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
    [(doubled_bos, _)] = lm._loglikelihood_tokens([(None, [1], [1, *lm.sp.encode(text)])])
    assert theirs_rolling == pytest.approx(doubled_bos, abs=1e-4)
    assert ours_rolling > theirs_rolling

    # The offline multiple-choice task through the harness: the same scores either way.
    task = {"tasks": ["heldout_continuation"], "limit": 8}
    manager = TaskManager(include_path=str(run_dir / "tasks"))
    on_export = simple_evaluate(model=hf, task_manager=manager, **task)["results"]
    on_ours = simple_evaluate(model=lm, task_manager=manager, **task)["results"]
    for metric in ("acc,none", "acc_norm,none"):
        assert on_export["heldout_continuation"][metric] == on_ours["heldout_continuation"][metric]


def test_offline_tasks_from_python(lm, run_dir):
    results = simple_evaluate(
        model=lm,
        tasks=list(OFFLINE_TASKS),
        task_manager=TaskManager(include_path=str(run_dir / "tasks")),
        limit=12,
    )["results"]
    choice = results["heldout_continuation"]
    assert 0 <= choice["acc,none"] <= 1 and 0 <= choice["acc_norm,none"] <= 1
    rolling = results["heldout_rolling"]
    assert 0 < rolling["bits_per_byte,none"] < 10


def test_offline_tasks_from_the_command_line(run_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-m", "training.lm_eval_model", "--model", "llamapipe",
         "--model_args", f"checkpoint={run_dir / 'run'}", "--batch_size", "4", "--device", "cpu",
         "--tasks", "heldout_continuation", "--include_path", str(run_dir / "tasks"),
         "--limit", "8", "--output_path", str(tmp_path / "out")],
        check=True, capture_output=True, text=True, timeout=600, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    [result] = list((tmp_path / "out").rglob("results_*.json"))
    acc = json.loads(result.read_text())["results"]["heldout_continuation"]["acc,none"]
    assert 0 <= acc <= 1
