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
different vocabularies compare on it; NaN for shards written without a tokenizer copy).
Deterministic: no sampling, fixed order, `torch.no_grad`, eval mode; CPU is fine for the
sample world.

Two callers, one scoring code: the evaluation job (training/evaluation/run.py) on a loaded
checkpoint in one process, and the trainer's held-out curves (training/train.py) on the model
it is training, sharded over all its processes (`Ranks`): each data-parallel rank scores its
own batches of the same windows and the sums are added up, so the numbers are the one-process
numbers up to float rounding. `TrainingCurves` is the trainer's side: when to evaluate, and
the same documents at every evaluation, chosen once by `corpus_sample`.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F

from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.inputs import read_stream
from curation.tokens.shards import iter_documents
from curation.tokens.tokenizer import MODEL_NAME
from model.llama import Llama
from training.data import TokenStream, shards_manifest, tokenizer_file

if TYPE_CHECKING:
    from curation.tokens.shards_manifest import TokenShardsManifest
    from training.config import TrainConfig

T = TypeVar("T")
VALIDATION = "validation"
IGNORE = -100  # a target that is not scored (F.cross_entropy's ignore_index)


@dataclass(frozen=True)
class Ranks:
    """This process's place when several processes score one sharded model together (the
    trainer under FSDP and tensor parallelism). The `dp` data-parallel ranks score different
    batches of the same windows; the `tp` ranks of one data-parallel rank score the same
    batches, since tensor parallelism splits each forward among them. A sharded forward is a
    collective, so every process calls the model equally often; one process alone is
    `Ranks()`."""

    dp_rank: int = 0
    dp: int = 1
    tp_rank: int = 0
    tp: int = 1

    @property
    def first(self) -> bool:
        """Rank 0 of the job, the one that speaks for all."""
        return self.dp_rank == 0 and self.tp_rank == 0


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


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _score_batch(
    model: Llama,
    batch: list[tuple[object, np.ndarray, np.ndarray]],
    device: torch.device,
    width_multiple: int,
) -> Iterator[tuple[object, float, int]]:
    """One forward, inputs right-padded to a common width that is a multiple of
    `width_multiple` (sequence parallelism cuts the sequence among the TP ranks). Padding is
    never a target, and the causal model's scores of real positions do not see it."""
    width = max((len(x) for _, x, _ in batch), default=1)
    width = -(-width // width_multiple) * width_multiple
    inputs = torch.zeros(max(len(batch), 1), width, dtype=torch.long)
    targets = torch.full(inputs.shape, IGNORE, dtype=torch.long)
    for row, (_, x, y) in enumerate(batch):
        inputs[row, : len(x)] = torch.from_numpy(x.astype(np.int64))
        targets[row, : len(y)] = torch.from_numpy(y.astype(np.int64))
    logits = model(inputs.to(device)).float()  # called with or without windows: a collective
    if not batch:
        return
    nll = F.cross_entropy(
        logits.transpose(1, 2), targets.to(device), ignore_index=IGNORE, reduction="none"
    ).sum(dim=1)
    for (key, _, y), value in zip(batch, nll.tolist(), strict=True):
        yield key, value, int((y != IGNORE).sum())


def _tokenizer(data_dir: str) -> spm.SentencePieceProcessor | None:
    """The shards' SentencePiece copy, which bits per byte decode with; None for shards written
    without one (synthetic test shards): their byte counts are 0, the losses unaffected."""
    storage = Storage(data_dir)
    if not storage.exists(storage.path(MODEL_NAME)):
        return None
    return spm.SentencePieceProcessor(model_file=tokenizer_file(data_dir))


def _decoded_bytes(sp: spm.SentencePieceProcessor | None, ids: np.ndarray) -> int:
    """UTF-8 bytes of the text `ids` decode to (0 without a tokenizer)."""
    return 0 if sp is None else len(sp.decode(ids.tolist()).encode("utf-8"))


def _text_bytes(
    sp: spm.SentencePieceProcessor | None, tokens: np.ndarray, framing: set[int]
) -> int:
    """UTF-8 bytes of a stretch of stream: the ids between framing tokens, each run decoded
    alone (a document, or the part of one the stretch holds)."""
    marks = np.flatnonzero(np.isin(tokens, list(framing)))
    pieces = np.split(tokens, np.sort(np.concatenate([marks, marks + 1])))
    return sum(
        _decoded_bytes(sp, piece) for piece in pieces if len(piece) and piece[0] not in framing
    )


def heldout_metrics(
    model: Llama,
    data_dir: str | os.PathLike,
    *,
    max_tokens: int | None = 1_000_000,
    batch_size: int = 8,
    seq_len: int | None = None,
    documents: Iterable[tuple[str, Sequence[int]]] | None = None,
    ranks: Ranks = Ranks(),
) -> dict:
    """Held-out loss, perplexity and bits per byte (module docstring) of `model` on the
    validation split of the tokenized_shards directory `data_dir`.

    `max_tokens` bounds the scored tokens (None: the whole split; the stream's first
    max_tokens + 1 tokens are read; with `documents`, whole documents are taken until the
    budget is reached). `seq_len` defaults to the model's context. `ranks`: this process's
    place when every process of a sharded model calls this together. Returns {"loss",
    "perplexity", "bits_per_byte", "tokens", "bytes", "documents"} plus, with `documents`,
    "per_corpus": {corpus: the same keys}.
    """
    data_dir = os.fspath(data_dir)
    scoring = _Scoring(
        model, _tokenizer(data_dir), batch_size, seq_len or model.config.max_seq_len, ranks
    )
    stream = TokenStream(data_dir, VALIDATION)
    was_training = model.training
    model.eval()
    try:
        if documents is None:
            return _stream_metrics(scoring, stream, max_tokens)
        return _document_metrics(scoring, documents, stream, max_tokens)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class _Scoring:
    """What both readings score with: the model, the tokenizer for bytes (or None), the batch
    and window sizes, and the processes that score together."""

    model: Llama
    sp: spm.SentencePieceProcessor | None
    batch_size: int
    seq_len: int
    ranks: Ranks

    @property
    def device(self) -> torch.device:
        return self.model.output.weight.device

    @torch.no_grad()
    def score(
        self, windows: Iterable[tuple[object, np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[object, float, int]]:
        """(key, summed nats, target count) per window this process scores, in batches of
        `batch_size`. Every process reads all the windows, in rounds of `dp` batches:
        data-parallel rank i scores the i-th batch of each round, so the ranks' shares differ
        by one batch at most, and a rank left without one in the last round runs a forward on
        padding alone."""
        dp_rank, dp, tp = self.ranks.dp_rank, self.ranks.dp, self.ranks.tp
        for window_round in _chunks(windows, self.batch_size * dp):
            batch = window_round[dp_rank * self.batch_size : (dp_rank + 1) * self.batch_size]
            yield from _score_batch(self.model, batch, self.device, tp)

    def sum_over_ranks(self, totals: Sequence[_Totals]) -> None:
        """Add up the nats and target counts the data-parallel ranks scored, each rank once
        (its TP peers scored the same batches). Bytes and documents every rank counted in
        full."""
        if self.ranks.dp == 1:
            return
        rows = [[t.nats, t.tokens] for t in totals]
        sums = torch.tensor(rows, dtype=torch.float64, device=self.device)
        if self.ranks.tp_rank:
            sums.zero_()
        dist.all_reduce(sums)
        for t, (nats, tokens) in zip(totals, sums.tolist(), strict=True):
            t.nats, t.tokens = nats, int(tokens)


def _stream_metrics(scoring: _Scoring, stream: TokenStream, max_tokens: int | None) -> dict:
    n = stream.n_tokens if max_tokens is None else min(stream.n_tokens, max_tokens + 1)
    if n < 2:
        raise ValueError("the validation split has no tokens to score")
    tokens = stream.read(0, n).astype(np.int64)
    totals = _Totals()
    windows = ((None, x, y) for x, y in _windows(tokens, scoring.seq_len, stream.bos_id))
    for _, nats, count in scoring.score(windows):
        totals.nats += nats
        totals.tokens += count
    scoring.sum_over_ranks([totals])
    totals.bytes = _text_bytes(scoring.sp, tokens, {stream.bos_id, stream.eos_id})
    totals.documents = int((tokens == stream.eos_id).sum())
    return totals.metrics()


def take_documents(
    documents: Iterable[tuple[str, Sequence[int]]],
    max_tokens: int | None,
    corpora: Sequence[str] = (),
) -> Iterator[tuple[str, Sequence[int]]]:
    """Whole documents, in order, while fewer than `max_tokens` targets (a document's ids and
    its `</s>`) are taken; None: all of them. With `corpora`, each of them gets a share of
    max_tokens / len(corpora) targets of its own, documents of other corpora are passed over,
    and the reading stops once every share is full: validation documents come in mixture
    order, corpus after corpus, so one budget for all would score the first corpus alone."""
    if max_tokens is None:
        yield from documents
        return
    share = -(-max_tokens // max(len(corpora), 1))
    taken = dict.fromkeys(corpora or [None], 0)
    for corpus, ids in documents:
        if min(taken.values()) >= share:
            return
        key = corpus if corpora else None
        if taken.get(key, share) < share:
            taken[key] += len(ids) + 1
            yield corpus, ids


def _document_metrics(
    scoring: _Scoring,
    documents: Iterable[tuple[str, Sequence[int]]],
    stream: TokenStream,
    max_tokens: int | None,
) -> dict:
    overall, per_corpus = _Totals(), defaultdict(_Totals)
    bos_id, eos_id = stream.bos_id, stream.eos_id

    def windows() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for corpus, ids in take_documents(documents, max_tokens):
            ids = np.asarray(ids, dtype=np.int64)
            sequence = np.concatenate([[bos_id], ids, [eos_id]]).astype(np.int64)
            text_bytes = _decoded_bytes(scoring.sp, ids)
            for totals in (overall, per_corpus[corpus]):
                totals.bytes += text_bytes
                totals.documents += 1
            for x, y in _windows(sequence, scoring.seq_len, bos_id):
                yield corpus, x, y

    for corpus, nats, count in scoring.score(windows()):
        for totals in (overall, per_corpus[corpus]):
            totals.nats += nats
            totals.tokens += count
    names = sorted(per_corpus)  # every rank read every document: the same names in all
    scoring.sum_over_ranks([overall, *(per_corpus[name] for name in names)])
    if not overall.tokens:
        raise ValueError("no documents to evaluate")
    return {
        **overall.metrics(),
        "per_corpus": {name: per_corpus[name].metrics() for name in names},
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


def corpus_sample(
    data_dir: str | os.PathLike, mixture: str, max_tokens: int
) -> list[tuple[str, np.ndarray]]:
    """The labelled validation documents a training run scores at every evaluation:
    `max_tokens` targets split evenly among the corpora the shards' manifest lists, each
    corpus's first documents (`take_documents`). `mixture` (a partition directory, part file
    or URI) labels them; it must be the mixture the shards were made from, part for part, as
    the manifest's inputs record, so a mixture materialized since cannot mislabel them."""
    manifest = shards_manifest(os.fspath(data_dir))
    storage, parts = located([mixture])
    found = [(part.name, part.fingerprint) for part in contract_parts(storage, parts)]
    made_from = [(part.name, part.fingerprint) for part in manifest.inputs]
    if found != made_from:
        raise ValueError(
            f"{mixture} is not the mixture {data_dir} was made from: its {len(found)} parts "
            f"differ in name or fingerprint from the {len(made_from)} the shards' manifest "
            "records; re-materialize tokenized_shards from it, or score totals only"
        )
    corpora = sorted(manifest.splits[VALIDATION].sources)
    labelled = labelled_validation_documents(data_dir, parts, storage)
    return [
        (corpus, np.asarray(ids, dtype=np.int32))
        for corpus, ids in take_documents(labelled, max_tokens, corpora)
    ]


def _from_rank0(make: Callable[[], T]) -> T:
    """`make()` computed on rank 0 and sent to the other ranks: for what every rank needs and
    one read provides (the mixture's corpus labels), rather than one read per process."""
    if not dist.is_initialized():
        return make()
    value = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def _json_numbers(value: object) -> object:
    """`value` with NaN (bits per byte of shards without a tokenizer) as None, so that the
    trainer's metrics.jsonl stays strict JSON."""
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


class TrainingCurves:
    """Held-out loss over training tokens, as the paper follows its runs (Figures 1 and 2):
    the trainer asks at every step whether to evaluate (`due`: every `eval_every`-th step and
    the last) and every process calls `evaluate` together. It scores the split's first
    `eval_tokens` targets, or, with `eval_mixture`, `eval_tokens` split evenly among the
    corpora, with the numbers per corpus too. The documents are chosen once, so every point
    of a curve scores the same text."""

    def __init__(
        self,
        config: TrainConfig,
        manifest: TokenShardsManifest,
        ranks: Ranks,
        echo: Callable[[str], None],
    ) -> None:
        self.config, self.ranks = config, ranks
        split = manifest.splits.get(VALIDATION)
        self.enabled = config.eval_every > 0 and split is not None and split.tokens > 1
        if config.eval_every and not self.enabled and ranks.first:
            echo("no held-out evaluation: the shards have no validation tokens")
        self.documents = None
        if self.enabled and config.eval_mixture:
            self.documents = _from_rank0(
                lambda: corpus_sample(config.data_dir, config.eval_mixture, config.eval_tokens)
            )

    def due(self, step: int, last: bool) -> bool:
        return self.enabled and (step % self.config.eval_every == 0 or last)

    def evaluate(self, model: Llama, autocast: AbstractContextManager) -> dict:
        """The held-out metrics of `model` now, under the run's autocast, per corpus when
        labelled, with the seconds they took."""
        started = time.perf_counter()
        with autocast:
            metrics = heldout_metrics(
                model,
                self.config.data_dir,
                max_tokens=None if self.documents else self.config.eval_tokens,
                batch_size=self.config.micro_batch_size,
                seq_len=self.config.seq_len,
                documents=self.documents,
                ranks=self.ranks,
            )
        return _json_numbers(metrics) | {"seconds": time.perf_counter() - started}
