"""lm-evaluation-harness tasks that need no internet, built from held-out documents.

CI and the sample world cannot download the paper's benchmarks, so `write_offline_tasks`
writes a task directory (YAML + JSONL, loaded with `--include_path DIR` or
`TaskManager(include_path=DIR)`; the data through the `json` dataset builder, local files
only) from texts the model never trained on, e.g. the validation split
(`curation.tokens.shards.decode_documents(storage, data_dir, "validation")`):

- `heldout_continuation` (multiple choice, acc / acc_norm): a passage's opening words, and
  four candidate continuations: its own next words and the next words of three other
  documents (seeded). Chance is 0.25; a model that learned the corpus beats it.
- `heldout_rolling` (loglikelihood_rolling): each text's word perplexity, byte perplexity and
  bits per byte, as the harness's wikitext task reports them.

The paper's own evaluation is the suites of training/evaluation/suites.py.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

CONTINUATION_TASK = "heldout_continuation"
ROLLING_TASK = "heldout_rolling"
OFFLINE_TASKS = (CONTINUATION_TASK, ROLLING_TASK)
N_CHOICES = 4


def continuation_items(
    texts: Iterable[str],
    *,
    context_words: int = 24,
    continuation_words: int = 8,
    seed: int = 0,
    max_items: int | None = None,
) -> list[dict]:
    """{"context", "choices", "label"} rows: each usable text's opening words and its true
    next words among continuations of N_CHOICES - 1 other texts, in a seeded order."""
    pieces = []
    for text in texts:
        words = text.split()
        if len(words) < 2 * continuation_words:
            continue
        k = min(context_words, len(words) - continuation_words)
        ending = " ".join(words[k : k + continuation_words])
        pieces.append((" ".join(words[:k]), ending))
    endings = sorted({ending for _, ending in pieces})
    if len(endings) < N_CHOICES:
        raise ValueError(f"need at least {N_CHOICES} usable texts with distinct endings")
    rng = random.Random(seed)
    items = []
    for context, ending in pieces:
        others = rng.sample([e for e in endings if e != ending], N_CHOICES - 1)
        choices = [ending, *others]
        rng.shuffle(choices)
        items.append({"context": context, "choices": choices, "label": choices.index(ending)})
        if max_items is not None and len(items) >= max_items:
            break
    return items


def _metrics(*names: str) -> str:
    return "".join(
        f"  - metric: {name}\n    aggregation: {aggregation}\n    higher_is_better: {better}\n"
        for name, aggregation, better in (n.split(":") for n in names)
    )


def _yaml(task: str, data_file: Path, body: str) -> str:
    return (
        f"task: {task}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {json.dumps(str(data_file))}\n"
        "test_split: test\n"
        f"{body}"
        "metadata:\n"
        "  version: 1.0\n"
    )


def write_offline_tasks(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    max_items: int | None = 500,
) -> Path:
    """Write `heldout_continuation` and `heldout_rolling` (module docstring) under `out_dir`;
    return it, for `--include_path`. `max_items` bounds each task's rows."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for t in texts if t.strip()]
    items = continuation_items(texts, seed=seed, max_items=max_items)
    rolling = [{"text": t} for t in texts[: max_items or len(texts)]]
    for name, rows in ((CONTINUATION_TASK, items), (ROLLING_TASK, rolling)):
        with open(out / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / f"{CONTINUATION_TASK}.yaml").write_text(
        _yaml(
            CONTINUATION_TASK,
            out / f"{CONTINUATION_TASK}.jsonl",
            "output_type: multiple_choice\n"
            'doc_to_text: "{{context}}"\n'
            'doc_to_choice: "{{choices}}"\n'
            'doc_to_target: "{{label}}"\n'
            "metric_list:\n" + _metrics("acc:mean:true", "acc_norm:mean:true"),
        )
    )
    (out / f"{ROLLING_TASK}.yaml").write_text(
        _yaml(
            ROLLING_TASK,
            out / f"{ROLLING_TASK}.jsonl",
            "output_type: loglikelihood_rolling\n"
            'doc_to_text: ""\n'
            'doc_to_target: "{{text}}"\n'
            "metric_list:\n"
            + _metrics(
                "word_perplexity:weighted_perplexity:false",
                "byte_perplexity:weighted_perplexity:false",
                "bits_per_byte:bits_per_byte:false",
            ),
        )
    )
    return out
