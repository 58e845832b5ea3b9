"""Synthetic `tokenized_shards` for trainer tests, written directly in the shard format
(curation/tokens/shards.py) without a tokenizer: fast, and learnable on purpose.

The documents come from a sparse Markov chain: each token has 4 possible successors, so a
model that learns the transitions brings the loss from ln(vocab) down towards ln(4). Each is
framed `<s> ids </s>`, as the shard writer frames documents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curation.tokens.shards_manifest import (
    Excluded,
    ShardCounts,
    ShardFile,
    TokenFormat,
    TokenizerRecord,
    TokenShardsManifest,
    TokenSplit,
)

BOS, EOS = 1, 2
FIRST_ID = 3  # 0, 1, 2 are <unk>, <s>, </s>


def markov_tokens(n_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
    """`n_tokens` of documents (length 50 to 400, framing included), each `<s> ids </s>`; the
    last may be cut short."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(FIRST_ID, vocab_size, size=(vocab_size, 4))
    out = np.empty(n_tokens, dtype=np.uint16)
    pos = 0
    while pos < n_tokens:
        length = min(int(rng.integers(50, 400)), n_tokens - pos)
        token = int(rng.integers(FIRST_ID, vocab_size))
        choices = rng.integers(0, 4, size=length)
        out[pos] = BOS
        for i in range(1, length - 1):
            out[pos + i] = token
            token = int(successors[token, choices[i]])
        out[pos + length - 1] = EOS
        pos += length
    return out


def write_shards(
    root: Path,
    train_tokens: int = 200_000,
    validation_tokens: int = 20_000,
    vocab_size: int = 256,
    shard_tokens: int = 65_536,
    seed: int = 0,
) -> Path:
    """A tokenized_shards directory under `root`: what TokenLoader and the trainer read."""
    splits = {}
    # One chain for both splits (same language), different documents.
    tokens = markov_tokens(train_tokens + validation_tokens, vocab_size, seed)
    for split, part in (("train", tokens[:train_tokens]), ("validation", tokens[train_tokens:])):
        (root / split).mkdir(parents=True)
        shards = []
        for index, start in enumerate(range(0, len(part), shard_tokens)):
            name = f"shard-{index:05d}"
            chunk = part[start : start + shard_tokens]
            (root / split / f"{name}.bin").write_bytes(chunk.astype("<u2").tobytes())
            # No document index and no hashes: what the loader and the trainer read, no more.
            shards.append(ShardFile(name, len(chunk), int((chunk == EOS).sum()), "", ""))
        documents = sum(s.documents for s in shards)
        splits[split] = TokenSplit(documents, len(part), (), {}, tuple(shards))
    manifest = TokenShardsManifest(
        stage="tokenized_shards",
        version="2",
        fingerprint="",
        plan_fingerprint="",
        inputs=(),
        tokenizer=TokenizerRecord("", "", vocab_size, EOS, BOS),
        format=TokenFormat("uint16", "little", shard_tokens, "<s> ids </s>", BOS, EOS, True),
        counts=ShardCounts(0, 0, 0, Excluded(0, 0), {s: b.documents for s, b in splits.items()}, 0),
        splits=splits,
        output_fingerprint="",
    )
    (root / "_manifest.json").write_text(manifest.to_json())
    return root
