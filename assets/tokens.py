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
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.config import FORCE_HELP, build, config_class
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_assets import asset_args
from assets.stage_run import histogram_table
from curation.core.inputs import partition_shards
from curation.core.manifest import read_manifest
from curation.core.storage import Storage
from curation.recipe import step
from curation.tokens.shards import (
    TokenShardsConfig,
    decode_documents,
    shard_counts_conserve,
    shards_intact,
    write_token_shards,
)
from curation.tokens.tokenizer import (
    TokenizerConfig,
    digits_split,
    round_trips,
    special_ids,
    train_tokenizer,
)

_DECODE_SAMPLE = 200  # validation documents compared with the mixture's text


def _check(name: str, result: tuple[bool, dict]) -> AssetCheckResult:
    ok, details = result
    return AssetCheckResult(
        check_name=name, passed=ok, metadata={"details": MetadataValue.json(details)}
    )


TokenizerAssetConfig = config_class(
    "TokenizerAssetConfig", TokenizerConfig, extra={"force": (bool, False, FORCE_HELP)}
)


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


@asset(**asset_args(step("tokenizer")), kinds={"sentencepiece"})
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
    settings = build(TokenizerConfig, config)
    trained = train_tokenizer(
        partition_shards(storage, data_root.output("mixture")),
        data_root.output("tokenizer"),
        storage,
        settings,
        shard_executor.executor(),
        config.force,
    )
    context.log.info(f"tokenizer: vocabulary {trained.vocab_size} -> {trained.model_path}")
    fertility = trained.fertility
    model = storage.read_bytes(trained.model_path)
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
            _check("digits_split", digits_split(model)),
            _check("unicode_round_trips", round_trips(model)),
            _check("special_ids", special_ids(model)),
        ],
    )


TokenizedShardsConfig = config_class(
    "TokenizedShardsConfig", TokenShardsConfig, extra={"force": (bool, False, FORCE_HELP)}
)


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


@asset(**asset_args(step("tokenized_shards")), kinds={"numpy"})
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
    mixture_dir = data_root.output("mixture")
    output = data_root.output("tokenized_shards")
    manifest = write_token_shards(
        partition_shards(storage, mixture_dir),
        posixpath.join(data_root.output("tokenizer"), "tokenizer.model"),
        output,
        storage,
        shard_executor.executor(),
        build(TokenShardsConfig, config),
        plan_fingerprint=read_manifest(storage, mixture_dir).fingerprint,
        force=config.force,
    )
    splits = manifest.splits
    context.log.info(
        f"tokenized_shards: train {splits['train'].tokens} tokens, "
        f"validation {splits['validation'].tokens} -> {output}"
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(output),
            "train_tokens": splits["train"].tokens,
            "validation_tokens": splits["validation"].tokens,
            "train_shards": len(splits["train"].shards),
            "dtype": manifest.format.dtype,
            "document": manifest.format.document,
            **{
                f"{split}_tokens_by_corpus": MetadataValue.md(
                    histogram_table(
                        {c: s.tokens for c, s in splits[split].sources.items()}, "corpus"
                    )
                )
                for split in ("train", "validation")
            },
            "fingerprint": manifest.fingerprint,
        },
        check_results=[
            _check("counts_conserve", shard_counts_conserve(manifest)),
            _check("shards_intact", shards_intact(storage, output)),
            _check("decodes_to_the_mixture", decodes_to_the_mixture(storage, output, mixture_dir)),
        ],
    )
