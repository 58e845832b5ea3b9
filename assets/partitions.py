"""The partitions of the graph, by the recipe's partitioning names (curation/recipe.py)."""

from dagster import DynamicPartitionsDefinition, StaticPartitionsDefinition

from curation.recipe import CRAWL, LANGUAGE

# One partition per Common Crawl crawl id (CC-MAIN-YYYY-WW), plus "sample" for the
# embedded sample world. Added by `llamapipe crawls add` or the new-crawl sensor.
crawls = DynamicPartitionsDefinition(name="crawls")

# The paper's 20 Wikipedia languages; the perplexity models exist per language.
WIKI_LANGUAGES = "bg ca cs da de en es fr hr hu it nl pl pt ro ru sl sr sv uk".split()  # noqa: SIM905
wiki_languages = StaticPartitionsDefinition(WIKI_LANGUAGES)

PARTITIONS = {CRAWL: crawls, LANGUAGE: wiki_languages}
