"""Curated sources of the mixture (paper Table 1): GitHub, Books, ArXiv, StackExchange.

Each reads its raw dump in its native format (the sample world's by default, `input_dir` for
a real one), cleans it with its curation stage, and re-reads the output with the source's own
verifier (`rules_hold_on_output`). Wikipedia, also a source, is in `reference.py`: the
perplexity models train on it.
"""

import posixpath
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.checks import RULES_HOLD, rules_hold, stage_check_specs
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_stage_asset, stage_from_config
from curation.inputs import archive_shards
from curation.sources.arxiv import SUFFIXES as ARXIV_SUFFIXES
from curation.sources.arxiv import ArxivClean, verify_arxiv
from curation.sources.books import BooksClean, book_shards, verify_books
from curation.sources.github import SUFFIXES as GITHUB_SUFFIXES
from curation.sources.github import GitHubFilter, verify_github
from curation.sources.stackexchange import (
    StackExchangeClean,
    site_shards,
    verify_stackexchange,
)
from curation.stage import ShardInput, Stage

GROUP = "sources"
PARTITION = "all"


def input_dir(data_root: DataRoot, configured: str, source: str) -> str:
    """The configured dump directory, or the sample world's copy of the source."""
    return configured or posixpath.join(data_root.sample_dir(), source)


def run_source(
    context: AssetExecutionContext,
    stage: Stage,
    inputs: Sequence[ShardInput],
    verify: Callable[[pa.Table], list[str]],
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
    force: bool,
) -> MaterializeResult:
    run = run_stage_asset(context, stage, inputs, PARTITION, data_root, shard_executor, force)
    kept = pq.read_table(run.output, filesystem=data_root.storage().fs)
    return run.result(checks=[rules_hold(verify(kept))])


class StackExchangeConfig(Config):
    input_dir: str = ""
    top_sites: int = StackExchangeClean.top_sites  # the paper's 28; `make demo` passes 4
    force: bool = False


@asset(
    group_name=GROUP,
    check_specs=stage_check_specs(StackExchangeClean.name, RULES_HOLD),
    code_version=StackExchangeClean.version,
    kinds={"parquet", "xml"},
)
def stackexchange(
    context: AssetExecutionContext,
    config: StackExchangeConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """The largest sites' questions, each followed by its answers sorted by integer score
    (highest first), HTML bodies as text; XML parsed safely and streamed."""
    directory = input_dir(data_root, config.input_dir, "stackexchange")
    inputs = site_shards(data_root.storage(), directory)
    stage = stage_from_config(StackExchangeClean, config)
    return run_source(
        context, stage, inputs, verify_stackexchange, data_root, shard_executor, config.force
    )


class BooksConfig(Config):
    input_dir: str = ""
    overlap_threshold: float = BooksClean.overlap_threshold
    lsh_threshold: float = BooksClean.lsh_threshold
    num_perm: int = BooksClean.num_perm
    force: bool = False


@asset(
    group_name=GROUP,
    check_specs=stage_check_specs(BooksClean.name, RULES_HOLD),
    code_version=BooksClean.version,
    kinds={"parquet", "datasketch"},
)
def books(
    context: AssetExecutionContext,
    config: BooksConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """Gutenberg and Books3-style books: Project Gutenberg header and footer removed; books
    with more than 90% content overlap (MinHash LSH candidates, exact containment check) are
    one cluster, the longest kept."""
    inputs = book_shards(data_root.storage(), input_dir(data_root, config.input_dir, "books"))
    stage = stage_from_config(BooksClean, config)
    return run_source(
        context,
        stage,
        inputs,
        lambda table: verify_books(table, stage),
        data_root,
        shard_executor,
        config.force,
    )


class GitHubConfig(Config):
    input_dir: str = ""
    licenses: list[str] = list(GitHubFilter.licenses)
    max_line_length: int = GitHubFilter.max_line_length
    max_mean_line_length: float = GitHubFilter.max_mean_line_length
    min_alphanumeric_fraction: float = GitHubFilter.min_alphanumeric_fraction
    min_alpha_per_token: float = GitHubFilter.min_alpha_per_token
    force: bool = False


@asset(
    group_name=GROUP,
    check_specs=stage_check_specs(GitHubFilter.name, RULES_HOLD),
    code_version=GitHubFilter.version,
    kinds={"parquet", "github"},
)
def github(
    context: AssetExecutionContext,
    config: GitHubConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """BigQuery-style GitHub rows: permissive licenses (MIT, BSD, Apache) and code extensions
    only; files with a 1000+ character line, mean line over 100, alphanumeric fraction under
    0.25 or under 1.5 letters per token dropped; leading license header comments stripped;
    exact duplicates across repos dropped."""
    directory = input_dir(data_root, config.input_dir, "github")
    inputs = archive_shards(data_root.storage(), directory, GITHUB_SUFFIXES)
    stage = stage_from_config(GitHubFilter, config)
    return run_source(
        context,
        stage,
        inputs,
        lambda table: verify_github(table, stage),
        data_root,
        shard_executor,
        config.force,
    )


class ArxivConfig(Config):
    input_dir: str = ""
    max_member_bytes: int = ArxivClean.max_member_bytes
    max_total_bytes: int = ArxivClean.max_total_bytes
    max_members: int = ArxivClean.max_members
    max_macro_depth: int = ArxivClean.max_macro_depth
    force: bool = False


@asset(
    group_name=GROUP,
    check_specs=stage_check_specs(ArxivClean.name, RULES_HOLD),
    code_version=ArxivClean.version,
    kinds={"parquet", "latex"},
)
def arxiv(
    context: AssetExecutionContext,
    config: ArxivConfig,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """arXiv source tarballs, extracted safely in memory (no member outside the tree, size
    and count limits): main .tex with its \\input/\\include children; everything before the
    first section and from the bibliography/appendix on removed; comments removed (escaped
    \\% kept); user macros (\\newcommand, \\renewcommand, \\def, with arguments) expanded."""
    directory = input_dir(data_root, config.input_dir, "arxiv")
    inputs = archive_shards(data_root.storage(), directory, ARXIV_SUFFIXES)
    stage = stage_from_config(ArxivClean, config)
    return run_source(context, stage, inputs, verify_arxiv, data_root, shard_executor, config.force)
