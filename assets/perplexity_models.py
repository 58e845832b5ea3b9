"""CCNet's perplexity models, per Wikipedia language: a SentencePiece model and a KenLM
5-gram trained on the `wikipedia` asset's text, or CCNet's released models."""

import posixpath
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets.resources import DataRoot
from assets.stage_assets import asset_args
from curation.commoncrawl.perplexity_models import (
    CCNET_VOCAB_SIZE,
    EmptyCorpus,
    install_released,
    language_texts,
    model_files,
    train_kenlm,
    train_lm_tokenizer,
)
from curation.recipe import step

PERPLEXITY_MODELS = "models/perplexity"  # under the data root


class ReleasedModelConfig(Config):
    # A directory or http(s) URL holding CCNet's released `{lang}.sp.model` and
    # `{lang}.arpa.bin`: installed instead of trained ("" trains on Wikipedia).
    released: str = ""


class LMTokenizerConfig(ReleasedModelConfig):
    vocab_size: int = CCNET_VOCAB_SIZE
    seed: int = 0


class KenLMConfig(ReleasedModelConfig):
    order: int = 5  # CCNet's `lmplz -o 5`


def wikipedia_text(data_root: DataRoot, language: str) -> list[str]:
    partition = data_root.output("wikipedia")
    return language_texts(data_root.storage(), partition, language)


def models_dir(data_root: DataRoot) -> str:
    """Where perplexity models live under the data root. Stages get `PERPLEXITY_MODELS`,
    relative to the root, so their manifests are the same wherever the root is; they read
    the models through local copies (`Storage.local_copy`) when the root is an object store."""
    return data_root.storage().path(PERPLEXITY_MODELS)


def _metadata(data_root: DataRoot, language: str, name: str) -> dict:
    path = posixpath.join(models_dir(data_root), language, name)
    return {"path": MetadataValue.path(path), "bytes": data_root.storage().size(path)}


def _released(source: str, data_root: DataRoot, language: str, kind: str) -> MaterializeResult:
    with data_root.storage().local_directory(models_dir(data_root)) as local:
        path = install_released(source, local, language, kind)
    return MaterializeResult(
        metadata={
            "status": "released",
            "source": source,
            **_metadata(data_root, language, path.name),
        }
    )


def _no_corpus(context: AssetExecutionContext, error: EmptyCorpus) -> MaterializeResult:
    context.log.warning(f"{context.partition_key}: {error}; no model, its documents go to 'all'")
    return MaterializeResult(metadata={"status": MetadataValue.text(f"no model: {error}")})


@asset(**asset_args(step("lm_tokenizer")), kinds={"sentencepiece"})
def lm_tokenizer(
    context: AssetExecutionContext, config: LMTokenizerConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per language, a SentencePiece unigram model on CCNet-normalized Wikipedia text
    (lowercase, accents stripped, digits to 0, punctuation mapped), or CCNet's released
    model (`released`)."""
    language = context.partition_key
    if config.released:
        return _released(config.released, data_root, language, "tokenizer")
    texts = wikipedia_text(data_root, language)
    try:
        with data_root.storage().local_directory(models_dir(data_root)) as local:
            path = train_lm_tokenizer(texts, Path(local, language), config.vocab_size, config.seed)
    except EmptyCorpus as error:
        return _no_corpus(context, error)
    return MaterializeResult(
        metadata={
            "status": "trained",
            **_metadata(data_root, language, path.name),
            "articles": len(texts),
            "characters": sum(map(len, texts)),
            "vocab_size": config.vocab_size,
            "seed": config.seed,
        }
    )


@asset(**asset_args(step("kenlm_model")), kinds={"kenlm"})
def kenlm_model(
    context: AssetExecutionContext, config: KenLMConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per language, a KenLM 5-gram (`lmplz -o 5`, `--discount_fallback` when the corpus is
    too small for the default discounts) over the tokenized Wikipedia text, as a binary; or
    CCNet's released model (`released`)."""
    language = context.partition_key
    if config.released:
        return _released(config.released, data_root, language, "kenlm")
    storage = data_root.storage()
    files = model_files(models_dir(data_root), language)
    if not storage.exists(str(files.tokenizer)):
        return _no_corpus(context, EmptyCorpus(f"no lm_tokenizer for {language}"))
    texts = wikipedia_text(data_root, language)
    tokenizer = storage.local_copy(str(files.tokenizer))
    try:
        with storage.local_directory(models_dir(data_root)) as local:
            path = train_kenlm(texts, tokenizer, Path(local, language), order=config.order)
    except EmptyCorpus as error:
        return _no_corpus(context, error)
    return MaterializeResult(
        metadata={
            "status": "trained",
            **_metadata(data_root, language, path.name),
            "tokenizer": MetadataValue.path(str(files.tokenizer)),
            "order": config.order,
            "articles": len(texts),
        }
    )
