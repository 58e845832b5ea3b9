"""Core-hours to run the recipe's crawl branches on real Common Crawl data, projected from the
per-core rates bench/throughput.py measured on this machine.

    core-hours(stage) = (the crawl's input to the stage) / (our measured rate per core) / 3600

The crawl's input to a stage is its published compressed WET bytes times the stage's flow,
the quantity (text bytes, or documents) that reached the stage per compressed WET byte on the
sample world (throughput.py measures it); WARC extraction takes the published WARC bytes
directly. Branches: CCNet (WET reading, line dedup with CCNet's
normalization, language id, perplexity, Wikipedia-reference filter, exact dedup; CCNet's
normalization runs inside line dedup and perplexity), C4 (language id, C4 rules and span
dedup), signatures (MinHash of commoncrawl + c4), dedup (the global near-dedup), tokenization
(commoncrawl + c4, before near dedup: an upper bound). The perplexity cutoffs' sample scoring
and the models' training are one-off and left out.

The crawl figures below are PUBLISHED numbers from Common Crawl's release announcements, not
measured here. The LLaMA paper says only "five CommonCrawl dumps, ranging from 2017 to 2020";
it does not name them, so the five-dump projection is five times the mean of the three crawls
of that period whose announcements publish their file tables (2018-34, 2018-39, 2019-09).

What the projection does not know: real pages are larger than the sample's (a real WARC
response is ~20 KB compressed, the sample's ~4.5 KB), so WARC extraction is projected two
ways (by bytes and by pages); and the sample's language mix, quality and duplicate rates
set every flow after cc_documents.

    python bench/cost.py [--throughput bench/results/throughput_scale.json]
        [--out bench/results/cost_projection]      # writes .txt and .json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from report import write_json

from curation.corpus.data_card import Card, cost_section

TIB = 1 << 40
BRANCH_ORDER = ("CCNet", "C4", "signatures", "dedup", "tokenization")
WARC_EXTRACTION = "cc_documents (WARC extraction)"
# The recipe's order (curation/recipe.py), for the table.
STAGE_ORDER = (
    "cc_documents (WET)",
    "cc_line_dedup",
    "cc_language",
    "cc_perplexity",
    "cc_wikiref",
    "commoncrawl",
    "c4_language",
    "c4",
    "dedup_signatures",
    "deduplicated",
    "tokenized_shards",
    WARC_EXTRACTION,
)


@dataclass(frozen=True)
class Crawl:
    """A Common Crawl release as its announcement publishes it (not measured here)."""

    name: str
    pages: float
    files: int  # WARC files = WET files (one WET per WARC)
    warc_tib: float  # compressed
    wet_tib: float  # compressed
    source: str

    @property
    def wet_bytes(self) -> float:
        return self.wet_tib * TIB

    @property
    def warc_bytes(self) -> float:
        return self.warc_tib * TIB


# Published figures (announcement tables: pages, #files, total compressed TiB).
CC_MAIN_2018_34 = Crawl(
    "CC-MAIN-2018-34",
    2.65e9,
    71_520,
    67.79,
    6.92,
    "https://commoncrawl.org/2018/08/august-2018-crawl-archive-now-available/",
)
CC_MAIN_2018_39 = Crawl(
    "CC-MAIN-2018-39",
    2.8e9,
    56_320,
    47.90,
    7.87,
    "https://commoncrawl.org/blog/september-2018-crawl-archive-now-available",
)
CC_MAIN_2019_09 = Crawl(
    "CC-MAIN-2019-09",
    2.9e9,
    64_000,
    59.86,
    7.62,
    "https://commoncrawl.org/2019/03/february-2019-crawl-archive-now-available/",
)
PUBLISHED = (CC_MAIN_2018_34, CC_MAIN_2018_39, CC_MAIN_2019_09)
ONE_CRAWL = CC_MAIN_2019_09
PAPER_DUMPS = 5  # LLaMA (Touvron et al. 2023), section 2: five CommonCrawl dumps, 2017-2020


def paper_dumps(crawls: tuple[Crawl, ...] = PUBLISHED, n: int = PAPER_DUMPS) -> Crawl:
    """`n` dumps of the mean published size (the paper does not name its five)."""

    def mean(field: str) -> float:
        return sum(getattr(c, field) for c in crawls) / len(crawls)

    names = ", ".join(c.name for c in crawls)
    return Crawl(
        f"{n} dumps (mean of {names})",
        n * mean("pages"),
        round(n * mean("files")),
        n * mean("warc_tib"),
        n * mean("wet_tib"),
        "; ".join(c.source for c in crawls),
    )


@dataclass(frozen=True)
class StageCost:
    stage: str
    branch: str
    unit: str
    per_core_s: float  # ours, units per second per core
    crawl_quantity: float  # units the crawl feeds the stage
    core_hours: float
    datatrove_core_hours: float | None


def crawl_quantity(stage: dict, flows: dict, crawl: Crawl) -> float:
    if stage["stage"] == WARC_EXTRACTION:
        return crawl.warc_bytes
    return flows["per_wet_byte"][stage["stage"]] * crawl.wet_bytes


def stage_costs(throughput: dict, crawl: Crawl) -> list[StageCost]:
    """Every projected stage's core-hours on `crawl` (ours, and datatrove's where measured)."""
    costs = []
    for stage in throughput["stages"]:
        if stage["stage"] not in throughput["flows"]["per_wet_byte"]:
            continue  # measured, not in the recipe (cc_gopher, the chain as a whole)
        quantity = crawl_quantity(stage, throughput["flows"], crawl)
        peer = stage.get("datatrove_per_core_s")
        costs.append(
            StageCost(
                stage["stage"],
                stage["branch"],
                stage["unit"],
                stage["ours_per_core_s"],
                quantity,
                quantity / stage["ours_per_core_s"] / 3600,
                quantity / peer / 3600 if peer else None,
            )
        )
    order = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(costs, key=lambda c: order.get(c.stage, len(order)))


def branch_totals(costs: list[StageCost]) -> dict[str, float]:
    totals = {branch: 0.0 for branch in BRANCH_ORDER}
    for cost in costs:
        if cost.branch in totals:
            totals[cost.branch] += cost.core_hours
    return totals


def warc_by_pages(throughput: dict, crawl: Crawl) -> float:
    """WARC extraction core-hours from the published page count and our pages/s (the
    bytes-based figure's check: real pages are larger than the sample's)."""
    stage = next(s for s in throughput["stages"] if s["stage"] == WARC_EXTRACTION)
    return crawl.pages / stage["docs_per_core_s"] / 3600


def projection(throughput: dict) -> dict:
    """The projection for one crawl and the paper's five dumps, as a JSON-ready dict."""
    out: dict = {"measured": throughput["header"], "flows": throughput["flows"], "crawls": {}}
    for key, crawl in (("one_crawl", ONE_CRAWL), ("five_dumps", paper_dumps())):
        costs = stage_costs(throughput, crawl)
        totals = branch_totals(costs)
        out["crawls"][key] = {
            "crawl": asdict(crawl),
            "stages": [asdict(c) for c in costs],
            "branches_core_hours": totals,
            "total_core_hours": sum(totals.values()),
            "warc_extraction_by_pages_core_hours": warc_by_pages(throughput, crawl),
        }
    return out


