"""Held-out evaluation: loss, perplexity and bits per byte on the validation split.

What is scored. Documents are framed as in training, `<s> ids </s>` (curation/tokens/shards.py),
and a document's targets are its ids and its `</s>`. The `<s>` that follows a `</s>` is not
scored: it is a forced prediction that says nothing about the text, and bits per byte must
measure the text alone. So both readings below score the same targets.

Two ways to read the validation split of a `tokenized_shards` directory:

- The stream (`documents=None`): the split's token stream, as the trainer sees it, cut into
  consecutive windows of `seq_len` inputs; every stream token after the first is predicted
  once, with the context of its own window (which may reach into the previous document).
  Totals only: per-document corpus labels are not in the shards.
- Documents (`documents=[(corpus, token ids), ...]`): each document alone, `<s> ids </s>`,
  in windows of `seq_len`; totals and the same numbers per corpus.
  `labelled_validation_documents` pairs the shards' validation documents with the `source`
  column of the mixture parts they were made from.

Numbers: `loss` is the mean negative log-likelihood in nats per scored token, `perplexity` =
exp(loss), `bits_per_byte` = total nats / ln 2 / UTF-8 bytes of the evaluated text, decoded
with the tokenizer copy in the data directory (a tokenizer-independent number: models with
different vocabularies compare on it). Deterministic: no sampling, fixed order,
`torch.no_grad`, eval mode; CPU is fine for the sample world.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.inputs import read_stream
from curation.tokens.shards import iter_documents
from model.llama import Llama
from training.data import TokenStream, tokenizer_file

VALIDATION = "validation"
IGNORE = -100  # a target that is not scored (F.cross_entropy's ignore_index)


class _Totals:
    """Summed nats, predicted tokens and text bytes."""

    def __init__(self) -> None:
        self.nats = 0.0
        self.tokens = 0
        self.bytes = 0
        self.documents = 0

    def metrics(self) -> dict:
        loss = self.nats / self.tokens if self.tokens else float("nan")
        return {
            "loss": loss,
            "perplexity": math.exp(loss) if self.tokens else float("nan"),
            "bits_per_byte": self.nats / math.log(2) / self.bytes if self.bytes else float("nan"),
            "tokens": self.tokens,
            "bytes": self.bytes,
            "documents": self.documents,
        }


def _windows(
    sequence: np.ndarray, seq_len: int, bos_id: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) of consecutive windows: every position after the first is a target
    exactly once; `<s>` targets are IGNORE (not scored)."""
    for start in range(0, len(sequence) - 1, seq_len):
        chunk = sequence[start : start + seq_len + 1]
        yield chunk[:-1], np.where(chunk[1:] == bos_id, IGNORE, chunk[1:])


@torch.no_grad()
def _score(
    model: Llama,
    windows: Iterable[tuple[object, np.ndarray, np.ndarray]],
    batch_size: int,
) -> Iterator[tuple[object, float, int]]:
    """(key, summed nats, target count) per window, batched with right padding."""
    device = model.output.weight.device
    batch: list[tuple[object, np.ndarray, np.ndarray]] = []

    def run() -> Iterator[tuple[object, float, int]]:
        width = max(len(x) for _, x, _ in batch)
        inputs = torch.zeros(len(batch), width, dtype=torch.long)
        targets = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for row, (_, x, y) in enumerate(batch):
            inputs[row, : len(x)] = torch.from_numpy(x.astype(np.int64))
            targets[row, : len(y)] = torch.from_numpy(y.astype(np.int64))
        logits = model(inputs.to(device)).float()
        nll = F.cross_entropy(
            logits.transpose(1, 2), targets.to(device), ignore_index=IGNORE, reduction="none"
        ).sum(dim=1)
        for (key, _, y), value in zip(batch, nll.tolist(), strict=True):
            yield key, value, int((y != IGNORE).sum())

    for item in windows:
        batch.append(item)
        if len(batch) == batch_size:
            yield from run()
            batch = []
    if batch:
        yield from run()


def _text_bytes(sp: spm.SentencePieceProcessor, tokens: np.ndarray, framing: set[int]) -> int:
    """UTF-8 bytes of a stretch of stream: the ids between framing tokens, each run decoded
    alone (a document, or the part of one the stretch holds)."""
    marks = np.flatnonzero(np.isin(tokens, list(framing)))
    pieces = np.split(tokens, np.sort(np.concatenate([marks, marks + 1])))
    return sum(
        len(sp.decode(piece.tolist()).encode("utf-8"))
        for piece in pieces
        if len(piece) and piece[0] not in framing
    )


