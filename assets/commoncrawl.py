"""Common Crawl assets, CCNet order: archives -> documents -> line dedup -> language id -> ...

Thin by design: each asset turns its config into a curation stage and hands it to
`run_stage_asset`/`run_downstream`. All text logic lives in `curation/`.
"""

import json
import math
import posixpath
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.checks import PERPLEXITY_ORDERED, perplexity_ordered, read_all_rows, stage_check_specs
from assets.ground_truth import (
    BOILERPLATE_REMOVED,
    SPAM_REMOVED,
    boilerplate_removed,
    spam_removed,
)
from assets.partitions import crawls
from assets.reference import kenlm_model, models_dir
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_downstream, run_stage_asset
from curation.cc_documents import CCDocuments
from curation.inputs import archive_shards
from curation.langid import LanguageId
from curation.line_dedup import LineDedup
from curation.perplexity import (
    DEFAULT_PERCENTILES,
    Perplexity,
    compute_cutoffs,
    models_fingerprint,
    perplexities,
)

GROUP = "commoncrawl"


class CCDocumentsConfig(Config):
    input_format: Literal["wet", "warc"] = CCDocuments.input_format
    min_chars: int = CCDocuments.min_chars
    max_record_bytes: int = CCDocuments.max_record_bytes
    fast_extraction: bool = CCDocuments.fast_extraction
    force: bool = False


class LineDedupConfig(Config):
    group_size: int = LineDedup.group_size
    min_chars: int = LineDedup.min_chars
    force: bool = False


class LanguageConfig(Config):
    model: str = LanguageId.model
    threshold: float = LanguageId.threshold
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    check_specs=stage_check_specs(CCDocuments.name),
    code_version=CCDocuments.version,
    kinds={"parquet"},
)
def cc_documents(
    context: AssetExecutionContext,
    config: CCDocumentsConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """One document per HTML capture of the crawl: WET conversion records (default, as CCNet)
    or WARC responses through trafilatura. Short, non-HTML, undecodable and damaged records
    are dropped with a reason."""
    crawl = context.partition_key
    stage = CCDocuments(crawl=crawl, **config.model_dump(exclude={"force"}))
    archives = data_root.crawl_archives(crawl, config.input_format)
    inputs = archive_shards(data_root.storage(), archives)
    run = run_stage_asset(context, stage, inputs, crawl, data_root, shard_executor, config.force)
    return run.result()


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_documents],
    check_specs=stage_check_specs(LineDedup.name, BOILERPLATE_REMOVED),
    code_version=LineDedup.version,
    kinds={"parquet"},
)
def cc_line_dedup(
    context: AssetExecutionContext,
    config: LineDedupConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """CCNet line dedup: lines found in two or more documents of a group of shards are
    removed everywhere; documents under `min_chars` afterwards are dropped."""
    stage = LineDedup(**config.model_dump(exclude={"force"}))
    run = run_downstream(context, stage, CCDocuments.name, data_root, shard_executor, config.force)
    upstream = data_root.stage_dir(CCDocuments.name, context.partition_key)
    return run.result(
        checks=[boilerplate_removed(data_root, context.partition_key, run.output, upstream)]
    )


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_line_dedup],
    check_specs=stage_check_specs(LanguageId.name),
    code_version=LanguageId.version,
    kinds={"parquet", "fasttext"},
)
def cc_language(
    context: AssetExecutionContext,
    config: LanguageConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """fastText lid.176 on each document (newlines removed); keeps language_score >= the
    threshold. The language histogram is in the metadata."""
    stage = LanguageId(**config.model_dump(exclude={"force"}))
    run = run_downstream(context, stage, LineDedup.name, data_root, shard_executor, config.force)
    return run.result()


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
    table = pq.read_table(documents, filesystem=storage.fs, columns=["text", "language"])
    scores = perplexities(table, models_dir(data_root))
    computed = compute_cutoffs(scores, tuple(config.percentiles))
    cutoffs = {lang: list(c) for lang, c in computed.items()} | config.table
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
    deps=[perplexity_cutoffs],
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
    stage = Perplexity(
        models_dir=models_dir(data_root),
        cutoffs=cutoffs,
        keep_buckets=tuple(config.keep_buckets),
        keep_unmodelled=config.keep_unmodelled,
        max_chars_per_line=config.max_chars_per_line,
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
            spam_removed(data_root, crawl, run.output, SPAM_REMOVED),
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
