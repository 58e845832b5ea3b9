"""`decontaminated`: benchmark overlaps removed between `deduplicated` and `mixture`
(`curation/decontamination/`).

The stage asset comes from the recipe's table; this module computes the evaluation sets'
fingerprint (so new or changed sets re-run the stage), writes lm-eval's overlap report beside
the partition (`<partition>.overlaps/`, `curation/decontamination/report.py`), and reports:
what was indexed, what was found per benchmark and corpus, and loudly, when no evaluation set
was found, that nothing was checked.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from assets.checks import read_all_rows
from assets.dedup import corpus_groups
from assets.partitions import crawls
from assets.resources import SAMPLE_CRAWL, DataRoot
from assets.stage_assets import StageHooks, StageRun
from curation.core.storage import Storage
from curation.decontamination.benchmarks import sets_fingerprint
from curation.decontamination.report import report_dir, write_report
from curation.decontamination.stage import OVERLAP_COLUMN, contaminated_items
from curation.recipe import BENCHMARKS_INDEXED, PLANTED_BENCHMARKS

# Ground truth of the sample world: the benchmark items planted in its sources.
CONTAMINATION_FILE = "contamination.jsonl"


def _fingerprint(context, config, data_root: DataRoot) -> dict[str, str]:
    storage = data_root.storage()
    return {"benchmarks_fingerprint": sets_fingerprint(storage, storage.path(config.benchmarks))}


def sets_table(summary: dict) -> str:
    """Each evaluation set: items, those too short to check, those found in the corpus."""
    rows = ["| set | items | too short | found in corpus |", "|---|---:|---:|---:|"]
    for s in summary.get("sets", []):
        found = len(s["contaminated"])
        rows.append(f"| {s['set']} | {s['items']} | {s['items_without_ngram']} | {found} |")
    return "\n".join(rows) if len(rows) > 2 else "no evaluation sets"


def _report(context, run: StageRun, config, data_root: DataRoot):
    storage, summary = data_root.storage(), run.manifest.summary
    if summary.get("warning"):
        context.log.warning(f"decontaminated: {summary['warning']}")
    directory = report_dir(run.output)
    write_report(storage, directory, contaminated_items(summary), run.stage.ngram_size)
    return run.result(
        metadata={
            "benchmarks": config.benchmarks,
            "warning": summary.get("warning") or "none",
            "evaluation_sets": len(summary.get("sets", [])),
            "indexed_ngrams": summary.get("indexed_ngrams", 0),
            "contaminated_items": summary.get("contaminated_items", 0),
            "sets": MetadataValue.md(sets_table(summary)),
            "left_out_splits": ", ".join(summary.get("left_out", [])) or "none",
            "overlap_report": MetadataValue.path(directory),
        },
        checks=[
            benchmarks_indexed(summary),
            planted_benchmarks(sample_truth(context, data_root), storage, run.output, summary),
        ],
    )


def benchmarks_indexed(summary: dict) -> AssetCheckResult:
    """A warning, not an error, when no evaluation set was indexed: a corpus may be built
    before its benchmarks are chosen, but it must not look checked when it was not."""
    return AssetCheckResult(
        check_name=BENCHMARKS_INDEXED,
        passed=summary.get("indexed_ngrams", 0) > 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "evaluation_sets": len(summary.get("sets", [])),
            "indexed_ngrams": summary.get("indexed_ngrams", 0),
            "warning": summary.get("warning") or "none",
        },
    )


def sample_truth(context, data_root: DataRoot) -> list[dict] | None:
    """The sample world's planted benchmark items, when the sample crawl is in the corpus
    (its curated sources then are the sample's too); None otherwise."""
    groups, _ = corpus_groups(data_root, context.instance.get_dynamic_partitions(crawls.name))
    path = posixpath.join(data_root.sample_dir(), CONTAMINATION_FILE)
    storage = data_root.storage()
    if not any(g.crawl == SAMPLE_CRAWL for g in groups) or not storage.exists(path):
        return None
    return [json.loads(line) for line in storage.read_bytes(path).decode().splitlines()]


def planted_benchmarks(
    truth: list[dict] | None, storage: Storage, output: str, summary: dict
) -> AssetCheckResult:
    """Every benchmark item planted in the sample's sources is caught in every document that
    carries it (which must have reached this stage), and listed in the report; the page that
    only shares short phrases with an item is not caught. Without the sample: nothing to
    judge."""
    if truth is None:
        return AssetCheckResult(
            check_name=PLANTED_BENCHMARKS, passed=True, metadata={"ground_truth": "none"}
        )
    table = read_all_rows(storage, output, ["url", OVERLAP_COLUMN])
    caught: dict[str, list[list[str]]] = {}
    urls, items = table.column("url").to_pylist(), table.column(OVERLAP_COLUMN).to_pylist()
    for url, held in zip(urls, items, strict=True):
        caught.setdefault(url, []).append(held)
    reported = {
        f"{name}/{line}" for name, ids in contaminated_items(summary).items() for line in ids
    }
    problems = [problem for plant in truth if (problem := _judge(plant, caught, reported))]
    kinds = Counter(plant["kind"] for plant in truth)
    return AssetCheckResult(
        check_name=PLANTED_BENCHMARKS,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "planted": kinds["contaminated"],
            "near_misses": kinds["near_miss"],
            "problems": "; ".join(problems) or "none",
        },
    )


def _judge(plant: dict, caught: dict[str, list[list[str]]], reported: set[str]) -> str:
    """What is wrong with one planted case ("" when nothing)."""
    documents = caught.get(plant["url"])
    where = f"{plant['corpus']} {plant['url']}"
    if not documents:
        return f"{where}: did not reach the stage"
    if plant["kind"] == "near_miss":
        wrongly = sorted({item for items in documents for item in items})
        return f"{where}: near miss caught as {', '.join(wrongly)}" if wrongly else ""
    if any(plant["item"] not in items for items in documents):
        return f"{where}: {plant['item']} not caught"
    return "" if plant["item"] in reported else f"{plant['item']}: not in the overlap report"


HOOKS = {
    "decontaminated": StageHooks(
        computed=("benchmarks_fingerprint",), compute=_fingerprint, report=_report
    )
}
