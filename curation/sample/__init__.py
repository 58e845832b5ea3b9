"""The embedded sample world: a small, real-text, deterministic stand-in for the LLaMA sources.

``build_sample_world`` fetches Debian documentation packages (the only network access: Debian's
archive through ``apt-get download``) and builds Common Crawl style WARC/WET files with planted
cases and a MediaWiki export per language. No Dagster here: assets and the CLI both call it.
"""

from curation.sample.build import BUILDER_VERSION, build_sample_world

__all__ = ["BUILDER_VERSION", "build_sample_world"]
