"""Every asset and asset check of the graph: the recipe's stage steps made by the factory
with their hooks, and the assets written by hand (models, plans, launches)."""

from dagster import load_assets_from_modules

from assets import (
    commoncrawl,
    corpus,
    crawl_segments,
    decontamination,
    dedup,
    evaluation,
    perplexity_models,
    sources,
    tokens,
    training,
)
from assets.checks import stage_checks
from assets.stage_assets import stage_asset
from curation.recipe import stage_steps

HOOKS = {
    **commoncrawl.HOOKS,
    **sources.HOOKS,
    **dedup.HOOKS,
    **decontamination.HOOKS,
    **corpus.HOOKS,
}
WRITTEN = [
    commoncrawl,
    crawl_segments,
    perplexity_models,
    dedup,
    corpus,
    tokens,
    training,
    evaluation,
]

STAGE_ASSETS = {s.asset: stage_asset(s.asset, HOOKS.get(s.asset)) for s in stage_steps()}
ASSETS = [*STAGE_ASSETS.values(), *load_assets_from_modules(WRITTEN)]
CHECKS = [check for s in stage_steps() for check in stage_checks(s.asset)]
