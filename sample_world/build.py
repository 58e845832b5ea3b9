"""``build_sample_world``: the entry point behind ``llamapipe sample build``.

Fetch the packages (cached), build the world into a temporary directory next to ``out_dir``,
write the stamp, then rename into place: an interrupted build leaves the previous world or none,
never half of one. A stamp with the same builder version, seed and size means there is nothing
to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

from sample_world import readme
from sample_world.arxiv import build_arxiv
from sample_world.atomic import build_into
from sample_world.books import build_books
from sample_world.contamination import (
    fixtures_fingerprint,
    plant_article,
    plant_pages,
    write_benchmarks,
)
from sample_world.crawl import plan_captures, write_crawl, write_jsonl
from sample_world.debian import REFERENCE_LANGS, fetch_all
from sample_world.github import build_github
from sample_world.planted import Capture
from sample_world.sites import SITES, boilerplate_lines
from sample_world.sources import collect
from sample_world.stackexchange import build_stackexchange
from sample_world.wiki import CitedPage, choose_cited, write_wiki

log = logging.getLogger(__name__)

BUILDER_VERSION = "7"

# The curated sources, each in its native dump format, built from real text.
SOURCES = {
    "arxiv": build_arxiv,
    "github": build_github,
    "books": build_books,
    "stackexchange": build_stackexchange,
}
STAMP = "_sample.json"
_TITLE = re.compile(rb"<title>(.*?)</title>", re.DOTALL)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp_matches(out_dir: Path, seed: int, max_pages: int | None) -> bool:
    """True when ``out_dir`` holds a complete world of this builder version, seed and size."""
    try:
        stamp = json.loads((out_dir / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if (stamp.get("builder_version"), stamp.get("seed"), stamp.get("max_pages")) != (
        BUILDER_VERSION,
        seed,
        max_pages,
    ):
        return False
    if stamp.get("benchmarks") != fixtures_fingerprint():
        return False
    return all((out_dir / rel).is_file() for rel in stamp.get("files", {}))


def build_sample_world(
    out_dir: Path,
    cache_dir: Path,
    seed: int = 0,
    force: bool = False,
    max_pages: int | None = None,
) -> Path:
    """Build the sample world into ``out_dir`` (skipped if already built) and return it.

    ``cache_dir`` keeps the downloaded and unpacked .deb files between builds. ``max_pages``
    caps the number of source documents (small worlds for tests); None builds the full world.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir)
    if not force and _stamp_matches(out_dir, seed, max_pages):
        log.info("sample world in %s is up to date (seed %d)", out_dir, seed)
        return out_dir
    started = time.monotonic()
    packages = fetch_all(cache_dir)
    build_into(out_dir, lambda tmp: _build(tmp, packages, cache_dir, seed, max_pages))
    log.info("sample world built in %s in %.1f s", out_dir, time.monotonic() - started)
    return out_dir


def _boilerplate(captures: list[Capture]) -> Iterator[dict]:
    """Ground truth for line dedup: the template lines of every (site, language) crawled."""
    pairs = {
        (urlsplit(c.url).netloc, c.language) for c in captures if c.kind == "page" and c.language
    }
    for host, lang in sorted(pairs):
        if host in SITES:
            for line in boilerplate_lines(SITES[host], lang):
                yield {"host": host, "lang": lang, "line": line}


def _build(root: Path, packages: dict, cache_dir: Path, seed: int, max_pages: int | None) -> None:
    corpus = collect(packages, random.Random(f"{seed}:sources"), max_pages)
    captures, truncated = plan_captures(
        corpus.crawl, corpus.images, random.Random(f"{seed}:plan"), max_pages
    )
    contamination = plant_pages(captures)
    crawl_dir = root / "crawls" / "sample"
    rows = write_crawl(captures, truncated, crawl_dir, seed, random.Random(f"{seed}:crawl"))
    write_jsonl(crawl_dir / "boilerplate.jsonl", _boilerplate(captures))

    # Wikipedia cites about 30% of each wiki language's real pages.
    wiki_rng = random.Random(f"{seed}:wiki")
    pages: dict[str, list[CitedPage]] = {lang: [] for lang in REFERENCE_LANGS}
    for cap in captures:
        if cap.kind == "page" and cap.language in pages:
            m = _TITLE.search(cap.body)
            title = unescape(m.group(1).decode("utf-8")).strip() if m else cap.url
            pages[cap.language].append(CitedPage(cap.language, cap.url, title, cap.source))
    cited = {
        lang: choose_cited(sorted(ps, key=lambda p: p.url), wiki_rng) for lang, ps in pages.items()
    }
    licenses = {lang: packages[f"debian-reference-{lang}"].license() for lang in REFERENCE_LANGS}
    wiki_dir = root / "wikipedia"
    wiki_counts = write_wiki(
        wiki_dir,
        corpus.wiki,
        cited,
        licenses,
        wiki_rng,
        lambda lang, pages: contamination.extend(plant_article(lang, pages)),
    )
    write_jsonl(
        wiki_dir / "cited_urls.jsonl",
        ({"lang": c.lang, "url": c.url, "title": c.title} for ps in cited.values() for c in ps),
    )

    lic_dir = root / "licenses"
    lic_dir.mkdir()
    for name in sorted(packages):
        shutil.copyfile(packages[name].copyright, lic_dir / f"{name}.copyright")

    sources = {name: build(root / name, cache_dir, seed) for name, build in SOURCES.items()}
    write_benchmarks(root, [*contamination, *sources["stackexchange"]["benchmark_plants"]])
    (root / "README.md").write_text(
        readme.render(
            seed,
            BUILDER_VERSION,
            packages,
            rows,
            wiki_counts,
            {lang: len(ps) for lang, ps in cited.items()},
            corpus.rejected,
        )
        + readme.sources_section(sources),
        encoding="utf-8",
    )
    files = {
        p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()
    }
    stamp = {
        "builder_version": BUILDER_VERSION,
        "seed": seed,
        "max_pages": max_pages,
        "benchmarks": fixtures_fingerprint(),
        "packages": {name: packages[name].version for name in sorted(packages)},
        "sources": sources,
        "counts": {
            "captures": len(rows),
            "kinds": dict(sorted(Counter(r["kind"] for r in rows).items())),
            "page_languages": dict(
                sorted(Counter(r["language"] for r in rows if r["kind"] == "page").items())
            ),
        },
        "files": files,
    }
    (root / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