# --- text -----------------------------------------------------------------------------------


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def table_lines(result: dict) -> list[str]:
    one, five = result["crawls"]["one_crawl"], result["crawls"]["five_dumps"]
    lines = [
        f"{'branch':<17} {'stage':<31} {'unit/s per core':>16} "
        f"{'core-h, 1 crawl':>16} {'core-h, 5 dumps':>16} {'datatrove, 1 crawl':>19}"
    ]
    for a, b in zip(one["stages"], five["stages"], strict=True):
        rate = (
            f"{a['per_core_s'] / 1e6:.2f} MB"
            if a["unit"] != "documents"
            else f"{a['per_core_s']:.0f} docs"
        )
        lines.append(
            f"{a['branch']:<17} {a['stage']:<31} {rate:>16} {_hours(a['core_hours']):>16} "
            f"{_hours(b['core_hours']):>16} {_hours(a['datatrove_core_hours']):>19}"
        )
    lines.append("")
    for branch in BRANCH_ORDER:
        lines.append(
            f"{branch:<17} {'(branch total)':<31} {'':>16} "
            f"{_hours(one['branches_core_hours'][branch]):>16} "
            f"{_hours(five['branches_core_hours'][branch]):>16}"
        )
    lines.append(
        f"{'all':<17} {'(CCNet + C4 + signatures + dedup + tokenization)':<48} "
        f"{_hours(one['total_core_hours']):>16} {_hours(five['total_core_hours']):>16}"
    )
    return lines


