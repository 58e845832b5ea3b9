"""Common Crawl assets: archives -> documents -> language-identified documents.

Thin by design: each asset turns its config into a curation stage, finds its inputs and hands
both to `materialize_stage`. All text logic lives in `curation/`.
"""

from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.checks import stage_check_specs
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import materialize_stage
from curation.cc_documents import CCDocuments
from curation.inputs import archive_shards, partition_shards
from curation.langid import LanguageId
from curation.runner import read_manifest

GROUP = "commoncrawl"


class CCDocumentsConfig(Config):
    input_format: Literal["wet", "warc"] = CCDocuments.input_format
    min_chars: int = CCDocuments.min_chars
    max_record_bytes: int = CCDocuments.max_record_bytes
    fast_extraction: bool = CCDocuments.fast_extraction
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
    inputs = archive_shards(
        data_root.storage(), data_root.crawl_archives(crawl, config.input_format)
    )
    return materialize_stage(context, stage, inputs, data_root, shard_executor, config.force)


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_documents],
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
    storage = data_root.storage()
    upstream_dir = data_root.stage_dir(CCDocuments.name, context.partition_key)
    stage = LanguageId(**config.model_dump(exclude={"force"}))
    return materialize_stage(
        context,
        stage,
        partition_shards(storage, upstream_dir),
        data_root,
        shard_executor,
        config.force,
        upstream=read_manifest(storage, upstream_dir),
    )
