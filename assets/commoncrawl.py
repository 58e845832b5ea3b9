"""Common Crawl ingest, CCNet order: archives -> documents -> line dedup -> language id.

Thin by design: each asset turns its config into a curation stage and hands it to
`run_stage_asset`/`run_downstream`. All text logic lives in `curation/`.
"""

from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.checks import stage_check_specs
from assets.crawl_segments import crawl_segments
from assets.ground_truth import BOILERPLATE_REMOVED, boilerplate_removed
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_downstream, run_stage_asset, stage_from_config
from curation.cc_documents import CCDocuments
from curation.inputs import archive_shards
from curation.langid import LanguageId
from curation.line_dedup import LineDedup

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
    # CCNet's normalize_for_dedup, or this project's broader key (curation/normalize.py).
    normalization: Literal["ccnet", "broad"] = "ccnet"
    force: bool = False


class LanguageConfig(Config):
    model: str = LanguageId.model
    threshold: float = LanguageId.threshold
    # The paper's CommonCrawl is English; [] keeps every language (a multilingual crawl).
    languages: list[str] = list(LanguageId.languages)
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[crawl_segments],
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
    stage = stage_from_config(CCDocuments, config, crawl=crawl)
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
    stage = stage_from_config(LineDedup, config)
    run = run_downstream(context, stage, CCDocuments.name, data_root, shard_executor, config.force)
    upstream = data_root.stage_dir(CCDocuments.name, context.partition_key)
    return run.result(
        checks=[
            boilerplate_removed(
                data_root, context.partition_key, run.output, upstream, config.normalization
            )
        ]
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
    """fastText lid.176 on each document (newlines removed, score rounded to two decimals);
    keeps the configured languages (English) at language_score >= the threshold. The
    language histograms, kept and dropped, are in the metadata."""
    stage = stage_from_config(LanguageId, config)
    run = run_downstream(context, stage, LineDedup.name, data_root, shard_executor, config.force)
    return run.result()
