"""From the command line: train a checkpoint, export it for transformers, import it back,
generate from it. The numbers are compared with transformers on the exported directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from small_run import small_run
from token_corpus import documents, write_parts

from curation.core.storage import Storage
from curation.tokens.shards import write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer
from training.checkpoint import load_model

pytestmark = pytest.mark.slow
LLAMAPIPE = Path(sys.executable).parent / "llamapipe"


def llamapipe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [LLAMAPIPE, *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Real tokenizer, real token shards, 8 training steps of the tiny preset."""
    root = tmp_path_factory.mktemp("model_cli")
    storage = Storage(str(root))
    parts = write_parts(root / "docs", documents(300), 100)
    tokenizer = train_tokenizer(parts, str(root / "tok"), storage, TokenizerConfig(vocab_size=600))
    write_token_shards(parts, tokenizer.model_path, str(root / "shards"), storage)
    config = small_run(
        root / "shards",
        root / "run",
        micro_batch_size=4,
        max_steps=8,
        warmup_steps=2,
        checkpoint_interval=4,
        log_interval=4,
    )
    (root / "run.json").write_text(config.to_json())
    llamapipe("train", "--config", root / "run.json")
    return root


def test_export_loads_in_transformers_with_the_same_logits(run_dir):
    from transformers import LlamaForCausalLM, LlamaTokenizer

    llamapipe(
        "export-hf", "--checkpoint", run_dir / "run", "--out", run_dir / "hf", "--dtype", "float32"
    )
    ours, _ = load_model(run_dir / "run")
    theirs = LlamaForCausalLM.from_pretrained(run_dir / "hf", torch_dtype=torch.float32).eval()
    tokens = torch.randint(
        3, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        difference = (ours.eval()(tokens) - theirs(tokens).logits).abs().max().item()
    assert difference < 1e-4
    assert LlamaTokenizer.from_pretrained(run_dir / "hf").encode("abc 123")[0] == 1  # <s> first


def test_import_then_generate_continues_the_prompt(run_dir):
    llamapipe(
        "export-hf", "--checkpoint", run_dir / "run", "--out", run_dir / "hf2", "--dtype", "float32"
    )
    llamapipe("import-hf", "--hf", run_dir / "hf2", "--out", run_dir / "imported")
    original, _ = load_model(run_dir / "run")
    imported, _ = load_model(run_dir / "imported")
    for (name, a), b in zip(
        original.state_dict().items(), imported.state_dict().values(), strict=True
    ):
        assert torch.equal(a.float(), b.float()), name

    out = llamapipe(
        "generate",
        "--checkpoint",
        run_dir / "imported",
        "--prompt",
        "the",
        "--max-new-tokens",
        "12",
    )
    # 12 tokens follow the prompt; after 8 steps they may be whitespace (greedy picks the most
    # frequent piece), which depends on the initial weights, so only their presence is checked.
    assert out.stdout.startswith("the") and len(out.stdout.rstrip("\n")) > len("the")
    assert "[12 tokens" in out.stderr and "tokens/s" in out.stderr
    batch = llamapipe(
        "generate", "--checkpoint", run_dir / "run", "--prompt", "a", "--prompt", "b 12",
        "--max-new-tokens", "6", "--temperature", "0.8", "--top-p", "0.9", "--seed", "3",
    )  # fmt: skip
    assert batch.stdout.count("\n\n") == 2
    assert json.loads((run_dir / "run" / "result.json").read_text())["steps"] == 8
