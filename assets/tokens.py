"""What training reads: the SentencePiece tokenizer and the mixture as token shards.

Both are unpartitioned and downstream of `mixture`. Retraining the tokenizer changes every
token id, so it is not automated: materialize it deliberately (the `corpus` job does).
"""

import posixpath
from collections.abc import Iterator
from itertools import islice

import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.corpus import PARTITION
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import histogram_table
from curation.inputs import partition_shards
from curation.runner import read_manifest
from curation.storage import Storage
from curation.token_shards import (
    TokenShardsConfig,
    counts_conserve,
    decode_documents,
    shards_intact,
    write_token_shards,
)
from curation.tokenizer import (
    TokenizerConfig,
    digits_split,
    round_trips,
    special_ids,
    train_tokenizer,
)

GROUP = "tokens"
TOKENIZER_CHECKS = ("digits_split", "unicode_round_trips", "special_ids")
SHARD_CHECKS = ("counts_conserve", "shards_intact", "decodes_to_the_mixture")
_DECODE_SAMPLE = 200  # validation documents compared with the mixture's text


def _specs(asset_name: str, names: tuple[str, ...]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=asset_name) for name in names]


def _check(name: str, result: tuple[bool, dict]) -> AssetCheckResult:
    ok, details = result
    return AssetCheckResult(
        check_name=name, passed=ok, metadata={"details": MetadataValue.json(details)}
    )


class TokenizerAssetConfig(Config):
    """`TokenizerConfig`'s fields (curation/tokenizer.py), plus `force`."""

    vocab_size: int = TokenizerConfig.vocab_size
    seed: int = TokenizerConfig.seed
    sample_documents: int = TokenizerConfig.sample_documents
    sample_bytes: int = TokenizerConfig.sample_bytes
    heldout_fraction: float = TokenizerConfig.heldout_fraction
    heldout_documents_per_group: int = TokenizerConfig.heldout_documents_per_group
    character_coverage: float = TokenizerConfig.character_coverage
    max_sentence_length: int = TokenizerConfig.max_sentence_length
    num_threads: int = TokenizerConfig.num_threads
    force: bool = False


def _fertility_table(groups: dict[str, dict]) -> str:
    rows = [
        "| group | documents | tokens/word | tokens/byte | byte fallback |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in groups.items():
        rows.append(
            f"| {name} | {r['documents']} | {r['tokens_per_word']} | {r['tokens_per_byte']} "
            f"| {r['byte_fallback_share']} |"
        )
    return "\n".join(rows)


@asset(
    group_name=GROUP,
    deps=["mixture"],
    check_specs=_specs("tokenizer", TOKENIZER_CHECKS),
    kinds={"sentencepiece"},
)
def tokenizer(
    context: AssetExecutionContext,
    config: TokenizerAssetConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """SentencePiece BPE as in the paper (split digits, byte fallback, identity
    normalization, <unk>=0 <s>=1 </s>=2) on a seeded sample of the mixture's training rows;
    fertility per corpus and language measured on held-out documents."""
    storage = data_root.storage()
    settings = TokenizerConfig(**config.model_dump(exclude={"force"}))
    trained = train_tokenizer(
        partition_shards(storage, data_root.stage_dir("mixture", PARTITION)),
        data_root.stage_dir("tokenizer", PARTITION),
        storage,
        settings,
        shard_executor.executor(),
        config.force,
    )
    context.log.info(f"tokenizer: vocabulary {trained.vocab_size} -> {trained.model_path}")
    fertility = trained.fertility
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(trained.model_path),
            "sha256": trained.sha256,
            "vocab_size": trained.vocab_size,
            "tokens_per_word": fertility["total"]["tokens_per_word"],
            "fertility_by_corpus": MetadataValue.md(_fertility_table(fertility["by_source"])),
            "fertility_by_language": MetadataValue.md(_fertility_table(fertility["by_language"])),
            "training_parameters": MetadataValue.json(trained.params),
        },
        check_results=[
            _check("digits_split", digits_split(trained.model_path)),
            _check("unicode_round_trips", round_trips(trained.model_path)),
            _check("special_ids", special_ids(trained.model_path)),
        ],
    )


class TokenizedShardsConfig(Config):
    shard_tokens: int = TokenShardsConfig.shard_tokens
    encode_threads: int = TokenShardsConfig.encode_threads
    force: bool = False


def _validation_texts(storage: Storage, mixture_dir: str) -> Iterator[str]:
    """The mixture's validation rows in stream order, as SentencePiece gives them back
    (its space symbol U+2581 decodes as a space)."""
    for shard in partition_shards(storage, mixture_dir):
        table = pq.read_table(shard.path, filesystem=storage.fs, columns=["text", "split"])
        held = table.filter(pc.equal(table.column("split"), "validation"))
        for text in held.column("text").to_pylist():
            if text:
                yield text.replace("\u2581", " ")


def decodes_to_the_mixture(storage: Storage, output: str, mixture_dir: str) -> tuple[bool, dict]:
    """The first validation documents, decoded from the shards, equal the mixture's text."""
    decoded = list(islice(decode_documents(storage, output, "validation"), _DECODE_SAMPLE))
    expected = list(islice(_validation_texts(storage, mixture_dir), _DECODE_SAMPLE))
    different = [i for i, (a, b) in enumerate(zip(decoded, expected, strict=False)) if a != b]
    ok = bool(expected) and len(decoded) == len(expected) and not different
    return ok, {"compared": len(expected), "decoded": len(decoded), "different": different[:10]}


@asset(
    group_name=GROUP,
    deps=["tokenizer", "mixture"],
    check_specs=_specs("tokenized_shards", SHARD_CHECKS),
    kinds={"numpy"},
)
def tokenized_shards(
    context: AssetExecutionContext,
    config: TokenizedShardsConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """Every mixture document encoded and framed `<s> ids </s>` (LLaMA's framing, the one
    evaluation, generation and the HF export use), train copies as epoch passes, in
    fixed-size uint16 shards with document indexes; train and validation apart.
    Byte-identical whatever the worker count."""
    storage = data_root.storage()
    mixture_dir = data_root.stage_dir("mixture", PARTITION)
    output = data_root.stage_dir("tokenized_shards", PARTITION)
    manifest = write_token_shards(
        partition_shards(storage, mixture_dir),
        posixpath.join(data_root.stage_dir("tokenizer", PARTITION), "tokenizer.model"),
        output,
        storage,
        shard_executor.executor(),
        TokenShardsConfig(**config.model_dump(exclude={"force"})),
        plan_fingerprint=read_manifest(storage, mixture_dir).fingerprint,
        force=config.force,
    )
    splits = manifest["splits"]
    context.log.info(
        f"tokenized_shards: train {splits['train']['tokens']} tokens, "
        f"validation {splits['validation']['tokens']} -> {output}"
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(output),
            "train_tokens": splits["train"]["tokens"],
            "validation_tokens": splits["validation"]["tokens"],
            "train_shards": len(splits["train"]["shards"]),
            "dtype": manifest["format"]["dtype"],
            "document": manifest["format"]["document"],
            **{
                f"{split}_tokens_by_corpus": MetadataValue.md(
                    histogram_table(
                        {c: s["tokens"] for c, s in splits[split]["sources"].items()}, "corpus"
                    )
                )
                for split in ("train", "validation")
            },
            "fingerprint": manifest["fingerprint"],
        },
        check_results=[
            _check("counts_conserve", counts_conserve(manifest)),
            _check("shards_intact", shards_intact(storage, output)),
            _check("decodes_to_the_mixture", decodes_to_the_mixture(storage, output, mixture_dir)),
        ],
    )
