"""Global dedup: MinHash signatures per crawl and for the sources, then `deduplicated`,
exact and near duplicates removed across every crawl and source (`curation/dedup/`).

Signatures are per upstream partition, so a new crawl computes only its own; `deduplicated`
reads every crawl's and the sources'. Its stage asset comes from the recipe's table; this
module gives its inputs and report (`HOOKS`) and the two signature assets.
"""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.config import FORCE_HELP, build, config_class
from assets.dedup_checks import cluster_examples, duplicates_verified, planted_duplicates
from assets.ground_truth import PLANTED_FILE, read_truth
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_assets import StageHooks, StageRun, asset_args, partition_of
from assets.stage_run import log_progress
from curation.core.inputs import partition_shards
from curation.core.manifest import read_manifest
from curation.core.runner import run_stage
from curation.dedup.corpus import CorpusGroup, corpus_inputs
from curation.dedup.signatures import MinHashSignatures
from curation.recipe import PARTITION, step

CRAWL_SIGNATURES = step("crawl_signatures")
SOURCE_SIGNATURES = step("source_signatures")


def signatures_dir(data_root: DataRoot, upstream: str, partition: str) -> str:
    """Signatures of one upstream partition: `stages/dedup_signatures/<asset>.<partition>`."""
    return data_root.stage_dir(MinHashSignatures.name, f"{upstream}.{partition}")


SignaturesConfig = config_class(
    "SignaturesConfig", MinHashSignatures, extra={"force": (bool, False, FORCE_HELP)}
)


def _sign(context: AssetExecutionContext, config, data_root: DataRoot, executor) -> dict:
    """Signatures of each upstream's partition, into its own directory."""
    storage = data_root.storage()
    stage = build(MinHashSignatures, config)
    of = step(context.assets_def.key.path[-1])
    partition = partition_of(context, of)
    metadata = {}
    for upstream in of.upstream:
        documents = data_root.stage_dir(upstream, partition)
        output = signatures_dir(data_root, upstream, partition)
        manifest = run_stage(
            stage,
            partition_shards(storage, documents),
            output,
            storage,
            executor.executor(),
            config.force,
            log_progress(context),
        )
        context.log.info(f"{stage.name}: {manifest.n_in} signatures of {upstream} -> {output}")
        metadata[f"{upstream}_documents"] = manifest.n_in
    return {**metadata, "num_perm": config.num_perm}


@asset(**asset_args(CRAWL_SIGNATURES), code_version=MinHashSignatures.version, kinds={"parquet"})
def crawl_signatures(
    context: AssetExecutionContext,
    config: SignaturesConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """MinHash signatures and content digests of the crawl's `commoncrawl` and `c4`
    documents: the per-crawl part of the dedup index. A new crawl computes only its own;
    `deduplicated` reads every crawl's."""
    return MaterializeResult(metadata=_sign(context, config, data_root, shard_executor))


@asset(**asset_args(SOURCE_SIGNATURES), code_version=MinHashSignatures.version, kinds={"parquet"})
def source_signatures(
    context: AssetExecutionContext,
    config: SignaturesConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """MinHash signatures and content digests of the curated sources' documents."""
    return MaterializeResult(metadata=_sign(context, config, data_root, shard_executor))


def corpus_groups(data_root: DataRoot, crawl_ids: list[str]) -> tuple[list[CorpusGroup], list[str]]:
    """Every corpus partition to deduplicate, in a fixed order (crawls sorted, then the
    curated sources), and the crawls left out because they have not been processed."""
    storage = data_root.storage()
    groups, pending = [], []
    for crawl in sorted(crawl_ids):
        if read_manifest(storage, data_root.output("commoncrawl", crawl)) is None:
            pending.append(crawl)
            continue
        for corpus in CRAWL_SIGNATURES.upstream:
            groups.append(_group(data_root, corpus, crawl, crawl))
    for source in SOURCE_SIGNATURES.upstream:
        groups.append(_group(data_root, source, PARTITION, None))
    return groups, pending


def _group(data_root: DataRoot, corpus: str, partition: str, crawl: str | None) -> CorpusGroup:
    return CorpusGroup(
        f"{corpus}/{partition}",
        data_root.stage_dir(corpus, partition),
        signatures_dir(data_root, corpus, partition),
        crawl,
    )


def _corpus(context: AssetExecutionContext, config, data_root: DataRoot):
    groups, pending = corpus_groups(data_root, context.instance.get_dynamic_partitions(crawls.name))
    for crawl in pending:
        context.log.warning(f"crawl {crawl} is not processed yet (no commoncrawl output): left out")
    return corpus_inputs(data_root.storage(), groups)


def _report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
    storage = data_root.storage()
    groups, pending = corpus_groups(data_root, context.instance.get_dynamic_partitions(crawls.name))
    summary = run.manifest.summary
    included = sorted({g.crawl for g in groups if g.crawl})
    return run.result(
        metadata={
            "crawls": ", ".join(included) or "none",
            "crawls_pending": ", ".join(pending) or "none",
            "candidate_pairs": summary.get("candidate_pairs", 0),
            "verified_pairs": summary.get("verified_pairs", 0),
            "clusters": summary.get("clusters", 0),
            "example_clusters": MetadataValue.md(cluster_examples(summary)),
        },
        checks=[
            duplicates_verified(storage, run.output, run.stage.threshold),
            planted_duplicates(
                planted_truth(data_root, included), storage, run.output, run.stage.threshold
            ),
        ],
    )


def planted_truth(data_root: DataRoot, crawls: list[str]) -> list[dict] | None:
    """The planted rows of the crawls in the corpus that have ground truth (the sample's and
    its scale worlds'); None when none has."""
    truths = [read_truth(data_root, crawl, PLANTED_FILE) for crawl in crawls]
    return None if all(t is None for t in truths) else [row for t in truths for row in t or []]


HOOKS = {"deduplicated": StageHooks(inputs=_corpus, report=_report)}
