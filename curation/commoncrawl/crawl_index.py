"""Finding and fetching Common Crawl crawls: the crawl index, segment lists, segment downloads.

Common Crawl publishes its crawls in `collinfo.json` (a JSON list of `{"id": "CC-MAIN-2024-10",
"name": ..., ...}`) and, per crawl, `crawl-data/<id>/wet.paths.gz` / `warc.paths.gz` (gzip text,
one segment path per line, relative to the archive server). Nothing here imports Dagster: the
new-crawl sensor, the `crawl_segments` asset and anyone with a script call the same functions.

Ids become Dagster partition keys and directory names (`stages/<asset>/<crawl>/`), so an index
entry whose id could escape a directory or break a partition key is rejected, loudly, rather than
skipped: a malformed index is something a person should see.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import posixpath
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from curation.core.storage import Storage

DEFAULT_INDEX_URL = "https://index.commoncrawl.org/collinfo.json"
DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
FORMATS = ("wet", "warc")
SEGMENT_SUFFIXES = {"wet": ".warc.wet.gz", "warc": ".warc.gz"}
USER_AGENT = "llama-pipeline (crawl ingest; https://commoncrawl.org/terms-of-use)"
_CHUNK = 1 << 20
# Letters, digits, dot, underscore, hyphen; starts with a letter or digit: a path component
# and a Dagster partition key, whatever the id (CC-MAIN-2024-10, sample, CC-NEWS-2024-01).
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class CrawlIndexError(ValueError):
    """A crawl index, a paths file or a segment path that cannot be used as given."""


@dataclass(frozen=True)
class Crawl:
    """One entry of the crawl index; `extra` keeps the other fields (`cdx-api`, `from`, ...)."""

    id: str
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)


def validate_crawl_id(crawl_id: object) -> str:
    """The id itself, when it is safe as a partition key and a directory name."""
    if not isinstance(crawl_id, str) or not _SAFE_ID.fullmatch(crawl_id) or ".." in crawl_id:
        raise CrawlIndexError(
            f"unsafe crawl id {crawl_id!r}: a crawl id must be 1-100 letters, digits, '.', '_' "
            "or '-', start with a letter or digit and contain no '..'"
        )
    return crawl_id


def parse_crawl_index(data: bytes | str) -> list[Crawl]:
    """The crawls of a `collinfo.json`-format index, in its order; every id validated."""
    try:
        entries = json.loads(data)
    except json.JSONDecodeError as error:
        raise CrawlIndexError(f"crawl index is not JSON: {error}") from None
    if not isinstance(entries, list):
        raise CrawlIndexError("crawl index must be a JSON list of {'id': ..., 'name': ...}")
    crawls, seen = [], set()
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise CrawlIndexError(f"crawl index entry {number} has no 'id': {entry!r:.200}")
        crawl_id = validate_crawl_id(entry["id"])
        if crawl_id in seen:
            raise CrawlIndexError(f"crawl index lists {crawl_id} twice")
        seen.add(crawl_id)
        extra = {k: v for k, v in entry.items() if k not in ("id", "name")}
        crawls.append(Crawl(crawl_id, str(entry.get("name", "")), extra))
    return crawls


def read_location(location: str, timeout: float) -> bytes:
    """The bytes at an http(s)/file URL or a local path."""
    if "://" not in location:
        with open(location, "rb") as f:
            return f.read()
    with urllib.request.urlopen(_request(location), timeout=timeout) as response:
        return response.read()


def read_crawl_index(location: str = DEFAULT_INDEX_URL, timeout: float = 60.0) -> list[Crawl]:
    """The crawl index at a URL or a path (`LLAMAPIPE_CRAWL_INDEX` in a deployment)."""
    return parse_crawl_index(read_location(location, timeout))


def select_new_crawls(
    index_ids: Iterable[str],
    known: Collection[str],
    since: str = "",
    max_new: int = 2,
) -> list[str]:
    """Which crawls of the index to ingest now, oldest first.

    Pointing a deployment at Common Crawl's index must not request its hundred historical
    crawls. Eligible are crawls not `known` (partitions, crawls requested before) and newer
    (by id; CC-MAIN-YYYY-WW sorts by date) than `since`, or, without `since`, than the newest
    known crawl the index lists; with none and no `since`, only the newest crawl of the index.
    At most `max_new` per call (0: no cap), oldest first, so the rest come on later calls in
    order.
    """
    index_ids = set(index_ids)
    ids = sorted(index_ids - set(known))
    floor = since or max(index_ids & set(known), default="")
    ids = [i for i in ids if i > floor] if floor else ids[-1:]
    return ids[:max_new] if max_new > 0 else ids


def paths_url(base_url: str, crawl_id: str, input_format: str) -> str:
    """`<base>/crawl-data/<crawl>/<format>.paths.gz`, Common Crawl's segment list."""
    if input_format not in FORMATS:
        raise CrawlIndexError(f"unknown input format {input_format!r}: one of {FORMATS}")
    return _join(base_url, f"crawl-data/{validate_crawl_id(crawl_id)}/{input_format}.paths.gz")


