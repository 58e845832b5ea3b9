"""The recipe as one table: every step of the graph, in pipeline order.

Each `Step` says what an asset is (its name, which is also its directory under `stages/`), the
curation stage it runs when it is a shard map, the assets it reads, how it is partitioned, its
group (the package its logic lives in), the job that materializes it and the checks it carries
beyond the two every stage has. The Dagster assets and their checks, the jobs, `llamapipe
stage`, `llamapipe status`, the data card's order and the demo's lists are all derived from
this table, so adding or rewiring a step happens here and nowhere else (docs/ARCHITECTURE.md).

No Dagster here: the table is plain data the CLI and the data card read too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from curation.commoncrawl.c4 import C4Filter
from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.exact_dedup import ExactDedup
from curation.commoncrawl.gopher import GopherQuality
from curation.commoncrawl.langid import LanguageId
from curation.commoncrawl.line_dedup import LineDedup
from curation.commoncrawl.perplexity import Perplexity
from curation.commoncrawl.wikiref import WikiRefFilter
from curation.core.stage import Stage
from curation.corpus.mixture import Mixture
from curation.decontamination.stage import Decontaminated
from curation.dedup.near_dedup import Deduplicated
from curation.sources.arxiv import ArxivClean
from curation.sources.books import BooksClean
from curation.sources.github import GitHubFilter
from curation.sources.stackexchange import StackExchangeClean
from curation.sources.wikipedia import WikipediaText

Partitioning = Literal["crawl", "language", "all"]
CRAWL: Partitioning = "crawl"  # one partition per crawl (CC-MAIN-YYYY-WW, "sample")
LANGUAGE: Partitioning = "language"  # one partition per Wikipedia language
ALL: Partitioning = "all"  # unpartitioned
PARTITION = "all"  # the directory name of an unpartitioned asset's one output

# Checks beyond `counts_conserve` and `output_schema`, named once.
BOILERPLATE_REMOVED = "planted_boilerplate_removed"
PERPLEXITY_ORDERED = "perplexity_buckets_ordered"
SPAM_REMOVED = "planted_spam_removed"
LOREM_REMOVED = "planted_lorem_removed"
WIKIREF_AUC = "heldout_auc_above_floor"
RULES_HOLD = "rules_hold_on_output"
DUPLICATES_VERIFIED = "removals_are_near_copies"
PLANTED_DUPLICATES = "planted_duplicates_collapsed"
SHARES_ON_PLAN = "shares_on_plan"
BENCHMARKS_INDEXED = "benchmarks_indexed"
PLANTED_BENCHMARKS = "planted_benchmarks_caught"
EVERY_STAGE_CONSERVES = "every_stage_conserves"
TOKENIZER_CHECKS = ("digits_split", "unicode_round_trips", "special_ids")
SHARD_CHECKS = ("counts_conserve", "shards_intact", "decodes_to_the_mixture")
LOSS_DECREASED = "loss_decreased"
BEATS_UNTRAINED = "beats_untrained_on_heldout"


@dataclass(frozen=True)
class Step:
    """One asset of the graph.

    `stage` is the shard map it runs (None for an asset with its own logic: a model, a plan,
    a launch). `upstream` lists every asset it depends on; a stage step reads the kept rows
    of the first (what `counts_conserve` compares its `in` with, and the data card's funnel
    link). `preset` gives stage fields this asset's own defaults. `eager` steps read every
    crawl and are brought up to date when an input changes (not the tokenizer: a new one
    changes every token id). A step with `job=None` is an option outside the paper's
    recipe: it is in the graph, no job runs it.
    """

    asset: str
    group: str
    partitions: Partitioning
    job: str | None
    upstream: tuple[str, ...] = ()
    stage: type[Stage] | None = None
    checks: tuple[str, ...] = ()
    preset: tuple[tuple[str, object], ...] = ()
    eager: bool = False

    @property
    def in_recipe(self) -> bool:
        return self.job is not None


STEPS: tuple[Step, ...] = (
    # The reference text and CCNet's perplexity models, per language.
    Step("wikipedia", "sources", ALL, "reference", stage=WikipediaText),
    Step("lm_tokenizer", "commoncrawl", LANGUAGE, "perplexity_models", ("wikipedia",)),
    Step("kenlm_model", "commoncrawl", LANGUAGE, "perplexity_models", ("lm_tokenizer",)),
    # The curated sources.
    Step("github", "sources", ALL, "sources", stage=GitHubFilter, checks=(RULES_HOLD,)),
    Step("books", "sources", ALL, "sources", stage=BooksClean, checks=(RULES_HOLD,)),
    Step("arxiv", "sources", ALL, "sources", stage=ArxivClean, checks=(RULES_HOLD,)),
    Step(
        "stackexchange", "sources", ALL, "sources", stage=StackExchangeClean, checks=(RULES_HOLD,)
    ),
    Step(
        "source_signatures",
        "dedup",
        ALL,
        "sources",
        ("wikipedia", "github", "books", "arxiv", "stackexchange"),
    ),
    # One crawl: CCNet, the Wikipedia-reference classifier, exact dedup; and the C4 branch.
    Step("crawl_segments", "commoncrawl", CRAWL, "crawl"),
    Step("cc_documents", "commoncrawl", CRAWL, "crawl", ("crawl_segments",), CCDocuments),
    Step(
        "cc_line_dedup",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_documents",),
        LineDedup,
        checks=(BOILERPLATE_REMOVED,),
    ),
    Step("cc_language", "commoncrawl", CRAWL, "crawl", ("cc_line_dedup",), LanguageId),
    # Rae et al. 2021's quality and repetition rules: not in the paper's recipe (no job).
    Step("cc_gopher", "commoncrawl", CRAWL, None, ("cc_language",), GopherQuality),
    Step("perplexity_cutoffs", "commoncrawl", CRAWL, "crawl", ("cc_language", "kenlm_model")),
    Step(
        "cc_perplexity",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_language", "perplexity_cutoffs"),
        Perplexity,
        checks=(PERPLEXITY_ORDERED, SPAM_REMOVED),
    ),
    Step(
        "wikiref_classifier",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_language", "wikipedia"),
        checks=(WIKIREF_AUC,),
    ),
    Step(
        "cc_wikiref",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_perplexity", "wikiref_classifier"),
        WikiRefFilter,
    ),
    Step(
        "commoncrawl",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_wikiref",),
        ExactDedup,
        checks=(SPAM_REMOVED,),
    ),
    # C4 starts again from the documents, with every confident language (C4 keeps its own).
    Step(
        "c4_language",
        "commoncrawl",
        CRAWL,
        "crawl",
        ("cc_documents",),
        LanguageId,
        preset=(("languages", ()),),
    ),
    Step("c4", "commoncrawl", CRAWL, "crawl", ("c4_language",), C4Filter, checks=(LOREM_REMOVED,)),
    Step("crawl_signatures", "dedup", CRAWL, "crawl", ("commoncrawl", "c4")),
    # Every crawl and source together.
    Step(
        "deduplicated",
        "dedup",
        ALL,
        "corpus",
        ("crawl_signatures", "source_signatures"),
        Deduplicated,
        checks=(DUPLICATES_VERIFIED, PLANTED_DUPLICATES),
        eager=True,
    ),
    Step(
        "decontaminated",
        "decontamination",
        ALL,
        "corpus",
        ("deduplicated",),
        Decontaminated,
        checks=(BENCHMARKS_INDEXED, PLANTED_BENCHMARKS),
        eager=True,
    ),
    Step(
        "mixture",
        "corpus",
        ALL,
        "corpus",
        ("decontaminated",),
        Mixture,
        checks=(SHARES_ON_PLAN,),
        eager=True,
    ),
    Step("tokenizer", "tokens", ALL, "corpus", ("mixture",), checks=TOKENIZER_CHECKS),
    Step(
        "tokenized_shards",
        "tokens",
        ALL,
        "corpus",
        ("mixture", "tokenizer"),
        checks=SHARD_CHECKS,
    ),
    Step(
        "data_card",
        "corpus",
        ALL,
        "corpus",
        ("mixture", "tokenized_shards"),
        checks=(EVERY_STAGE_CONSERVES,),
        eager=True,
    ),
    # The model.
    Step("pretrain", "training", ALL, "train", ("tokenized_shards",), checks=(LOSS_DECREASED,)),
    Step(
        "evaluation",
        "evaluation",
        ALL,
        "train",
        ("pretrain", "tokenized_shards", "mixture"),
        checks=(BEATS_UNTRAINED,),
    ),
    Step("hf_export", "evaluation", ALL, "train", ("pretrain",)),
)

BY_ASSET = {step.asset: step for step in STEPS}


def step(asset: str) -> Step:
    return BY_ASSET[asset]


def rows_from(of: Step) -> Step | None:
    """The stage step whose kept rows `of` reads: its first upstream, when that is a stage
    (not raw archives, signatures or a model)."""
    upstream = BY_ASSET[of.upstream[0]] if of.stage and of.upstream else None
    return upstream if upstream and upstream.stage else None


def stage_steps() -> list[Step]:
    """The steps that run a curation stage, in pipeline order."""
    return [s for s in STEPS if s.stage]


def job_assets(job: str) -> list[str]:
    return [s.asset for s in STEPS if s.job == job]
