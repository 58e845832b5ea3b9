"""The C4 branch: Common Crawl documents through language id and the C4 heuristics.

C4 is its own corpus in the LLaMA mixture, so it starts again from `cc_documents` (not from
CCNet's line dedup): fastText language id, then C4's line, page and 3-sentence-span rules.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.checks import stage_check_specs
from assets.commoncrawl import GROUP, cc_documents
from assets.ground_truth import LOREM_REMOVED, planted_removed
from assets.partitions import crawls
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import run_downstream, stage_from_config
from curation.c4 import C4Filter
from curation.cc_documents import CCDocuments
from curation.langid import LanguageId

C4_LANGUAGE = "c4_language"  # where the language-identified input of C4 is written


class C4Config(Config):
    languages: list[str] = list(C4Filter.languages)
    language_threshold: float = LanguageId.threshold
    min_sentences: int = C4Filter.min_sentences
    min_words_per_line: int = C4Filter.min_words_per_line
    max_word_length: int = C4Filter.max_word_length
    # One word or phrase per line, `#` comments; empty = no bad-words rule (the C4 list is
    # not shipped: point this at the list your policy uses).
    bad_words_path: str = C4Filter.bad_words_path
    force: bool = False


@asset(
    partitions_def=crawls,
    group_name=GROUP,
    deps=[cc_documents],
    check_specs=stage_check_specs(C4Filter.name, LOREM_REMOVED),
    code_version=C4Filter.version,
    kinds={"parquet"},
)
def c4(
    context: AssetExecutionContext,
    config: C4Config,
    data_root: DataRoot,
    shard_executor: ShardExecutorResource,
) -> MaterializeResult:
    """C4 heuristics: lines without terminal punctuation, under 3 words, with a 1000+ character
    word, "javascript" or policy phrases removed; pages under 5 sentences, with "lorem ipsum"
    or "{" dropped; repeated 3-sentence spans removed after their first occurrence."""
    language = run_downstream(
        context,
        # Every confident language: C4's own rule keeps `languages`, with its own reason.
        LanguageId(threshold=config.language_threshold, languages=()),
        CCDocuments.name,
        data_root,
        shard_executor,
        config.force,
        asset_name=C4_LANGUAGE,
    )
    stage = stage_from_config(C4Filter, config, exclude={"language_threshold"})
    run = run_downstream(context, stage, C4_LANGUAGE, data_root, shard_executor, config.force)
    return run.result(
        metadata={
            "language_id_in": language.manifest.n_in,
            "language_id_dropped": sum(language.manifest.dropped.values()),
            "language_funnel": language.metadata["funnel"],
        },
        checks=[planted_removed(data_root, context.partition_key, run.output, LOREM_REMOVED)],
    )
