"""Common Crawl quality, after language id: KenLM perplexity buckets (CCNet), the
Wikipedia-reference classifier (RedPajama), and exact dedup into the final `commoncrawl`."""

import json
import math
import posixpath

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
from assets.reference import WIKIPEDIA_PARTITION, kenlm_model, models_dir, wikipedia
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_downstream, stage_from_config
from curation.exact_dedup import ExactDedup
from curation.langid import LanguageId
from curation.perplexity import DEFAULT_PERCENTILES, Perplexity, crawl_cutoffs, models_fingerprint
from curation.wikipedia import WikipediaText
from curation.wikiref import (
    FastTextParams,
    WikiRefFilter,
    cited_url_set,
    crawl_pages,
    train_classifier,
    training_set,
)


class CutoffsConfig(Config):
    percentiles: list[float] = list(DEFAULT_PERCENTILES)
    # A configured table (language -> [p30, p60]) overrides the computed cutoffs, like
    # CCNet's cutoff.csv shipped with its release; languages missing from it are computed.
    table: dict[str, list[float]] = {}


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    # Every language's model: partitions of another kind, so all of them.
    deps=[cc_language, AssetDep(kenlm_model, partition_mapping=AllPartitionMapping())],
    kinds={"kenlm", "json"},
)
def perplexity_cutoffs(
    context: AssetExecutionContext, config: CutoffsConfig, data_root: DataRoot
) -> MaterializeResult:
    """Per-language perplexity cutoffs (30th and 60th percentiles of this crawl), the head /
    middle / tail boundaries `cc_perplexity` buckets with (CCNet's cutoff.csv)."""
    storage = data_root.storage()
    documents = data_root.stage_dir(LanguageId.name, context.partition_key)
    cutoffs, scores = crawl_cutoffs(
        storage, documents, models_dir(data_root), tuple(config.percentiles), config.table
    )
    output = data_root.stage_dir("perplexity_cutoffs", context.partition_key)
    storage.makedirs(output)
    storage.write_bytes(
        cutoffs_path(output), json.dumps(cutoffs, indent=2, sort_keys=True).encode()
    )
    figure = plots.histograms(
        {lang: v.tolist() for lang, v in scores.items()},
        "document perplexity by language, with the cutoffs",
        "perplexity",
        cutoffs=cutoffs,
        log_x=True,
    )
    rows = ["| language | p30 | p60 | documents | source |", "|---|---:|---:|---:|---|"]
    for lang, (low, high) in sorted(cutoffs.items()):
        source = "configured" if lang in config.table else "computed"
        rows.append(f"| {lang} | {low:.1f} | {high:.1f} | {len(scores.get(lang, []))} | {source} |")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(cutoffs_path(output)),
            "cutoffs": MetadataValue.md("\n".join(rows)),
            "histogram": plots.save_png(figure, storage, output, "perplexity"),
        }
    )


def cutoffs_path(output: str) -> str:
    return posixpath.join(output, "cutoffs.json")


class PerplexityConfig(Config):
    keep_buckets: list[str] = list(Perplexity.keep_buckets)
    keep_unmodelled: bool = Perplexity.keep_unmodelled
    max_chars_per_line: int = Perplexity.max_chars_per_line
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
    """KenLM perplexity of each document with its language's model (CCNet's formula over
    normalized lines); `bucket` head / middle / tail by the crawl's cutoffs; head and middle
    kept. Languages without a model go to bucket `all`."""
    storage = data_root.storage()
    crawl = context.partition_key
    cutoffs_file = cutoffs_path(data_root.stage_dir("perplexity_cutoffs", crawl))
    cutoffs = json.loads(storage.read_bytes(cutoffs_file))
    stage = stage_from_config(
        Perplexity,
        config,
        models_dir=models_dir(data_root),
        cutoffs=cutoffs,
        models_fingerprint=models_fingerprint(models_dir(data_root), sorted(cutoffs)),
    )
    run = run_downstream(context, stage, LanguageId.name, data_root, shard_executor, config.force)
    scored = read_all_rows(storage, run.output, ["language", "perplexity", "bucket", "url"])
    figure = plots.histograms(
        _perplexity_by_language(scored), "perplexity by language (kept and dropped)",
        "perplexity", cutoffs=cutoffs, log_x=True,
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
    threshold: float = WikiRefFilter.threshold  # RedPajama's value
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
    """`wiki_prob` from the Wikipedia-reference classifier; pages at or above the threshold
    are kept."""
    model = classifier_path(data_root.stage_dir("wikiref_classifier", context.partition_key))
    stage = stage_from_config(WikiRefFilter, config, model=model)
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
