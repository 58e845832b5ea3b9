"""Jobs: named selections of the asset graph that people and CI run."""

from dagster import AssetSelection, define_asset_job

# Everything per crawl that exists so far: ingest and language id.
commoncrawl_job = define_asset_job(
    "commoncrawl",
    selection=AssetSelection.groups("commoncrawl"),
    description="Ingest one crawl partition: archives -> documents -> language id.",
)
