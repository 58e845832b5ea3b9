"""Reference assets the CommonCrawl quality stages compare against: Wikipedia text and, per
language, the SentencePiece + KenLM perplexity models trained on it (CCNet)."""

import posixpath

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from assets.checks import stage_check_specs
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_stage_asset
from curation.inputs import WIKI_DUMP_SUFFIXES, archive_shards
from curation.lm_train import (
    CCNET_VOCAB_SIZE,
    EmptyCorpus,
    install_released,
    language_texts,
    model_files,
    train_kenlm,
    train_lm_tokenizer,
)
from curation.wikipedia import WikipediaText

GROUP = "reference"
WIKIPEDIA_PARTITION = "all"
PERPLEXITY_MODELS = "models/perplexity"  # under the data root

# The paper's 20 Wikipedia languages; the perplexity models exist per language.
WIKI_LANGUAGES = "bg ca cs da de en es fr hr hu it nl pl pt ro ru sl sr sv uk".split()  # noqa: SIM905
wiki_languages = StaticPartitionsDefinition(WIKI_LANGUAGES)


class WikipediaConfig(Config):
    dumps_dir: str = ""  # "" = the sample world's exports; else a directory of *.xml[.bz2]
    force: bool = False


class ReleasedModelConfig(Config):
    # A directory or http(s) URL holding CCNet's released `{lang}.sp.model` and
    # `{lang}.arpa.bin`: installed instead of trained ("" trains on Wikipedia).
    released: str = ""


class LMTokenizerConfig(ReleasedModelConfig):
    vocab_size: int = CCNET_VOCAB_SIZE
    seed: int = 0


class KenLMConfig(ReleasedModelConfig):
    order: int = 5  # CCNet's `lmplz -o 5`


@asset(
    group_name=GROUP,
    check_specs=stage_check_specs(WikipediaText.name),
    code_version=WikipediaText.version,
    kinds={"parquet", "wikipedia"},
)
def wikipedia(
    context: AssetExecutionContext,
    config: WikipediaConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """MediaWiki XML exports (streamed, defusedxml) to plain-text articles with mwparserfromhell:
    links keep their anchor text; templates, comments, refs, tables, categories dropped.
    Redirects and non-article namespaces are dropped rows."""
    dumps = config.dumps_dir or posixpath.join(data_root.sample_dir(), "wikipedia")
    inputs = archive_shards(data_root.storage(), dumps, WIKI_DUMP_SUFFIXES)
    run = run_stage_asset(
        context, WikipediaText(), inputs, WIKIPEDIA_PARTITION, data_root, shard_executor,
        config.force,
    )  # fmt: skip
    return run.result()


def wikipedia_text(data_root: DataRoot, language: str) -> list[str]:
    partition = data_root.stage_dir(WikipediaText.name, WIKIPEDIA_PARTITION)
    return language_texts(data_root.storage(), partition, language)


def models_dir(data_root: DataRoot) -> str:
    """KenLM and SentencePiece need local files: perplexity models live on the local disk.
    Stages get `PERPLEXITY_MODELS`, relative to the data root, so their manifests are the
    same wherever the root is."""
    return data_root.storage().path(PERPLEXITY_MODELS)


def _released(source: str, data_root: DataRoot, language: str, kind: str) -> MaterializeResult:
    path = install_released(source, models_dir(data_root), language, kind)
    return MaterializeResult(
        metadata={
            "status": "released",
            "source": source,
            "path": MetadataValue.path(str(path)),
            "bytes": path.stat().st_size,
        }
    )


def _no_corpus(context: AssetExecutionContext, error: EmptyCorpus) -> MaterializeResult:
    context.log.warning(f"{context.partition_key}: {error}; no model, its documents go to 'all'")
    return MaterializeResult(metadata={"status": MetadataValue.text(f"no model: {error}")})


@asset(
    partitions_def=wiki_languages,
    group_name=GROUP,
    deps=[wikipedia],
    kinds={"sentencepiece"},
)
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
    out_dir = posixpath.join(models_dir(data_root), language)
    try:
        path = train_lm_tokenizer(texts, out_dir, config.vocab_size, config.seed)
    except EmptyCorpus as error:
        return _no_corpus(context, error)
    return MaterializeResult(
        metadata={
            "status": "trained",
            "path": MetadataValue.path(str(path)),
            "articles": len(texts),
            "characters": sum(map(len, texts)),
            "vocab_size": config.vocab_size,
            "seed": config.seed,
        }
    )


@asset(
    partitions_def=wiki_languages,
    group_name=GROUP,
    deps=[lm_tokenizer],
    kinds={"kenlm"},
)
def kenlm_model(
    context: AssetExecutionContext, config: KenLMConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per language, a KenLM 5-gram (`lmplz -o 5`, `--discount_fallback` when the corpus is
    too small for the default discounts) over the tokenized Wikipedia text, as a binary; or
    CCNet's released model (`released`)."""
    language = context.partition_key
    if config.released:
        return _released(config.released, data_root, language, "kenlm")
    files = model_files(models_dir(data_root), language)
    if not files.tokenizer.exists():
        return _no_corpus(context, EmptyCorpus(f"no lm_tokenizer for {language}"))
    texts = wikipedia_text(data_root, language)
    try:
        path = train_kenlm(texts, files.tokenizer, files.kenlm.parent, order=config.order)
    except EmptyCorpus as error:
        return _no_corpus(context, error)
    return MaterializeResult(
        metadata={
            "status": "trained",
            "path": MetadataValue.path(str(path)),
            "tokenizer": MetadataValue.path(str(files.tokenizer)),
            "order": config.order,
            "articles": len(texts),
            "bytes": path.stat().st_size,
        }
    )
