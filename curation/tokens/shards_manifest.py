"""`tokenized_shards`' `_manifest.json` as typed records: what the shard writer
(curation/tokens/shards.py, which describes the layout) writes, and what every reader (the
shard checks, the assets, the CLI, the data card, training's loader and trainer) reads, by
attribute rather than by string key.

Its own module, not part of the writer: training's loader imports the format without the
writer's dependencies on the encoder. Training may import it: the dependency direction is
`pipelines -> assets -> {curation, training -> model}`, and training already reads curation's
token modules (the tokenizer's file name in training/checkpoint.py, the shard reader in
training/evaluation/).

`to_json` writes the bytes the writer has always written (the keys in this order, two-space
indent, UTF-8 unescaped, a final newline), so `from_json(text).to_json() == text` for every
manifest it writes (tests/test_token_shards.py checks it). A missing key is an error; a format
without `bos_id` (shards written before documents were framed `<s> ids </s>`) is refused with a
message saying so (`UnframedShards`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curation.core.manifest import read_manifest_text
from curation.core.storage import Storage


class UnframedShards(ValueError):
    """A manifest of shards written before documents were framed `<s> ids </s>`."""


@dataclass(frozen=True)
class InputPart:
    """One input part of the mixture, in stream order."""

    name: str
    fingerprint: str


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer the tokens were made with (its copy in the directory is `file`)."""

    file: str
    sha256: str
    vocab_size: int
    eos_id: int
    bos_id: int


@dataclass(frozen=True)
class TokenFormat:
    """How the shard files hold tokens: dtype and byte order, shard size, document framing."""

    dtype: str
    byte_order: str
    shard_tokens: int
    document: str
    bos_id: int
    eos_id: int
    documents_span_shards: bool

    @property
    def numpy_dtype(self) -> np.dtype:
        """The token dtype, little-endian whatever the machine."""
        return np.dtype(self.dtype).newbyteorder("<")

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> TokenFormat:
        if "bos_id" not in body:
            raise UnframedShards(
                "token shards without <s> framing (an older tokenized_shards version); "
                "materialize tokenized_shards again"
            )
        return cls(**body)


@dataclass(frozen=True)
class Excluded:
    """Input rows not written: empty text, or train rows with repeats 0."""

    empty_text: int
    repeats_zero: int

    @property
    def total(self) -> int:
        return self.empty_text + self.repeats_zero


@dataclass(frozen=True)
class ShardCounts:
    """Rows in, where each went, and the documents written per split (train copies included)."""

    n_in: int  # "in" in the JSON
    validation: int
    train: int
    excluded: Excluded
    written: dict[str, int]
    lossy_documents: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "in": self.n_in,
            "validation": self.validation,
            "train": self.train,
            "excluded": asdict(self.excluded),
            "written": dict(self.written),
            "lossy_documents": self.lossy_documents,
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ShardCounts:
        return cls(
            n_in=body["in"],
            validation=body["validation"],
            train=body["train"],
            excluded=Excluded(**body["excluded"]),
            written=dict(body["written"]),
            lossy_documents=body["lossy_documents"],
        )


@dataclass(frozen=True)
class TokenCount:
    """Documents and tokens (framing included) of one pass or one source of a split."""

    documents: int
    tokens: int


@dataclass(frozen=True)
class ShardFile:
    """One shard of a split: `<split>/<name>.bin` and its document index `<name>.idx.npy`."""

    name: str
    tokens: int
    documents: int
    sha256: str
    index_sha256: str


@dataclass(frozen=True)
class TokenSplit:
    """One split's stream: totals, per epoch pass, per source, and its shards in order."""

    documents: int
    tokens: int
    passes: tuple[TokenCount, ...]
    sources: dict[str, TokenCount]
    shards: tuple[ShardFile, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "passes": [asdict(p) for p in self.passes],
            "sources": {name: asdict(c) for name, c in self.sources.items()},
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> TokenSplit:
        return cls(
            documents=body["documents"],
            tokens=body["tokens"],
            passes=tuple(TokenCount(**p) for p in body["passes"]),
            sources={name: TokenCount(**c) for name, c in body["sources"].items()},
            shards=tuple(ShardFile(**s) for s in body["shards"]),
        )


@dataclass(frozen=True)
class TokenShardsManifest:
    """A `tokenized_shards` output's `_manifest.json`."""

    stage: str
    version: str
    fingerprint: str
    plan_fingerprint: str
    inputs: tuple[InputPart, ...]
    tokenizer: TokenizerRecord
    format: TokenFormat
    counts: ShardCounts
    splits: dict[str, TokenSplit]
    output_fingerprint: str

    def to_json(self) -> str:
        body = {
            "stage": self.stage,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "plan_fingerprint": self.plan_fingerprint,
            "inputs": [asdict(i) for i in self.inputs],
            "tokenizer": asdict(self.tokenizer),
            "format": asdict(self.format),
            "counts": self.counts.to_dict(),
            "splits": {name: split.to_dict() for name, split in self.splits.items()},
            "output_fingerprint": self.output_fingerprint,
        }
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TokenShardsManifest:
        body = json.loads(text)
        return cls(
            stage=body["stage"],
            version=body["version"],
            fingerprint=body["fingerprint"],
            plan_fingerprint=body["plan_fingerprint"],
            inputs=tuple(InputPart(**i) for i in body["inputs"]),
            tokenizer=TokenizerRecord(**body["tokenizer"]),
            format=TokenFormat.from_dict(body["format"]),
            counts=ShardCounts.from_dict(body["counts"]),
            splits={name: TokenSplit.from_dict(s) for name, s in body["splits"].items()},
            output_fingerprint=body["output_fingerprint"],
        )


def read_shards_manifest(storage: Storage, output: str) -> TokenShardsManifest | None:
    """The manifest of the `tokenized_shards` output at `output`; None when there is none."""
    text = read_manifest_text(storage, output)
    if text is None:
        return None
    try:
        return TokenShardsManifest.from_json(text)
    except UnframedShards as exc:
        raise UnframedShards(f"{output}: {exc}") from None
