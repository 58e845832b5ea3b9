"""The embedded sample world: a small, real-text, deterministic stand-in for the LLaMA sources.

``build.build_sample_world`` fetches Debian documentation packages (the only network access:
Debian's archive through ``apt-get download``) and builds Common Crawl style WARC/WET files with
planted cases and a MediaWiki export per language. No Dagster here: assets and the CLI call it.
"""
