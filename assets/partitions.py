"""Partitions shared by the asset families."""

from dagster import DynamicPartitionsDefinition

# One partition per Common Crawl crawl id (CC-MAIN-YYYY-WW), plus "sample" for the
# embedded sample world. Added by `llamapipe crawls add` or the new-crawl sensor.
crawls = DynamicPartitionsDefinition(name="crawls")
