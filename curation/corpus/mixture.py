"""`mixture`: the paper's sampling plan (Table 1) over the deduplicated corpus.

The paper trains on 1.4T tokens drawn from seven corpora with fixed shares; a corpus too small
for its share is seen more than once (Wikipedia 2.45 epochs), a large one less (GitHub 0.64).
This stage turns shares into a number of passes per document:

1. Validation split first. A document is held out when a hash of its id falls under
   `validation_fraction`: the split depends on the id alone (not on the seed, the shares or
   which other documents exist), so it never moves when the plan changes, and the same page
   in `commoncrawl` and `c4` (same id) lands on the same side.
2. Plan. Tokens available per corpus are estimated from UTF-8 bytes / `bytes_per_token`:
   the tokenizer is trained on the mixture, so true counts exist only afterwards (the data
   card shows both). The target is `target_tokens`, or, when 0, anchored as in the paper: the
   target at which the `anchor` corpus gets its paper epochs (CommonCrawl: 1.10 at 67%).
   Planned epochs are share * target / available, capped at `max_epochs`; a capped or empty
   corpus cannot reach its share, which the plan reports as a warning with the share it does
   reach.
3. Sampling. A document gets floor(epochs) copies, plus one more when its seeded hash u in
   [0, 1) is under a per-corpus threshold. The threshold is chosen from a byte histogram over
   u (a global pass with fixed memory) so the extra copies add up to the fractional epoch in
   bytes, to within one histogram bin, instead of only in expectation.

Output rows keep the contract columns and gain `split` ("train" / "validation") and `repeats`
(copies in the training stream; validation rows 1). Train documents with no copy are dropped
as `not_sampled`. Rows stay in input order; `tokenized_shards` writes copies as epoch passes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.core.arrays import ShardArrayTask, load_array, shard_array_path
from curation.core.documents import DOCUMENT_FIELDS, drop_rows
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

# Paper Table 1: corpus -> (sampling proportion, epochs over 1.4T tokens).
PAPER_MIXTURE: dict[str, tuple[float, float]] = {
    "commoncrawl": (0.670, 1.10),
    "c4": (0.150, 1.06),
    "github": (0.045, 0.64),
    "wikipedia": (0.045, 2.45),
    "books": (0.045, 2.23),
    "arxiv": (0.025, 1.06),
    "stackexchange": (0.020, 1.03),
}
TRAIN, VALIDATION = "train", "validation"
_BINS = 4096  # resolution of the fractional-epoch threshold
_LANGUAGE = pa.field("language", pa.string())


def _unit_hash(key: str) -> float:
    """A uniform number in [0, 1) from a string, stable across runs and machines."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation(doc_id: str, fraction: float) -> bool:
    return _unit_hash(f"validation\x00{doc_id}") < fraction


@dataclass(frozen=True)
class CorpusPlan:
    """One corpus in the plan. Tokens are estimates (bytes / bytes_per_token); shares are
    fractions of the training stream."""

    corpus: str
    available_tokens: float
    share: float
    paper_epochs: float
    epochs: float  # needed for the share: share * target / available (inf: nothing available)
    achievable_epochs: float  # capped at max_epochs
    achievable_share: float
    threshold: float = 0.0  # u under which a document gets its extra copy
    sampled_tokens: float = 0.0  # what the threshold really selects, copies counted
    granularity_tokens: float = 0.0  # tokens in the threshold's histogram bin

    @property
    def warning(self) -> str:
        if self.available_tokens == 0 and self.share > 0:
            return f"{self.corpus}: no documents; its {self.share:.1%} share cannot be met"
        if self.achievable_epochs < self.epochs:
            return (
                f"{self.corpus}: too small for its {self.share:.1%} share (needs "
                f"{self.epochs:.2f} epochs, capped at {self.achievable_epochs:.2f}); "
                f"reaches {self.achievable_share:.1%}"
            )
        return ""

    def row(self) -> dict[str, Any]:
        values = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}
        if math.isinf(self.epochs):
            values["epochs"] = None  # JSON has no infinity
        return {**values, "warning": self.warning}


