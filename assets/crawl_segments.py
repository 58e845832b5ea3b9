"""Where a crawl partition's archives come from: Common Crawl's segment list, fetched over HTTP.

`crawl_segments[crawl]` is the first asset of the `commoncrawl` group, so the `crawl` job
(what the new-crawl sensor requests) downloads a new crawl before `cc_documents` reads it.
The sample crawl ships with the sample world: for it the asset fetches nothing. Thin: the
index, the paths file and the downloads are `curation.commoncrawl.crawl_index`.
"""

import posixpath
from typing import Literal

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.resources import SAMPLE_CRAWL, CrawlSource, DataRoot
from assets.stage_assets import asset_args
from curation.commoncrawl.crawl_index import (
    SEGMENT_SUFFIXES,
    fetch_segments,
    paths_url,
    read_segment_paths,
)
from curation.recipe import step


class CrawlSegmentsConfig(Config):
    """The sensor's runs set both from the `crawl_source` resource; `input_format` must match
    `cc_documents`'s."""

    input_format: Literal["wet", "warc"] = "wet"
    max_segments: int | None = None  # None: the crawl_source resource's; 0: every segment
    fetch: bool = True  # False: use the archives already under raw/crawls/<crawl>/


@asset(**asset_args(step("crawl_segments")), kinds={"http"})
def crawl_segments(
    context: AssetExecutionContext,
    config: CrawlSegmentsConfig,
    data_root: DataRoot,
    crawl_source: CrawlSource,
) -> MaterializeResult:
    """The crawl's archives under `raw/crawls/<crawl>/<format>/`: the first `max_segments`
    segments of its `wet.paths.gz` (or `warc.paths.gz`), downloaded atomically; segments
    already there with the server's size are kept. Nothing to fetch for the sample crawl."""
    crawl = context.partition_key
    input_format = config.input_format
    storage = data_root.storage()
    target = data_root.crawl_archives(crawl, input_format)
    if crawl == SAMPLE_CRAWL or not config.fetch:
        present = storage.list_files(target, SEGMENT_SUFFIXES[input_format])
        context.log.info(f"{crawl}: {len(present)} archives already in {target}; nothing fetched")
        return MaterializeResult(
            metadata={"segments": len(present), "fetched": 0, "path": MetadataValue.path(target)}
        )
    cap = crawl_source.max_segments if config.max_segments is None else config.max_segments
    timeout = crawl_source.timeout_s
    paths, listed = read_segment_paths(crawl_source.base_url, crawl, input_format, cap, timeout)
    context.log.info(f"{crawl}: {listed} segments listed, fetching {len(paths)} into {target}")
    report = fetch_segments(
        storage, target, crawl_source.base_url, paths, timeout, crawl_source.parallel_downloads
    )
    # Left by an earlier, larger cap: cc_documents reads every archive in the directory.
    wanted = {posixpath.basename(p) for p in paths}
    present = storage.list_files(target, SEGMENT_SUFFIXES[input_format])
    extra = [p for p in present if posixpath.basename(p) not in wanted]
    if extra:
        context.log.warning(f"{crawl}: {len(extra)} archives in {target} are not in the list")
    return MaterializeResult(
        metadata={
            "segments": len(paths),
            "segments_listed": listed,
            "fetched": len(report.downloaded),
            "already_present": len(report.skipped),
            "bytes_fetched": report.bytes_downloaded,
            "not_in_list": len(extra),
            "paths_url": MetadataValue.url(paths_url(crawl_source.base_url, crawl, input_format)),
            "path": MetadataValue.path(target),
        }
    )