def _stage(crawl_result: dict, name: str) -> dict:
    return next(s for s in crawl_result["stages"] if s["stage"] == name)


def notes(result: dict) -> list[str]:
    one, five = result["crawls"]["one_crawl"], result["crawls"]["five_dumps"]
    flows = result["flows"]
    crawl = one["crawl"]
    extraction = _stage(one, WARC_EXTRACTION)
    sample_density = flows["wet_documents"] / (flows["wet_bytes"] / 1e6)
    real_density = crawl["pages"] / (crawl["wet_tib"] * TIB / 1e6)
    return [
        f"# one crawl: {crawl['name']}, {crawl['pages'] / 1e9:.2f}B pages, {crawl['files']:,} "
        f"WET files, {crawl['wet_tib']} TiB WET.gz, {crawl['warc_tib']} TiB WARC.gz "
        f"(published: {crawl['source']})",
        f"# five dumps: {five['crawl']['name']}: {five['crawl']['pages'] / 1e9:.1f}B pages, "
        f"{five['crawl']['wet_tib']:.1f} TiB WET.gz, {five['crawl']['warc_tib']:.1f} TiB WARC.gz",
        "# crawl figures are published numbers, not measured; rates are measured (header), "
        "flows are the sample world's",
        f"# flows from {flows['world']}: {flows['wet_documents']} WET documents in "
        f"{flows['wet_bytes'] / 1e6:.1f} MB WET.gz = {sample_density:.0f} per MB (published "
        f"crawl: {real_density:.0f} per MB); English share after line dedup "
        f"{flows['english_share']:.0%}",
        f"# WARC instead of WET for extraction (trafilatura), not in the totals (CCNet "
        f"reads WET): {_hours(extraction['core_hours'])} core-h by WARC bytes, "
        f"{_hours(one['warc_extraction_by_pages_core_hours'])} by pages (one crawl); "
        f"{_hours(_stage(five, WARC_EXTRACTION)['core_hours'])} by bytes, "
        f"{_hours(five['warc_extraction_by_pages_core_hours'])} by pages (five dumps)",
    ]


def card_lines(result: dict) -> list[str]:
    """What the data card shows of the projection: its own section (the card's renderer,
    curation/corpus/data_card.py, so the two never disagree)."""
    card = Card()
    cost_section(card, result)
    return card.markdown.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--throughput", default="bench/results/throughput_scale.json")
    parser.add_argument("--out", default="bench/results/cost_projection")
    args = parser.parse_args()
    with open(args.throughput) as f:
        result = projection(json.load(f))
    text = "\n".join(
        [
            f"# bench/cost.py --throughput {args.throughput}",
            *result["measured"][:3],
            *notes(result),
            "",
            *table_lines(result),
            "",
            "# data card (curation/corpus/data_card.py cost_section):",
            *card_lines(result),
        ]
    )
    print(text)
    with open(f"{args.out}.txt", "w") as f:
        f.write(text + "\n")
    write_json(f"{args.out}.json", result)


if __name__ == "__main__":
    main()
