"""CommonCrawl, per crawl partition: CCNet (documents, line dedup, language id, perplexity),
the Wikipedia-reference classifier, exact dedup into `commoncrawl`, and the C4 branch.

The stage assets come from the recipe's table (curation/recipe.py); this module says only
what each does beyond running its stage (`HOOKS`), and holds the two assets that are not
shard maps: the perplexity cutoffs and the reference classifier. All text logic lives in
`curation/commoncrawl/`.
"""

import math
import posixpath

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.checks import perplexity_ordered, read_all_rows
from assets.config import build, config_class
from assets.ground_truth import boilerplate_removed, planted_removed
from assets.perplexity_models import PERPLEXITY_MODELS
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_assets import StageHooks, StageRun, asset_args, upstream_rows
from curation.commoncrawl.perplexity import Perplexity
from curation.commoncrawl.perplexity_cutoffs import (
    CutoffSettings,
    crawl_cutoffs,
    read_cutoff_csv,
    read_cutoffs,
    scorer_for,
    write_cutoffs,
)
from curation.commoncrawl.wikiref import (
    ClassifierSettings,
    cited_url_set,
    crawl_pages,
    train_classifier,
    training_set,
)
from curation.core.inputs import archive_shards
from curation.recipe import LOREM_REMOVED, SPAM_REMOVED, WIKIREF_AUC, step


def _archives(context: AssetExecutionContext, config, data_root: DataRoot):
    archives = data_root.crawl_archives(context.partition_key, config.input_format)
    return archive_shards(data_root.storage(), archives)


def _line_dedup_report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
    crawl = context.partition_key
    upstream = data_root.stage_dir(step("cc_line_dedup").upstream[0], crawl)
    check = boilerplate_removed(data_root, crawl, run.output, upstream, config.normalization)
    return run.result(checks=[check])


def _cutoffs_dir(data_root: DataRoot, crawl: str) -> str:
    return data_root.output("perplexity_cutoffs", crawl)


def _perplexity_stage(context, config, data_root: DataRoot) -> Perplexity:
    """Scoring as `perplexity_cutoffs` recorded it, reading back the sample's scores."""
    return read_cutoffs(
        data_root.storage(),
        _cutoffs_dir(data_root, context.partition_key),
        keep_buckets=tuple(config.keep_buckets),
        keep_unmodelled=config.keep_unmodelled,
    )


def _perplexity_report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
    storage = data_root.storage()
    scored = read_all_rows(storage, run.output, ["language", "perplexity", "bucket", "url"])
    figure = plots.histograms(
        _perplexity_by_language(scored), "perplexity by language (kept and dropped)",
        "perplexity", cutoffs=run.stage.cutoffs, log_x=True,
    )  # fmt: skip
    return run.result(
        metadata={"histogram": plots.save_png(figure, storage, run.output, "perplexity")},
        checks=[
            perplexity_ordered(scored),
            planted_removed(data_root, context.partition_key, run.output, SPAM_REMOVED),
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


def classifier_path(output: str) -> str:
    return posixpath.join(output, "wikiref.bin")


def _classifier(context, config, data_root: DataRoot) -> dict:
    """The classifier this crawl trained, by path under the root and by content."""
    model = classifier_path(data_root.output("wikiref_classifier", context.partition_key))
    return {"model": data_root.relative(model), "model_sha256": data_root.storage().sha256(model)}


def _wikiref_report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
    scored = read_all_rows(data_root.storage(), run.output, ["bucket", "wiki_prob"])
    by_bucket: dict[str, list[float]] = {}
    buckets, probs = scored.column("bucket").to_pylist(), scored.column("wiki_prob").to_pylist()
    for bucket, prob in zip(buckets, probs, strict=True):
        by_bucket.setdefault(bucket, []).append(prob)
    figure = plots.histograms(by_bucket, "P(wiki) by perplexity bucket", "P(wiki)")
    plot = plots.save_png(figure, data_root.storage(), run.output, "wiki_prob")
    return run.result(metadata={"wiki_prob": plot})


def _planted(name: str):
    def report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
        return run.result(
            checks=[planted_removed(data_root, context.partition_key, run.output, name)]
        )

    return report


HOOKS = {
    "cc_documents": StageHooks(
        inputs=_archives,
        computed=("crawl",),
        compute=lambda context, config, data_root: {"crawl": context.partition_key},
    ),
    "cc_line_dedup": StageHooks(report=_line_dedup_report),
    "cc_language": StageHooks(kinds=frozenset({"parquet", "fasttext"})),
    "cc_perplexity": StageHooks(
        make=_perplexity_stage,
        config=("keep_buckets", "keep_unmodelled"),
        report=_perplexity_report,
        kinds=frozenset({"parquet", "kenlm"}),
    ),
    "cc_wikiref": StageHooks(
        computed=("model", "model_sha256"),
        compute=_classifier,
        report=_wikiref_report,
        kinds=frozenset({"parquet", "fasttext"}),
    ),
    "commoncrawl": StageHooks(report=_planted(SPAM_REMOVED)),
    "c4_language": StageHooks(kinds=frozenset({"parquet", "fasttext"})),
    "c4": StageHooks(report=_planted(LOREM_REMOVED)),
}


CutoffsConfig = config_class(
    "CutoffsConfig",
    CutoffSettings,
    doc="How the crawl's documents are scored (recorded for `cc_perplexity`, which scores "
    "the rest the same way) and where the cutoffs come from.",
)


@asset(**asset_args(step("perplexity_cutoffs")), kinds={"kenlm", "json"})
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
    output = _cutoffs_dir(data_root, crawl)
    scorer = scorer_for(
        storage, PERPLEXITY_MODELS, output, config.languages,
        scoring=config.scoring, max_chars=config.max_chars,
    )  # fmt: skip
    configured = read_cutoff_csv(config.cutoff_csv, config.percentiles) if config.cutoff_csv else {}
    configured |= config.table
    inputs = upstream_rows(context, data_root, step("perplexity_cutoffs"))
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


WikiRefClassifierConfig = config_class("WikiRefClassifierConfig", ClassifierSettings)


@asset(**asset_args(step("wikiref_classifier")), kinds={"fasttext"})
def wikiref_classifier(
    context: AssetExecutionContext, config: WikiRefClassifierConfig, data_root: DataRoot
) -> MaterializeResult:
    """RedPajama's Wikipedia-reference classifier: crawl pages whose URL a Wikipedia `<ref>`
    cites are positives, an equal number of other pages (seeded) negatives; fastText
    supervised on page text, evaluated on a held-out split."""
    storage = data_root.storage()
    crawl = context.partition_key
    articles = data_root.output("wikipedia")
    cited = cited_url_set(storage, articles)
    rows = crawl_pages(storage, data_root.output("cc_language", crawl))
    examples = training_set(rows, cited, config.seed, config.negatives_per_positive)
    output = data_root.output("wikiref_classifier", crawl)
    settings = build(ClassifierSettings, config)
    with storage.local_directory(output) as local:
        report = train_classifier(
            examples, classifier_path(local), settings.seed, settings.holdout_fraction, settings
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
            "path": MetadataValue.path(classifier_path(output)),
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