def heldout_metrics(
    model: Llama,
    data_dir: str | os.PathLike,
    *,
    max_tokens: int | None = 1_000_000,
    batch_size: int = 8,
    seq_len: int | None = None,
    documents: Iterable[tuple[str, Sequence[int]]] | None = None,
) -> dict:
    """Held-out loss, perplexity and bits per byte (module docstring) of `model` on the
    validation split of the tokenized_shards directory `data_dir`.

    `max_tokens` bounds the scored tokens (None: the whole split; the stream's first
    max_tokens + 1 tokens are read; with `documents`, whole documents are taken until the
    budget is reached). `seq_len` defaults to the model's context. Returns {"loss",
    "perplexity", "bits_per_byte", "tokens", "bytes", "documents"} plus, with `documents`,
    "per_corpus": {corpus: the same keys}.
    """
    data_dir = os.fspath(data_dir)
    seq_len = seq_len or model.config.max_seq_len
    sp = spm.SentencePieceProcessor(model_file=tokenizer_file(data_dir))
    stream = TokenStream(data_dir, VALIDATION)
    was_training = model.training
    model.eval()
    try:
        if documents is None:
            return _stream_metrics(model, stream, sp, max_tokens, batch_size, seq_len)
        return _document_metrics(model, documents, stream, sp, max_tokens, batch_size, seq_len)
    finally:
        model.train(was_training)


def _stream_metrics(
    model: Llama,
    stream: TokenStream,
    sp: spm.SentencePieceProcessor,
    max_tokens: int | None,
    batch_size: int,
    seq_len: int,
) -> dict:
    n = stream.n_tokens if max_tokens is None else min(stream.n_tokens, max_tokens + 1)
    if n < 2:
        raise ValueError("the validation split has no tokens to score")
    tokens = stream.read(0, n).astype(np.int64)
    totals = _Totals()
    windows = ((None, x, y) for x, y in _windows(tokens, seq_len, stream.bos_id))
    for _, nats, count in _score(model, windows, batch_size):
        totals.nats += nats
        totals.tokens += count
    totals.bytes = _text_bytes(sp, tokens, {stream.bos_id, stream.eos_id})
    totals.documents = int((tokens == stream.eos_id).sum())
    return totals.metrics()


def _document_metrics(
    model: Llama,
    documents: Iterable[tuple[str, Sequence[int]]],
    stream: TokenStream,
    sp: spm.SentencePieceProcessor,
    max_tokens: int | None,
    batch_size: int,
    seq_len: int,
) -> dict:
    overall, per_corpus = _Totals(), defaultdict(_Totals)
    bos_id, eos_id = stream.bos_id, stream.eos_id

    def windows() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        budget = 0
        for corpus, ids in documents:
            if max_tokens is not None and budget >= max_tokens:
                return
            ids = np.asarray(ids, dtype=np.int64)
            sequence = np.concatenate([[bos_id], ids, [eos_id]]).astype(np.int64)
            budget += len(ids) + 1
            text_bytes = len(sp.decode(ids.tolist()).encode("utf-8"))
            for totals in (overall, per_corpus[corpus]):
                totals.bytes += text_bytes
                totals.documents += 1
            for x, y in _windows(sequence, seq_len, bos_id):
                yield corpus, x, y

    for corpus, nats, count in _score(model, windows(), batch_size):
        for totals in (overall, per_corpus[corpus]):
            totals.nats += nats
            totals.tokens += count
    if not overall.tokens:
        raise ValueError("no documents to evaluate")
    return {
        **overall.metrics(),
        "per_corpus": {name: per_corpus[name].metrics() for name in sorted(per_corpus)},
    }


def validation_sources(
    mixture_parts: Sequence[str], storage: Storage | None = None
) -> Iterator[str]:
    """The `source` of every validation row with non-empty text of the mixture parts, in part
    and row order: the order tokenized_shards wrote the validation documents in."""
    storage = storage or Storage(".")
    for shard in contract_parts(storage, list(mixture_parts)):
        for batch in read_stream(storage, shard, ["source", "text"]):
            text = batch.table.column("text").to_pylist()
            sources = batch.table.column("source").to_pylist()
            for source, body, validation in zip(sources, text, batch.validation, strict=True):
                if validation and body:
                    yield source


def located(locations: Sequence[str]) -> tuple[Storage, list[str]]:
    """Paths on this machine, or URIs of one store, as one storage and the paths in it."""
    if not any("://" in location for location in locations):
        return Storage("."), [os.path.abspath(location) for location in locations]
    return Storage(locations[0]), [Storage(location).base for location in locations]


def labelled_validation_documents(
    data_dir: str | os.PathLike,
    mixture_parts: Sequence[str],
    storage: Storage | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """(corpus, token ids) per validation document of `data_dir`, the corpus read from the
    mixture parts the shards were made from (`mixture_parts`: part files or a partition
    directory, as given to tokenized_shards). A count mismatch (the wrong mixture) raises."""
    parts = list(map(os.fspath, mixture_parts))
    if storage is None:
        storage, parts = located(parts)
    shards = Storage(os.fspath(data_dir))
    path = shards.base
    sources = validation_sources(parts, storage)
    try:
        yield from zip(sources, iter_documents(shards, path, VALIDATION), strict=True)
    except ValueError as exc:
        raise ValueError(
            f"the mixture's validation rows do not match the documents of {path}: {exc}"
        ) from exc
