"""``scale_world``: the entry point behind ``llamapipe sample scale``: the sample world N times.

The scale world has the sample's layout and formats, so every stage reads it unchanged (point a
data root's ``sample`` at it), with N copies of every crawl segment and source file. Copy 0 is
the sample's bytes; copy k > 0 has new names, ids and URLs (``scale_crawl``, ``scale_sources``,
``scale_dumps`` say what each source's copy changes) and is an exact copy of its original's
text, or, for a seeded fraction (``edit_fraction``), a near copy with one or two small edits
(``scale_edit``). So exact dedup and near dedup both have work, and the planted cases keep
their ground truth: planted boilerplate is never edited (it still repeats), a copy's edits use
only its own document's words (it cannot come to match another duplicate group), and every
ground-truth file of the sample is extended with the copies, under the copies' names.

``_scale_truth.jsonl`` holds one row per copied document (source, the stage's native id as
``item``, ``copy``, the ``original`` it copies, its duplicate ``group``: the sample's planted
group, extended with every copy of its members, and its ``edit``: original, exact or near).
``_scale.json`` is the stamp, written last: parameters, counts and every file's size; a stamp
with the same parameters and sample means there is nothing to do. The build streams: jobs of a
few copies of one file each, in worker processes, each holding one sample file at a time, and
the world is built in a temporary directory renamed into place, as ``build.py`` does. Every
random choice is seeded per copy, so the bytes do not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sample_world.atomic import build_into
from sample_world.build import STAMP as SAMPLE_STAMP
from sample_world.contamination import BENCHMARKS_DIR, TRUTH_FILE
from sample_world.scale_crawl import CrawlPlan, copy_segment, copy_url, planted_rows
from sample_world.scale_dumps import Citations, copy_site, copy_wiki, site_name
from sample_world.scale_edit import EDIT_FRACTION, Copies
from sample_world.scale_sources import (
    book_name,
    copy_book,
    copy_github,
    copy_paper,
    paper_name,
    renamed_rows,
)

log = logging.getLogger(__name__)

SCALE_VERSION = "1"
STAMP = "_scale.json"
TRUTH = "_scale_truth.jsonl"
MAX_FACTOR = 999  # arXiv numbers: copy k adds k * 100 to a five-digit number
COPIES_PER_JOB = 8
CRAWL = Path("crawls", "sample")

Job = tuple[Callable[..., list[dict]], tuple]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(sample: Path, factor: int, seed: int, fraction: float) -> dict:
    stamp = sample / SAMPLE_STAMP
    if not stamp.is_file():
        raise FileNotFoundError(f"no sample world at {sample} (run `llamapipe sample build`)")
    return {
        "scale_version": SCALE_VERSION,
        "factor": factor,
        "seed": seed,
        "edit_fraction": fraction,
        "sample_stamp_sha256": _sha256(stamp),
    }


def _stamp_matches(out: Path, params: dict) -> bool:
    """True when ``out`` holds a complete scale world built with ``params``."""
    try:
        stamp = json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if {k: stamp.get(k) for k in params} != params:
        return False
    files = stamp.get("files", {})
    return all(
        (out / rel).is_file() and (out / rel).stat().st_size == n for rel, n in files.items()
    )


def scale_world(
    sample: Path,
    out: Path,
    factor: int,
    seed: int = 0,
    fraction: float = EDIT_FRACTION,
    workers: int = 1,
    force: bool = False,
) -> Path:
    """Build the ``factor``-times world of ``sample`` into ``out`` (skipped if built); return it."""
    if not 1 <= factor <= MAX_FACTOR:
        raise ValueError(f"factor must be between 1 and {MAX_FACTOR}, not {factor}")
    sample, out = Path(sample), Path(out)
    params = _params(sample, factor, seed, fraction)
    if not force and _stamp_matches(out, params):
        log.info("scale world in %s is up to date (factor %d, seed %d)", out, factor, seed)
        return out
    started = time.monotonic()
    build_into(out, lambda tmp: _build(sample, tmp, params, workers))
    log.info("scale world (x%d) built in %s in %.1f s", factor, out, time.monotonic() - started)
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _chunks(factor: int) -> list[range]:
    return [range(k, min(k + COPIES_PER_JOB, factor)) for k in range(0, factor, COPIES_PER_JOB)]


def _crawl_jobs(
    sample: Path, root: Path, copies: Copies, factor: int, segments: int
) -> Iterator[Job]:
    src = sample / CRAWL
    planted = _jsonl(src / "planted.jsonl")
    plan = CrawlPlan(
        copies=copies,
        protected=frozenset(row["line"] for row in _jsonl(src / "boilerplate.jsonl")),
        groups={row["url"]: row["duplicate_of"] or row["url"] for row in planted},
        segments=segments,
    )
    wet = {name.removesuffix(".warc.wet.gz"): name for name in os.listdir(src / "wet")}
    for warc_name in sorted(os.listdir(src / "warc")):
        wet_name = wet[warc_name.removesuffix(".warc.gz")]
        for ks in _chunks(factor):
            yield copy_segment, (plan, src, root / CRAWL, warc_name, wet_name, ks)


def _source_jobs(sample: Path, root: Path, copies: Copies, factor: int) -> Iterator[Job]:
    cited = Citations(frozenset(r["url"] for r in _jsonl(sample / "wikipedia/cited_urls.jsonl")))
    shards = sorted(p.name for p in (sample / "github").glob("*.jsonl.gz"))
    clusters = {r["file"]: r["cluster"] or r["file"] for r in _jsonl(sample / "books/books.jsonl")}
    sites = sorted(p.name for p in (sample / "stackexchange").iterdir() if p.is_dir())
    for ks in _chunks(factor):
        for name in sorted(p.name for p in (sample / "wikipedia").glob("*.xml.bz2")):
            yield copy_wiki, (copies, sample / "wikipedia", root / "wikipedia", name, cited, ks)
        for shard in shards:
            yield copy_github, (copies, sample / "github", root / "github", shard, len(shards), ks)
        for path, group in sorted(clusters.items()):
            yield copy_book, (copies, sample / "books", root / "books", path, group, ks)
        for row in _jsonl(sample / "arxiv/arxiv.jsonl"):
            yield copy_paper, (copies, sample / "arxiv", root / "arxiv", row, ks)
        for site in sites:
            yield copy_site, (copies, sample / "stackexchange", root / "stackexchange", site, ks)


def _call(job: Job) -> list[dict]:
    function, args = job
    return function(*args)


def _run(jobs: list[Job], workers: int) -> Iterator[list[dict]]:
    """Each job's truth rows, in job order (so the truth file's order is fixed)."""
    if workers <= 1:
        yield from map(_call, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_call, jobs)


def _layout(sample: Path, root: Path) -> None:
    """The sample's directories (data files come from the jobs), licenses as they are."""
    for d in sorted(p for p in sample.rglob("*") if p.is_dir()):
        if d.parent.name != "stackexchange":  # site directories are made per copy
            (root / d.relative_to(sample)).mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample / "licenses", root / "licenses", dirs_exist_ok=True)