def parse_segment_paths(data: bytes, input_format: str) -> list[str]:
    """The relative segment paths of a gzip paths file, each checked to stay under the base
    URL and to name an archive of the format."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise CrawlIndexError(f"paths file is not gzip'd UTF-8 text: {error}") from None
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    for path in paths:
        parts = path.split("/")
        if (
            path.startswith("/")
            or "://" in path
            or "\\" in path
            or any(p in ("", ".", "..") for p in parts)
            or not path.endswith(SEGMENT_SUFFIXES[input_format])
        ):
            raise CrawlIndexError(
                f"unusable segment path {path!r}: expected a relative path to a "
                f"{SEGMENT_SUFFIXES[input_format]} file"
            )
    names = [posixpath.basename(p) for p in paths]
    if len(set(names)) != len(names):
        raise CrawlIndexError("paths file lists two segments with the same file name")
    return paths


def read_segment_paths(
    base_url: str,
    crawl_id: str,
    input_format: str = "wet",
    max_segments: int = 0,
    timeout: float = 60.0,
) -> tuple[list[str], int]:
    """The first `max_segments` (0: all) segment paths of a crawl, and how many it lists."""
    paths = parse_segment_paths(
        read_location(paths_url(base_url, crawl_id, input_format), timeout), input_format
    )
    return (paths[:max_segments] if max_segments > 0 else paths), len(paths)


@dataclass
class FetchReport:
    """What a fetch did, per segment file name."""

    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0


def fetch_segments(
    storage: Storage,
    target: str,
    base_url: str,
    paths: Sequence[str],
    timeout: float = 60.0,
    parallel: int = 4,
    attempts: int = 3,
) -> FetchReport:
    """Download segments into `target` (flat, by file name), `parallel` at a time.

    A file already there with the size the server announces is skipped, so a failed or
    extended fetch resumes. Each download goes to `<name>.<pid>.tmp` and is renamed into
    place only when complete: readers (`cc_documents` lists `*.warc.wet.gz`) never see half
    a segment. Each segment is tried up to `attempts` times on network and server errors,
    with a growing pause; a 404 or 403 fails at once.
    """
    storage.makedirs(target)

    def one(path: str) -> tuple[str, int | None]:
        """(file name, bytes downloaded or None when already present)."""
        url = _join(base_url, path)
        name = posixpath.basename(path)
        final = posixpath.join(target, name)

        def attempt() -> int | None:
            size = _remote_size(url, timeout)
            if size is not None and storage.exists(final) and storage.size(final) == size:
                return None
            return _download(storage, url, final, timeout)

        for number in range(1, attempts):
            try:
                return name, attempt()
            except _NETWORK_ERRORS as error:
                if not _transient(error):
                    raise
                time.sleep(2**number)
        return name, attempt()

    report = FetchReport()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for name, written in pool.map(one, paths):  # re-raises the first failure
            if written is None:
                report.skipped.append(name)
            else:
                report.downloaded.append(name)
                report.bytes_downloaded += written
    return report


class IncompleteDownload(OSError):
    """The connection ended before the announced number of bytes arrived."""


_NETWORK_ERRORS = (
    urllib.error.URLError,  # HTTPError included: _transient decides
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,  # IncompleteRead, RemoteDisconnected, ...
    IncompleteDownload,
)


def _download(storage: Storage, url: str, final: str, timeout: float) -> int:
    tmp = f"{final}.{os.getpid()}.tmp"
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            written = 0
            with storage.fs.open_output_stream(tmp, compression=None) as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
        if expected is not None and written != int(expected):
            raise IncompleteDownload(f"{url}: {written} of {expected} bytes")
        storage.fs.move(tmp, final)
        return written
    finally:
        if storage.exists(tmp):
            storage.fs.delete_file(tmp)


def _remote_size(url: str, timeout: float) -> int | None:
    """Content-Length of a HEAD request; None when the server does not say or allow HEAD."""
    try:
        with urllib.request.urlopen(_request(url, method="HEAD"), timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as error:
        if error.code in (405, 501):
            return None
        raise
    return int(length) if length is not None else None


def _transient(error: Exception) -> bool:
    """Worth retrying: network trouble and server-side errors, not a 404 or a 403."""
    return not isinstance(error, urllib.error.HTTPError) or error.code >= 500 or error.code == 429


def _request(url: str, method: str = "GET") -> urllib.request.Request:
    return urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})


def _join(base_url: str, path: str) -> str:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return urllib.parse.urljoin(base, path)
