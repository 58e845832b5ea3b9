"""Where the sources meet: global dedup, the mixture plan, and the data card.

`deduplicated` reads every crawl's CommonCrawl and C4 output and every curated source;
`mixture` samples it by the paper's Table 1; `data_card` describes all of it. All three are
unpartitioned: they depend on every crawl partition, and are brought up to date when an input
stage changes (eager automation; the `corpus` job runs them explicitly).
"""

import posixpath

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.checks import stage_check_specs
from assets.dedup_checks import (
    DUPLICATES_VERIFIED,
    PLANTED_DUPLICATES,
    cluster_examples,
    duplicates_verified,
    planted_duplicates,
)
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import log_progress, run_stage_asset, stage_from_config
from curation.data_card import Card, StageOutput, build_card, mixture_section
from curation.dedup_corpus import CorpusGroup, corpus_inputs
from curation.dedup_signatures import MinHashSignatures
from curation.inputs import partition_shards
from curation.mixture import PAPER_MIXTURE, Mixture, shares_off_plan
from curation.near_dedup import Deduplicated
from curation.runner import CODE_VERSION, publish, read_manifest, run_stage, staging_path
from curation.token_shards import read_shards_manifest

GROUP = "corpus"
PARTITION = "all"
SHARES_ON_PLAN = "shares_on_plan"
CARD_NAME = "DATA_CARD.md"

# The stages a data card walks, in pipeline order; crawl stages once per crawl partition,
# each with the stage whose kept rows it reads.
CRAWL_STAGES = {
    "cc_documents": "",
    "cc_line_dedup": "cc_documents",
    "cc_language": "cc_line_dedup",
    "cc_perplexity": "cc_language",
    "cc_wikiref": "cc_perplexity",
    "commoncrawl": "cc_wikiref",
    "c4_language": "cc_documents",
    "c4": "c4_language",
}
SOURCE_STAGES = ("wikipedia", "github", "books", "arxiv", "stackexchange")


CRAWL_CORPORA = ("commoncrawl", "c4")  # per crawl partition, in this order


def signatures_dir(data_root: DataRoot, upstream: str, partition: str) -> str:
    """Signatures of one upstream partition: `stages/dedup_signatures/<asset>.<partition>`."""
    return data_root.stage_dir(MinHashSignatures.name, f"{upstream}.{partition}")


class SignaturesConfig(Config):
    num_perm: int = MinHashSignatures.num_perm
    seed: int = MinHashSignatures.seed
    shingle_words: int = MinHashSignatures.shingle_words
    force: bool = False