def plan_mixture(
    available_tokens: dict[str, float],
    shares: dict[str, float],
    target_tokens: float,
    anchor: str,
    max_epochs: float,
) -> tuple[float, list[CorpusPlan]]:
    """The target and each corpus's epochs, before sampling thresholds are known."""
    if target_tokens <= 0:
        if not available_tokens.get(anchor) or not shares.get(anchor):
            raise ValueError(
                f"the anchor corpus {anchor!r} has no tokens or no share: set target_tokens"
            )
        target_tokens = available_tokens[anchor] * PAPER_MIXTURE[anchor][1] / shares[anchor]
    plans = []
    for corpus, share in shares.items():
        available = available_tokens.get(corpus, 0.0)
        epochs = share * target_tokens / available if available else math.inf
        capped = min(epochs, max_epochs) if available else 0.0
        plans.append((corpus, available, share, epochs, capped))
    stream = sum(available * capped for _, available, _, _, capped in plans) or 1.0
    return target_tokens, [
        CorpusPlan(
            corpus=corpus,
            available_tokens=available,
            share=share,
            paper_epochs=PAPER_MIXTURE.get(corpus, (0.0, 0.0))[1],
            epochs=epochs,
            achievable_epochs=capped,
            achievable_share=available * capped / stream,
        )
        for corpus, available, share, epochs, capped in plans
    ]


def sampling_threshold(bytes_by_bin: np.ndarray, epochs: float) -> tuple[float, int, int]:
    """For a corpus's train bytes binned by u: the u below which a document gets an extra
    copy so that the extra copies carry the fractional part of `epochs` in bytes (the first
    bin edge where the cumulative bytes reach it), the bytes that selects, and the bytes of
    the bin the edge falls in (how close it can get)."""
    fraction = epochs - math.floor(epochs)
    total = int(bytes_by_bin.sum())
    if fraction == 0 or total == 0:
        return 0.0, 0, 0
    cumulative = np.cumsum(bytes_by_bin)
    edge = int(np.searchsorted(cumulative, fraction * total))
    return (edge + 1) / len(bytes_by_bin), int(cumulative[edge]), int(bytes_by_bin[edge])


@dataclass(frozen=True)
class Mixture(Stage):
    """Validation split, then each training document's number of copies from the plan."""

    name: ClassVar[str] = "mixture"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = pa.schema(
        [
            *DOCUMENT_FIELDS,
            _LANGUAGE,
            pa.field("split", pa.string(), nullable=False),
            pa.field("repeats", pa.int32(), nullable=False),
        ]
    )
    input_schema: ClassVar[pa.Schema] = pa.schema(DOCUMENT_FIELDS)

    # (corpus, share) pairs; shares are renormalized over the corpora listed, and documents
    # of any other corpus are dropped as `not_in_mixture`.
    shares: tuple[tuple[str, float], ...] = tuple((c, s) for c, (s, _) in PAPER_MIXTURE.items())
    target_tokens: int = 0  # 0: the target at which `anchor` gets its paper epochs
    anchor: str = "commoncrawl"
    max_epochs: float = 4.0  # past ~4 passes, repeated tokens stop helping (Muennighoff 2023)
    bytes_per_token: float = 4.0  # the estimate, until the tokenizer exists
    validation_fraction: float = 0.005
    seed: int = 0
    # Set by `prepare`.
    target: float = field(default=0.0, metadata={"config": False})
    plan: tuple[CorpusPlan, ...] = field(default=(), metadata={"config": False})

    def corpora(self) -> list[str]:
        return [corpus for corpus, _ in self.shares]

    def sample_hash(self, doc_id: str) -> float:
        return _unit_hash(f"{self.seed}\x00{doc_id}")

    def byte_histogram(self, shard: ShardInput, storage: Storage, workdir: str) -> np.ndarray:
        """Per corpus, the shard's training bytes binned by the sampling hash u."""
        table = read_shard(self, shard, storage, ["id", "source", "text"])
        corpora = self.corpora()
        hist = np.zeros((len(corpora), _BINS), dtype=np.int64)
        lengths = pc.binary_length(table.column("text")).to_pylist()
        ids, sources = table.column("id").to_pylist(), table.column("source").to_pylist()
        for doc_id, source, n in zip(ids, sources, lengths, strict=True):
            if source in corpora and not is_validation(doc_id, self.validation_fraction):
                hist[corpora.index(source), int(self.sample_hash(doc_id) * _BINS)] += n
        return hist

    def prepare(self, inputs, storage, workdir, executor) -> Mixture:
        storage.makedirs(workdir)
        task = ShardArrayTask(self.byte_histogram, storage, workdir, "bytes")
        list(executor.map_unordered(task, inputs))
        hist = np.zeros((len(self.corpora()), _BINS), dtype=np.int64)
        for shard in inputs:
            hist += load_array(storage, shard_array_path(workdir, shard, "bytes"))
        by_corpus = dict(zip(self.corpora(), hist, strict=True))
        total = sum(s for _, s in self.shares)
        target, plans = plan_mixture(
            {c: row.sum() / self.bytes_per_token for c, row in by_corpus.items()},
            {c: s / total for c, s in self.shares},
            self.target_tokens,
            self.anchor,
            self.max_epochs,
        )
        sampled = []
        for p in plans:
            row = by_corpus[p.corpus]
            threshold, extra, bin_bytes = sampling_threshold(row, p.achievable_epochs)
            whole = math.floor(p.achievable_epochs) * int(row.sum())
            sampled.append(
                dataclasses.replace(
                    p,
                    threshold=threshold,
                    sampled_tokens=(whole + extra) / self.bytes_per_token,
                    granularity_tokens=bin_bytes / self.bytes_per_token,
                )
            )
        return dataclasses.replace(self, target=target, plan=tuple(sampled))

    def summary(self) -> dict[str, Any]:
        return {"target_tokens": round(self.target), "plan": [p.row() for p in self.plan]}

    def copies(self, doc_id: str, corpus: str, split: str) -> int:
        plan = next((p for p in self.plan if p.corpus == corpus), None)
        if plan is None:
            return 0
        if split == VALIDATION:
            return 1
        extra = self.sample_hash(doc_id) < plan.threshold
        return math.floor(plan.achievable_epochs) + int(extra)

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
        if "language" not in table.column_names:
            table = table.append_column(_LANGUAGE, pa.nulls(table.num_rows, pa.string()))
        ids, sources = table.column("id").to_pylist(), table.column("source").to_pylist()
        splits = [VALIDATION if is_validation(i, self.validation_fraction) else TRAIN for i in ids]
        copies = [self.copies(*row) for row in zip(ids, sources, splits, strict=True)]
        table = table.append_column("split", pa.array(splits)).append_column(
            "repeats", pa.array(copies, pa.int32())
        )
        reasons = [
            "" if n else ("not_sampled" if s in self.corpora() else "not_in_mixture")
            for n, s in zip(copies, sources, strict=True)
        ]
        keep = pa.array([not r for r in reasons], pa.bool_())
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(keep),
            dropped=drop_rows(table.filter(pc.invert(keep)), self.name, [r for r in reasons if r]),
            histograms=stream_histograms(table.filter(keep)),
        )


