"""Common Crawl quality, after language id: KenLM perplexity buckets (CCNet), the
Wikipedia-reference classifier (RedPajama), and exact dedup into the final `commoncrawl`."""

import math
import posixpath
from typing import Literal

import pyarrow as pa
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.checks import PERPLEXITY_ORDERED, perplexity_ordered, read_all_rows, stage_check_specs
from assets.commoncrawl import GROUP, cc_language
from assets.ground_truth import SPAM_REMOVED, planted_removed
from assets.partitions import crawls
from assets.reference import PERPLEXITY_MODELS, WIKIPEDIA_PARTITION, kenlm_model, wikipedia
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_downstream, stage_from_config
from curation.exact_dedup import ExactDedup
from curation.inputs import partition_shards
from curation.langid import CRAWL_LANGUAGES, LanguageId
from curation.perplexity import Perplexity
from curation.perplexity_cutoffs import (
    DEFAULT_PERCENTILES,
    SAMPLE_DOCUMENTS,
    crawl_cutoffs,
    read_cutoff_csv,
    read_cutoffs,
    scorer_for,
    write_cutoffs,
)
from curation.wikipedia import WikipediaText
from curation.wikiref import (
    FastTextParams,
    WikiRefFilter,
    cited_url_set,
    crawl_pages,
    file_sha256,
    train_classifier,
    training_set,
)


class CutoffsConfig(Config):
    """How the crawl's documents are scored (recorded for `cc_perplexity`, which scores the
    rest the same way) and where the cutoffs come from."""

    # The scored languages: the crawl's kept languages; [] = every language with models.
    languages: list[str] = list(CRAWL_LANGUAGES)
    scoring: Literal["ccnet", "lines"] = "ccnet"  # CCNet's whole document, or line by line
    max_chars: int = 0  # score only the first characters of each unit; 0 = all (CCNet)
    percentiles: list[float] = list(DEFAULT_PERCENTILES)
    # Documents of the crawl scored for the cutoffs (whole shards); 0 = every document.
    sample_documents: int = SAMPLE_DOCUMENTS
    # CCNet's cutoff.csv (a path or an http(s) URL): its cutoffs win over computed ones.
    cutoff_csv: str = ""
    # language -> [low, high]: wins over both.
    table: dict[str, list[float]] = {}


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    # Every language's model: partitions of another kind, so all of them.
    deps=[cc_language, AssetDep(kenlm_model, partition_mapping=AllPartitionMapping())],
    kinds={"kenlm", "json"},
)
def perplexity_cutoffs(
    context: AssetExecutionContext,
    config: CutoffsConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """Per-language perplexity cutoffs (30th and 60th percentiles over a sample of this
    crawl), the head / middle / tail boundaries `cc_perplexity` buckets with, and the
    sample's scores, which `cc_perplexity` reads back instead of scoring again."""
    storage = data_root.storage()
    crawl = context.partition_key
    output = data_root.stage_dir("perplexity_cutoffs", crawl)
    scorer = scorer_for(
        storage, PERPLEXITY_MODELS, output, config.languages,
        scoring=config.scoring, max_chars=config.max_chars,
    )  # fmt: skip
    configured = read_cutoff_csv(config.cutoff_csv, config.percentiles) if config.cutoff_csv else {}
    configured |= config.table
    inputs = partition_shards(storage, data_root.stage_dir(LanguageId.name, crawl))
    cutoffs, scores = crawl_cutoffs(
        scorer, inputs, storage, shard_executor.executor(),
        config.sample_documents, config.percentiles, configured,
    )  # fmt: skip
    path = write_cutoffs(storage, output, scorer, cutoffs)
    figure = plots.histograms(
        {lang: v.tolist() for lang, v in scores.items()},
        "document perplexity by language (the sample), with the cutoffs",
        "perplexity",
        cutoffs=cutoffs,
        log_x=True,
    )
    rows = ["| language | low | high | sampled documents | source |", "|---|---:|---:|---:|---|"]
    for lang, (low, high) in sorted(cutoffs.items()):
        source = "configured" if lang in configured else "computed"
        rows.append(f"| {lang} | {low:.1f} | {high:.1f} | {len(scores.get(lang, []))} | {source} |")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(path),
            "cutoffs": MetadataValue.md("\n".join(rows)),
            "scored_languages": ", ".join(scorer.languages),
            "sampled_documents": sum(len(v) for v in scores.values()),
            "histogram": plots.save_png(figure, storage, output, "perplexity"),
        }
    )