def _ground_truth_files(sample: Path, root: Path, factor: int, segments: int) -> None:
    """Every ground-truth file of the sample, with the copies' rows after the sample's."""
    ks = range(factor)

    def extend(rel: str, rows_of: Callable[[list[dict], int], Iterable[dict]]) -> None:
        rows = _jsonl(sample / rel)
        _write_jsonl(root / rel, (row for k in ks for row in rows_of(rows, k)))

    extend(f"{CRAWL}/planted.jsonl", lambda rows, k: planted_rows(rows, k, segments))
    # The evaluation sets do not scale, and the planted benchmark items' truth names copy 0,
    # which is the sample's bytes.
    shutil.copytree(sample / BENCHMARKS_DIR, root / BENCHMARKS_DIR, dirs_exist_ok=True)
    shutil.copyfile(sample / TRUTH_FILE, root / TRUTH_FILE)
    shutil.copyfile(sample / CRAWL / "boilerplate.jsonl", root / CRAWL / "boilerplate.jsonl")
    extend(
        "wikipedia/cited_urls.jsonl",
        lambda rows, k: ({**r, "url": copy_url(r["url"], k)} for r in rows),
    )
    extend("arxiv/arxiv.jsonl", lambda rows, k: renamed_rows(rows, "file", paper_name, k))
    extend("books/books.jsonl", lambda rows, k: renamed_rows(rows, "file", book_name, k))
    extend(
        "stackexchange/stackexchange.jsonl",
        lambda rows, k: renamed_rows(rows, "site", site_name, k),
    )


