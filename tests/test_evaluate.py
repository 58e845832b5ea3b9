"""Held-out evaluation on a real tiny run: tokenizer, shards with a validation split, 40
training steps. The trained model beats its own initialization on held-out perplexity, and
per-corpus numbers come from the mixture's `source` column."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
import torch.nn.functional as F
from small_run import small_run
from token_corpus import documents, write_parts

from curation.core.storage import Storage
from curation.tokens.shards import iter_documents, read_shards_manifest, write_token_shards
from curation.tokens.tokenizer import MODEL_NAME, TokenizerConfig, train_tokenizer
from model import Llama
from training.checkpoint import load_model
from training.data import TokenStream
from training.evaluation.heldout import heldout_metrics, labelled_validation_documents
from training.train import main as train_main

pytestmark = pytest.mark.slow
STEPS = 40


def build_run(root: Path, steps: int = STEPS) -> Path:
    """Tokenizer + shards (every 5th row held out) + `steps` training steps under `root`."""
    storage = Storage(str(root))
    rows = documents(300)
    for i, row in enumerate(rows):
        row["split"] = "validation" if i % 5 == 0 else "train"
    parts = write_parts(root / "docs", rows, 100)
    tokenizer = train_tokenizer(parts, str(root / "tok"), storage, TokenizerConfig(vocab_size=600))
    write_token_shards(parts, tokenizer.model_path, str(root / "shards"), storage)
    config = small_run(
        root / "shards",
        root / "run",
        max_steps=steps,
        checkpoint_interval=steps,
        log_interval=steps,
    )
    (root / "run.json").write_text(config.to_json())
    assert train_main(["--config", str(root / "run.json")]) in (0, None)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("evaluate"))


def test_trained_model_beats_its_initialization(run_dir):
    trained, state = load_model(run_dir / "run")
    torch.manual_seed(state["config"]["seed"])
    untrained = Llama(trained.config)
    shards = run_dir / "shards"
    after = heldout_metrics(trained, shards, max_tokens=4000, seq_len=64)
    before = heldout_metrics(untrained, shards, max_tokens=4000, seq_len=64)
    scored = int((TokenStream(str(shards), "validation").read(1, 4001) != 1).sum())  # not <s>
    for metrics in (after, before):
        assert all(math.isfinite(metrics[k]) for k in ("loss", "perplexity", "bits_per_byte"))
        assert metrics["tokens"] == scored and metrics["bytes"] > 0
        assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]))
    assert before["perplexity"] == pytest.approx(600, rel=0.5)  # near-uniform at init
    assert after["perplexity"] < 0.5 * before["perplexity"]
    assert after["bits_per_byte"] < before["bits_per_byte"]
    assert heldout_metrics(trained, shards, max_tokens=4000, seq_len=64) == after  # deterministic


def test_heldout_scores_every_token_but_bos(run_dir):
    """A document's targets are its ids and its `</s>`; the `<s>` after a `</s>` is not scored,
    so the stream and the documents read alone score the same tokens and bytes."""
    model, _ = load_model(run_dir / "run")
    shards = run_dir / "shards"
    stream = TokenStream(str(shards), "validation")
    tokens = torch.from_numpy(stream.read(0, 301).astype(np.int64))
    nats, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, 300, 64):  # the first 300 targets, in windows of 64
            window = tokens[start : start + 65]
            logprobs = F.log_softmax(model(window[None, :-1]).float(), -1)[0]
            picked = logprobs.gather(1, window[1:, None])[:, 0]
            scored = window[1:] != stream.bos_id
            nats -= picked[scored].sum().item()
            count += int(scored.sum())
    first = heldout_metrics(model, shards, max_tokens=300, seq_len=64)
    assert first["tokens"] == count < 300
    assert first["loss"] == pytest.approx(nats / count, rel=1e-5)

    storage = Storage(str(run_dir))
    sp = spm.SentencePieceProcessor(model_file=str(shards / MODEL_NAME))
    documents = list(iter_documents(storage, str(shards), "validation"))
    whole = heldout_metrics(model, shards, max_tokens=None, seq_len=64)
    alone = heldout_metrics(
        model, shards, documents=[("all", d) for d in documents], max_tokens=None, seq_len=64
    )
    assert whole["tokens"] == alone["tokens"] == sum(len(ids) + 1 for ids in documents)
    text_bytes = sum(len(sp.decode(ids.tolist()).encode("utf-8")) for ids in documents)
    assert whole["bytes"] == alone["bytes"] == text_bytes
    assert whole["documents"] == alone["documents"] == len(documents)


def test_per_corpus_numbers_from_the_mixture_labels(run_dir):
    model, _ = load_model(run_dir / "run")
    shards = run_dir / "shards"
    labelled = list(labelled_validation_documents(shards, [str(run_dir / "docs")]))
    storage = Storage(str(run_dir))
    plain = list(iter_documents(storage, str(shards), "validation"))
    assert len(labelled) == len(plain) == 60
    assert all(np.array_equal(a, b) for (_, a), b in zip(labelled, plain, strict=True))
    manifest = read_shards_manifest(storage, str(shards))
    counted: dict[str, int] = {}
    for source, _ in labelled:
        counted[source] = counted.get(source, 0) + 1
    expected = manifest.splits["validation"].sources
    assert counted == {source: c.documents for source, c in expected.items()}
    metrics = heldout_metrics(model, shards, documents=labelled, max_tokens=None, seq_len=64)
    per = metrics["per_corpus"]
    assert set(per) == {"commoncrawl", "github", "wikipedia"}
    assert sum(c["tokens"] for c in per.values()) == metrics["tokens"]
    assert sum(c["documents"] for c in per.values()) == metrics["documents"] == 60
    assert all(math.isfinite(c["bits_per_byte"]) and c["bytes"] > 0 for c in per.values())
    assert all(c["loss"] < math.log(600) for c in per.values())  # better than uniform


def test_the_cli_evaluation_reports_trained_untrained_and_a_sample(run_dir, tmp_path):
    """`llamapipe eval`: the table the `evaluation` asset shows, from the same function."""
    import subprocess
    import sys

    llamapipe = Path(sys.executable).parent / "llamapipe"
    result = subprocess.run(
        [llamapipe, "eval", "--checkpoint", run_dir / "run", "--mixture", run_dir / "docs",
         "--out", tmp_path / "eval", "--max-tokens", "3000", "--limit", "8"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if "|" in line}
    trained, untrained = (float(c) for c in rows["heldout perplexity"].split("|")[2:4])
    assert trained < untrained
    assert "heldout_continuation acc" in rows and "heldout perplexity: github" in rows
    assert "sample: " in result.stdout