class PerplexityConfig(Config):
    keep_buckets: list[str] = list(Perplexity.keep_buckets)
    keep_unmodelled: bool = Perplexity.keep_unmodelled
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_language, perplexity_cutoffs],
    check_specs=stage_check_specs(Perplexity.name, PERPLEXITY_ORDERED, SPAM_REMOVED),
    code_version=Perplexity.version,
    kinds={"parquet", "kenlm"},
)
def cc_perplexity(
    context: AssetExecutionContext,
    config: PerplexityConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """KenLM perplexity of each document with its language's model (CCNet's: the whole
    document normalized and scored once, scored as `perplexity_cutoffs` recorded, its sample
    read back); `bucket` head / middle / tail by the crawl's cutoffs; head and middle kept.
    Documents of languages without cutoffs go to bucket `all`."""
    storage = data_root.storage()
    crawl = context.partition_key
    stage = read_cutoffs(
        storage,
        data_root.stage_dir("perplexity_cutoffs", crawl),
        keep_buckets=tuple(config.keep_buckets),
        keep_unmodelled=config.keep_unmodelled,
    )
    run = run_downstream(context, stage, LanguageId.name, data_root, shard_executor, config.force)
    scored = read_all_rows(storage, run.output, ["language", "perplexity", "bucket", "url"])
    figure = plots.histograms(
        _perplexity_by_language(scored), "perplexity by language (kept and dropped)",
        "perplexity", cutoffs=stage.cutoffs, log_x=True,
    )  # fmt: skip
    return run.result(
        metadata={"histogram": plots.save_png(figure, storage, run.output, "perplexity")},
        checks=[
            perplexity_ordered(scored),
            planted_removed(data_root, crawl, run.output, SPAM_REMOVED),
        ],
    )


def _perplexity_by_language(scored: pa.Table) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    rows = zip(
        scored.column("language").to_pylist(), scored.column("perplexity").to_pylist(), strict=True
    )
    for language, perplexity in rows:
        if perplexity is not None and math.isfinite(perplexity):
            values.setdefault(language, []).append(perplexity)
    return values


WIKIREF_AUC = "heldout_auc_above_floor"


class WikiRefClassifierConfig(Config):
    seed: int = 0
    holdout_fraction: float = 0.2
    negatives_per_positive: float = 1.0
    epoch: int = FastTextParams.epoch
    lr: float = FastTextParams.lr
    dim: int = FastTextParams.dim
    min_auc: float = 0.6  # the check's floor; the sample's cited pages are a random draw


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_language, wikipedia],
    check_specs=[AssetCheckSpec(WIKIREF_AUC, asset="wikiref_classifier")],
    kinds={"fasttext"},
)
def wikiref_classifier(
    context: AssetExecutionContext, config: WikiRefClassifierConfig, data_root: DataRoot
) -> MaterializeResult:
    """RedPajama's Wikipedia-reference classifier: crawl pages whose URL a Wikipedia `<ref>`
    cites are positives, an equal number of other pages (seeded) negatives; fastText
    supervised on page text, evaluated on a held-out split."""
    storage = data_root.storage()
    crawl = context.partition_key
    articles = data_root.stage_dir(WikipediaText.name, WIKIPEDIA_PARTITION)
    cited = cited_url_set(storage, articles)
    rows = crawl_pages(storage, data_root.stage_dir(LanguageId.name, crawl))
    examples = training_set(rows, cited, config.seed, config.negatives_per_positive)
    output = data_root.stage_dir("wikiref_classifier", crawl)
    storage.makedirs(output)
    params = FastTextParams(epoch=config.epoch, lr=config.lr, dim=config.dim)
    report = train_classifier(
        examples, classifier_path(output), config.seed, config.holdout_fraction, params
    )
    figure = plots.histograms(
        {
            "cited (positive)": report.heldout_positive_scores.tolist(),
            "other (negative)": report.heldout_negative_scores.tolist(),
        },
        "held-out P(wiki) by true label",
        "P(wiki)",
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(report.model_path),
            "cited_urls": len(cited),
            "train_positives": report.train_positives,
            "train_negatives": report.train_negatives,
            "heldout_positives": report.heldout_positives,
            "heldout_negatives": report.heldout_negatives,
            "precision": report.precision,
            "recall": report.recall,
            "auc": report.auc,
            "scores": plots.save_png(figure, storage, output, "scores"),
        },
        check_results=[
            AssetCheckResult(
                check_name=WIKIREF_AUC,
                passed=bool(report.auc >= config.min_auc),
                severity=AssetCheckSeverity.ERROR,
                metadata={"auc": report.auc, "floor": config.min_auc},
            )
        ],
    )


def classifier_path(output: str) -> str:
    return posixpath.join(output, "wikiref.bin")


class WikiRefConfig(Config):
    # What the classifier calls a reference (0.5); RedPajama kept 0.25 and up.
    threshold: float = WikiRefFilter.threshold
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_perplexity, wikiref_classifier],
    check_specs=stage_check_specs(WikiRefFilter.name),
    code_version=WikiRefFilter.version,
    kinds={"parquet", "fasttext"},
)
def cc_wikiref(
    context: AssetExecutionContext,
    config: WikiRefConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """`wiki_prob` from the Wikipedia-reference classifier; pages the classifier calls
    references (at or above the threshold) are kept."""
    model = classifier_path(data_root.stage_dir("wikiref_classifier", context.partition_key))
    stage = stage_from_config(
        WikiRefFilter,
        config,
        model=data_root.relative(model),
        model_sha256=file_sha256(model),
    )
    run = run_downstream(context, stage, Perplexity.name, data_root, shard_executor, config.force)
    scored = read_all_rows(data_root.storage(), run.output, ["bucket", "wiki_prob"])
    by_bucket: dict[str, list[float]] = {}
    buckets, probs = scored.column("bucket").to_pylist(), scored.column("wiki_prob").to_pylist()
    for bucket, prob in zip(buckets, probs, strict=True):
        by_bucket.setdefault(bucket, []).append(prob)
    figure = plots.histograms(by_bucket, "P(wiki) by perplexity bucket", "P(wiki)")
    plot = plots.save_png(figure, data_root.storage(), run.output, "wiki_prob")
    return run.result(metadata={"wiki_prob": plot})


class ExactDedupConfig(Config):
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_wikiref],
    check_specs=stage_check_specs(ExactDedup.name, SPAM_REMOVED),
    code_version=ExactDedup.version,
    kinds={"parquet"},
)
def commoncrawl(
    context: AssetExecutionContext,
    config: ExactDedupConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """The CommonCrawl source of the mixture: `cc_wikiref` with exact duplicates (same text
    after whitespace normalization) dropped, first copy kept."""
    stage = ExactDedup()
    run = run_downstream(
        context, stage, WikiRefFilter.name, data_root, shard_executor, config.force
    )
    return run.result(
        checks=[planted_removed(data_root, context.partition_key, run.output, SPAM_REMOVED)]
    )
