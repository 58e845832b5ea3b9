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
    EmptyCorpus,
    language_texts,
    model_files,
    train_kenlm,
    train_lm_tokenizer,
)
from curation.wikipedia import WikipediaText

GROUP = "reference"
WIKIPEDIA_PARTITION = "all"

# The paper's 20 Wikipedia languages; the perplexity models exist per language.
WIKI_LANGUAGES = "bg ca cs da de en es fr hr hu it nl pl pt ro ru sl sr sv uk".split()  # noqa: SIM905
wiki_languages = StaticPartitionsDefinition(WIKI_LANGUAGES)


class WikipediaConfig(Config):
    dumps_dir: str = ""  # "" = the sample world's exports; else a directory of *.xml[.bz2]
    force: bool = False


class LanguageModelConfig(Config):
    vocab_size: int = 4000  # CCNet used 65536 on full Wikipedia; small for the sample world
    order: int = 5
    seed: int = 0


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
    """KenLM and SentencePiece need local files: perplexity models live on the local disk."""
    return data_root.storage().path("models", "perplexity")


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
    context: AssetExecutionContext, config: LanguageModelConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per language, a SentencePiece unigram model on CCNet-normalized Wikipedia text
    (lowercase, accents stripped, digits to 0, punctuation mapped)."""
    language = context.partition_key
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
    context: AssetExecutionContext, config: LanguageModelConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per language, a KenLM 5-gram (`lmplz -o 5`, `--discount_fallback` when the corpus is
    too small for the default discounts) over the tokenized Wikipedia text, as a binary."""
    language = context.partition_key
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