def _build(sample: Path, root: Path, params: dict, workers: int) -> None:
    factor = params["factor"]
    copies = Copies(params["seed"], params["edit_fraction"])
    segments = len(list((sample / CRAWL / "warc").iterdir()))
    _layout(sample, root)
    jobs = [
        *_crawl_jobs(sample, root, copies, factor, segments),
        *_source_jobs(sample, root, copies, factor),
    ]
    edits: Counter[tuple[str, str]] = Counter()
    groups: dict[str, set[str]] = defaultdict(set)
    with (root / TRUTH).open("w", encoding="utf-8") as f:
        for rows in _run(jobs, workers):
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                edits[row["source"], row["edit"]] += 1
                groups[row["source"]].add(row["group"])
    _ground_truth_files(sample, root, factor, segments)
    counts = {
        source: {
            "documents": sum(n for (s, _), n in edits.items() if s == source),
            "groups": len(groups[source]),
            "edits": {e: n for (s, e), n in sorted(edits.items()) if s == source},
        }
        for source in sorted(groups)
    }
    (root / "README.md").write_text(_readme(params, counts, segments), encoding="utf-8")
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    stamp = {
        **params,
        "segments_per_copy": segments,
        "counts": counts,
        "truth": TRUTH,
        "files": files,
    }
    (root / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _readme(params: dict, counts: dict, segments: int) -> str:
    table = "\n".join(
        f"| {source} | {c['documents']} | {c['groups']} | "
        + ", ".join(f"{e} {n}" for e, n in c["edits"].items())
        + " |"
        for source, c in counts.items()
    )
    return f"""# A scale world: the sample world x{params["factor"]}

Built by `llamapipe sample scale --factor {params["factor"]} --seed {params["seed"]}`
(scale version {params["scale_version"]}, edit fraction {params["edit_fraction"]}) from the
sample world whose `_sample.json` has SHA-256
`{params["sample_stamp_sha256"]}`;
that world's README says what the sample is made of.

The layout and the formats are the sample's. Copy 0 of every crawl segment and source file is
the sample's file; every other copy has new names, ids and URLs (marked `copy-000k`) and is an
exact copy of its original's text or, for a seeded fraction, a near copy with one or two small
edits (a word replaced, a sentence dropped). Planted boilerplate is never edited. Every
ground-truth file of the sample lists the copies too. `{TRUTH}` has one row per document:
`source`, `item` (the id the stage hashes), `copy`, `original`, `group` (its duplicate group:
the sample's, extended with the copies) and `edit` (original, exact or near); `{STAMP}` has
the counts and the size of every file.

Copy k of crawl segment i is segment k x {segments} + i. CCNet's line dedup removes every line
found in two documents of a group of shards, so an exact copy in the same group as its original
loses every line: run `cc_line_dedup` with `group_size: {segments}` to make each group one copy
of the sample (line dedup then does what it does on the sample, and the copies are left to
exact and near dedup).

| source | documents | duplicate groups | edits |
|---|---|---|---|
{table}
"""