def _sign(
    context: AssetExecutionContext,
    config: SignaturesConfig,
    upstreams: tuple[str, ...],
    partition: str,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """Signatures of each upstream's partition, into its own directory."""
    storage = data_root.storage()
    stage = stage_from_config(MinHashSignatures, config)
    metadata = {}
    for upstream in upstreams:
        documents = data_root.stage_dir(upstream, partition)
        output = signatures_dir(data_root, upstream, partition)
        manifest = run_stage(
            stage,
            partition_shards(storage, documents),
            output,
            storage,
            shard_executor.executor(),
            config.force,
            log_progress(context),
        )
        context.log.info(f"{stage.name}: {manifest.n_in} signatures of {upstream} -> {output}")
        metadata[f"{upstream}_documents"] = manifest.n_in
    return MaterializeResult(metadata={**metadata, "num_perm": config.num_perm})


@asset(
    partitions_def=crawls,
    group_name="commoncrawl",
    deps=list(CRAWL_CORPORA),
    code_version=MinHashSignatures.version,
    kinds={"parquet"},
)
def crawl_signatures(
    context: AssetExecutionContext,
    config: SignaturesConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """MinHash signatures and content digests of the crawl's `commoncrawl` and `c4`
    documents: the per-crawl part of the dedup index. A new crawl computes only its own;
    `deduplicated` reads every crawl's."""
    return _sign(context, config, CRAWL_CORPORA, context.partition_key, data_root, shard_executor)


@asset(
    group_name="sources",
    deps=list(SOURCE_STAGES),
    code_version=MinHashSignatures.version,
    kinds={"parquet"},
)
def source_signatures(
    context: AssetExecutionContext,
    config: SignaturesConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """MinHash signatures and content digests of the curated sources' documents."""
    return _sign(context, config, SOURCE_STAGES, PARTITION, data_root, shard_executor)


def corpus_groups(data_root: DataRoot, crawl_ids: list[str]) -> tuple[list[CorpusGroup], list[str]]:
    """Every corpus partition to deduplicate, in a fixed order (crawls sorted, then the
    curated sources), and the crawls left out because they have not been processed."""
    storage = data_root.storage()
    groups, pending = [], []
    for crawl in sorted(crawl_ids):
        if read_manifest(storage, data_root.stage_dir("commoncrawl", crawl)) is None:
            pending.append(crawl)
            continue
        for corpus in CRAWL_CORPORA:
            groups.append(
                CorpusGroup(
                    f"{corpus}/{crawl}",
                    data_root.stage_dir(corpus, crawl),
                    signatures_dir(data_root, corpus, crawl),
                    crawl,
                )
            )
    for source in SOURCE_STAGES:
        groups.append(
            CorpusGroup(
                f"{source}/{PARTITION}",
                data_root.stage_dir(source, PARTITION),
                signatures_dir(data_root, source, PARTITION),
            )
        )
    return groups, pending


class DedupConfig(Config):
    threshold: float = Deduplicated.threshold
    bands: int = Deduplicated.bands
    rows: int = Deduplicated.rows
    max_rows_per_bucket_partition: int = Deduplicated.max_rows_per_bucket_partition
    max_rows_per_cluster_partition: int = Deduplicated.max_rows_per_cluster_partition
    source_priority: list[str] = list(Deduplicated.source_priority)
    independent_sources: list[list[str]] = [list(p) for p in Deduplicated.independent_sources]
    force: bool = False


@asset(
    group_name=GROUP,
    deps=[crawl_signatures, source_signatures],
    check_specs=stage_check_specs(Deduplicated.name, DUPLICATES_VERIFIED, PLANTED_DUPLICATES),
    code_version=Deduplicated.version,
    automation_condition=AutomationCondition.eager(),
    kinds={"parquet"},
)
def deduplicated(
    context: AssetExecutionContext,
    config: DedupConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """Exact and MinHash near-duplicates removed across every crawl and source: LSH
    candidates verified on the signatures, clusters by union-find, one document kept per
    cluster (source priority, then earliest crawl, then id). C4 and CommonCrawl are not
    deduplicated against each other (the paper mixes both views of the same crawls)."""
    storage = data_root.storage()
    groups, pending = corpus_groups(data_root, context.instance.get_dynamic_partitions(crawls.name))
    for crawl in pending:
        context.log.warning(f"crawl {crawl} is not processed yet (no commoncrawl output): left out")
    stage = stage_from_config(Deduplicated, config)
    run = run_stage_asset(
        context,
        stage,
        corpus_inputs(storage, groups),
        PARTITION,
        data_root,
        shard_executor,
        config.force,
    )
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
            duplicates_verified(storage, run.output, stage.threshold),
            planted_duplicates(data_root, storage, run.output, stage.threshold, included),
        ],
    )


class MixtureConfig(Config):
    shares: dict[str, float] = {c: s for c, (s, _) in PAPER_MIXTURE.items()}
    target_tokens: int = Mixture.target_tokens
    anchor: str = Mixture.anchor
    max_epochs: float = Mixture.max_epochs
    bytes_per_token: float = Mixture.bytes_per_token
    validation_fraction: float = Mixture.validation_fraction
    seed: int = Mixture.seed
    share_tolerance: float = 0.01  # of the training stream, beyond the corpus's granularity
    force: bool = False


@asset(
    group_name=GROUP,
    deps=["deduplicated"],
    check_specs=stage_check_specs(Mixture.name, SHARES_ON_PLAN),
    code_version=Mixture.version,
    automation_condition=AutomationCondition.eager(),
    kinds={"parquet"},
)
def mixture(
    context: AssetExecutionContext,
    config: MixtureConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """The paper's sampling plan: a validation split by document hash, then copies per
    training document so every corpus gets its share of the stream (Table 1)."""
    storage = data_root.storage()
    upstream_dir = data_root.stage_dir("deduplicated", PARTITION)
    stage = Mixture(
        shares=tuple(config.shares.items()),
        target_tokens=config.target_tokens,
        anchor=config.anchor,
        max_epochs=config.max_epochs,
        bytes_per_token=config.bytes_per_token,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    run = run_stage_asset(
        context,
        stage,
        partition_shards(storage, upstream_dir),
        PARTITION,
        data_root,
        shard_executor,
        config.force,
        read_manifest(storage, upstream_dir),
    )
    summary = run.manifest.summary
    for row in summary["plan"]:
        if row["warning"]:
            context.log.warning(f"mixture: {row['warning']}")
    card = Card()
    mixture_section(card, run.manifest)
    problems = shares_off_plan(summary, run.manifest.histograms, config.share_tolerance)
    return run.result(
        metadata={
            "plan": MetadataValue.md(_inline_images(card)),
            "target_tokens": summary["target_tokens"],
            "warnings": "; ".join(r["warning"] for r in summary["plan"] if r["warning"]) or "none",
        },
        checks=[
            AssetCheckResult(
                check_name=SHARES_ON_PLAN,
                passed=not problems,
                severity=AssetCheckSeverity.ERROR,
                metadata={"off_plan": "; ".join(problems) or "none"},
            )
        ],
    )


def _inline_images(card: Card) -> str:
    """The card's markdown with its PNGs inlined: the web UI shows no relative images."""
    markdown = card.markdown
    for name, data in card.images.items():
        markdown = markdown.replace(f"]({name})", f"]({plots.data_uri(data)})")
    return markdown


def _stage_outputs(data_root: DataRoot) -> list[StageOutput]:
    """Every finished partition the card describes, in pipeline order."""
    storage = data_root.storage()
    crawls = [
        name
        for name in map(
            posixpath.basename, storage.list_dirs(storage.path("stages", "cc_documents"))
        )
        if not name.startswith(".")  # staging and previous outputs
    ]
    wanted = [
        *(
            (asset, crawl, f"{upstream}[{crawl}]" if upstream else "")
            for crawl in crawls
            for asset, upstream in CRAWL_STAGES.items()
        ),
        *((asset, PARTITION, "") for asset in SOURCE_STAGES),
        ("deduplicated", PARTITION, ""),
        ("mixture", PARTITION, f"deduplicated[{PARTITION}]"),
    ]
    outputs = []
    for asset_name, partition, upstream in wanted:
        manifest = read_manifest(storage, data_root.stage_dir(asset_name, partition))
        if manifest is not None:
            outputs.append(StageOutput(asset_name, partition, manifest, upstream))
    return outputs


def _tokens_by_corpus(shards_manifest: dict) -> dict[str, dict[str, int]]:
    splits = shards_manifest["splits"]
    return {
        split: {corpus: n["tokens"] for corpus, n in splits[split]["sources"].items()}
        for split in splits
    }


@asset(
    group_name=GROUP,
    deps=["mixture", "tokenized_shards"],
    check_specs=[AssetCheckSpec("every_stage_conserves", asset="data_card")],
    automation_condition=AutomationCondition.eager(),
    kinds={"markdown"},
)
def data_card(context: AssetExecutionContext, data_root: DataRoot) -> MaterializeResult:
    """DATA_CARD.md: the funnel of every stage, languages, perplexity buckets, classifier
    scores, dedup clusters, planned versus realised mixture, token counts and provenance,
    all read from the manifests. Written with its plots to `<data root>/card/`."""
    storage = data_root.storage()
    stages = _stage_outputs(data_root)
    mixture_manifest = next((s.manifest for s in stages if s.asset == "mixture"), None)
    shards = read_shards_manifest(storage, data_root.stage_dir("tokenized_shards", PARTITION))
    tokens = _tokens_by_corpus(shards) if shards else None
    card = build_card(stages, mixture_manifest, tokens, code_version=CODE_VERSION)
    directory = storage.path("card")
    staging = staging_path(directory)
    storage.remove_tree(staging)
    storage.makedirs(staging)
    for name, data in card.images.items():
        storage.write_bytes(posixpath.join(staging, name), data)
    storage.write_bytes(posixpath.join(staging, CARD_NAME), card.markdown.encode())
    publish(storage, staging, directory, last=CARD_NAME)
    unbalanced = [
        s.label
        for s in stages
        if s.manifest.n_in != s.manifest.kept + sum(s.manifest.dropped.values())
    ]
    context.log.info(f"data card: {len(stages)} stage outputs -> {directory}/DATA_CARD.md")
    return MaterializeResult(
        metadata={
            "card": MetadataValue.md(_inline_images(card)),
            "path": MetadataValue.path(posixpath.join(directory, CARD_NAME)),
            "stages": len(stages),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_stage_conserves",
                passed=not unbalanced,
                metadata={"unbalanced": ", ".join(unbalanced) or "none"},
            )
        ],
    )