def stream_histograms(kept: pa.Table) -> dict[str, Counter[str]]:
    """Per corpus: documents and bytes per split, and the training stream's bytes with
    copies counted. The realised mixture is read from these in the manifest."""
    docs, text_bytes, stream = Counter(), Counter(), Counter()
    rows = zip(
        kept.column("source").to_pylist(),
        kept.column("split").to_pylist(),
        pc.binary_length(kept.column("text")).to_pylist(),
        kept.column("repeats").to_pylist(),
        strict=True,
    )
    for corpus, split, n, copies in rows:
        docs[f"{split}:{corpus}"] += 1
        text_bytes[f"{split}:{corpus}"] += n
        if split == TRAIN:
            stream[corpus] += n * copies
    return {"docs_by_split": docs, "bytes_by_split": text_bytes, "train_stream_bytes": stream}


def realised_shares(histograms: dict[str, dict[str, int]]) -> dict[str, float]:
    """Each corpus's share of the training stream, from a mixture manifest's histograms."""
    stream = histograms.get("train_stream_bytes", {})
    total = sum(stream.values()) or 1
    return {corpus: n / total for corpus, n in stream.items()}


def shares_off_plan(summary: dict[str, Any], histograms: dict, tolerance: float) -> list[str]:
    """Corpora whose realised share is further from the achievable plan than `tolerance`
    plus what the granularity of sampling allows: one histogram bin of the corpus's own bytes
    (a corpus of three books cannot be cut at 23%), and the shift the other corpora's bins
    cause (one of them a bin over its share leaves every other corpus smaller in proportion,
    which on a small corpus of large files is more than the tolerance)."""
    realised = realised_shares(histograms)
    stream = sum(p["sampled_tokens"] for p in summary["plan"]) or 1.0
    grains = {p["corpus"]: p["granularity_tokens"] / stream for p in summary["plan"]}
    problems = []
    for p in summary["plan"]:
        others = sum(grains.values()) - grains[p["corpus"]]
        allowed = tolerance + grains[p["corpus"]] + p["achievable_share"] * others
        got = realised.get(p["corpus"], 0.0)
        if abs(got - p["achievable_share"]) > allowed:
            problems.append(
                f"{p['corpus']}: realised {got:.2%}, planned {p['achievable_share']:.2%} "
                f"(allowed ±{allowed:.2%})"
            )
    return problems
