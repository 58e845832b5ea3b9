"""The data card: one Markdown report a person reads to decide whether to trust the corpus.

Everything in it is read from the stages' manifests (counts, text bytes, histograms, configs,
input fingerprints), never recomputed from the data, so it is cheap to regenerate whenever an
input stage changes and it describes exactly what was published. Plots are PNG files beside
`DATA_CARD.md`, linked relatively; the Dagster asset inlines them for the web UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from curation.core.figures import plt, png_bytes
from curation.core.manifest import Manifest, fingerprint
from curation.corpus.mixture import PAPER_MIXTURE, realised_shares

KEPT, DROPPED = "#55a868", "#c44e52"


@dataclass(frozen=True)
class StageOutput:
    """One materialized partition: `asset[partition]` and its manifest."""

    asset: str
    partition: str
    manifest: Manifest
    upstream: str = ""  # label of the stage whose kept rows this one read, if only one

    @property
    def label(self) -> str:
        return f"{self.asset}[{self.partition}]"


@dataclass
class Card:
    """Markdown with relative image links, and the PNG bytes by file name."""

    sections: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def add(self, *lines: str) -> None:
        self.sections.append("\n".join(lines))

    def add_figure(self, figure, name: str, caption: str) -> None:
        self.images[f"{name}.png"] = png_bytes(figure)
        self.add(f"![{caption}]({name}.png)")

    @property
    def markdown(self) -> str:
        return "\n\n".join(self.sections) + "\n"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def build_card(
    stages: Sequence[StageOutput],
    mixture: Manifest | None = None,
    tokens: Mapping[str, Mapping[str, int]] | None = None,
    code_version: str = "",
    projection: Mapping | None = None,
) -> Card:
    """The card for `stages` in pipeline order; `mixture` and `tokens` (split -> corpus ->
    tokens, from `tokenized_shards`) when they exist; `projection`, what `make bench` projects
    a real crawl to cost (bench/cost.py's JSON), or None when it has not been run."""
    card = Card()
    card.add(
        "# Data card",
        "",
        "What the LLaMA-recipe corpus is made of, how each stage changed it, and where it came "
        "from. Generated from the stages' manifests; every count below is checked to conserve "
        "(`in == kept + dropped`) by the stage's asset checks.",
    )
    _funnel(card, stages)
    _dropped_by_reason(card, stages)
    for title, asset, name in [
        ("Languages (CommonCrawl language id)", "cc_language", "language"),
        ("Languages (Wikipedia)", "wikipedia", "language"),
        ("Perplexity buckets", "cc_perplexity", "bucket"),
        ("Wikipedia-reference classifier: P(wiki) deciles", "cc_wikiref", "wiki_prob_decile"),
    ]:
        _histogram_sections(card, title, [s for s in stages if s.asset == asset], name)
    _dedup(card, [s for s in stages if s.asset == "deduplicated"])
    _decontamination(card, [s for s in stages if s.asset == "decontaminated"])
    if mixture is not None:
        mixture_section(card, mixture)
    if tokens:
        _tokens(card, tokens)
    cost_section(card, projection)
    _provenance(card, stages, code_version)
    return card


COST_TITLE = "## Cost of a real crawl (projected)"


def _hours(n: float) -> str:
    return f"{n:,.0f}"


def cost_section(card: Card, projection: Mapping | None) -> None:
    """Core-hours per branch for one real crawl and for the paper's five dumps: the card says
    what the recipe costs at the scale it is meant for, not only what it did on this input.
    Measured per-core rates times Common Crawl's published sizes (bench/cost.py)."""
    if projection is None:
        card.add(COST_TITLE, "", "Not projected yet: `make bench` writes the projection.")
        return
    one, five = projection["crawls"]["one_crawl"], projection["crawls"]["five_dumps"]
    rows = [
        (branch, _hours(n), _hours(five["branches_core_hours"][branch]))
        for branch, n in one["branches_core_hours"].items()
    ]
    rows.append(("total", _hours(one["total_core_hours"]), _hours(five["total_core_hours"])))
    header = ["branch", f"core-hours, {one['crawl']['name']}", "core-hours, five dumps"]
    card.add(
        COST_TITLE,
        "",
        _table(header, rows),
        "",
        f"Five dumps: {five['crawl']['name']}. Per-core rates measured by bench/throughput.py "
        f"({projection['measured'][1].lstrip('# ')}); crawl sizes are Common Crawl's published "
        "figures; bench/results/cost_projection.txt has every stage.",
    )


def _funnel(card: Card, stages: Sequence[StageOutput]) -> None:
    counts = []  # label, in, kept, dropped, kept bytes, dropped bytes
    kept_bytes = {}
    for s in stages:
        m, text = s.manifest, s.manifest.histograms.get("text_bytes", {})
        kept_bytes[s.label] = text.get("kept", 0)
        dropped_bytes = sum(v for k, v in text.items() if k != "kept")
        counts.append(
            (s.label, m.n_in, m.kept, sum(m.dropped.values()), text.get("kept", 0), dropped_bytes)
        )
    rows = []
    for s, row in zip(stages, counts, strict=True):
        edited = kept_bytes[s.upstream] - row[4] - row[5] if s.upstream in kept_bytes else None
        rows.append([*row[:4], _mb(row[4]), _mb(row[5]), "" if edited is None else _mb(edited)])
    card.add(
        "## Funnel",
        "",
        "Documents and text (MB of UTF-8) kept and dropped by every stage, raw records first. "
        "*Edited MB*: text removed from documents that were kept (lines, spans), the upstream's "
        "kept bytes minus this stage's kept and dropped bytes.",
        "",
        _table(["stage", "in", "kept", "dropped", "kept MB", "dropped MB", "edited MB"], rows),
    )
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(stages) + 1.5), sharey=True)
    labels = [row[0] for row in counts][::-1]
    for axis, unit, scale, (kept, dropped) in [
        (axes[0], "documents", 1, (2, 3)),
        (axes[1], "text MB", 1e6, (4, 5)),
    ]:
        kept_values = [row[kept] / scale for row in counts][::-1]
        axis.barh(labels, kept_values, color=KEPT, label="kept")
        axis.barh(
            labels,
            [row[dropped] / scale for row in counts][::-1],
            left=kept_values,
            color=DROPPED,
            label="dropped",
        )
        axis.set_xlabel(unit)
    axes[1].legend(loc="lower right")
    figure.suptitle("Funnel: kept and dropped per stage")
    card.add_figure(figure, "funnel", "funnel")


def _dropped_by_reason(card: Card, stages: Sequence[StageOutput]) -> None:
    rows = []
    for s in stages:
        text = s.manifest.histograms.get("text_bytes", {})
        for reason, n in s.manifest.dropped.items():
            rows.append([s.label, reason, n, _mb(text.get(reason, 0))])
    card.add("## Dropped, by stage and reason", "", _table(["stage", "reason", "docs", "MB"], rows))


def _bars(card: Card, counts: Mapping[str, int], title: str, name: str, top: int = 25) -> None:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(items) + 1.2))
    axis.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
    axis.set_title(title)
    card.add_figure(figure, name, title)


def _histogram_sections(card: Card, title: str, stages: Sequence[StageOutput], name: str) -> None:
    for s in stages:
        counts = s.manifest.histograms.get(name)
        if not counts:
            continue
        total = sum(counts.values())
        rows = [
            [k, v, f"{100 * v / total:.1f}%"]
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
        ]
        card.add(f"## {title}: {s.label}", "", _table([name, "docs", "share"], rows))
        _bars(card, counts, f"{title}: {s.label}", f"{s.asset}-{s.partition}-{name}")


def _dedup(card: Card, stages: Sequence[StageOutput]) -> None:
    for s in stages:
        card.add(
            f"## Deduplication: {s.label}",
            "",
            f"{s.manifest.n_in} documents in, {s.manifest.kept} kept; removed: "
            + ", ".join(f"{k} {v}" for k, v in s.manifest.dropped.items()),
        )
        for name, counts in s.manifest.histograms.items():
            if name == "text_bytes" or not counts:
                continue
            rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
            card.add(f"### {name}", "", _table([name, "count"], rows))


def _benchmark_totals(sets: Sequence[Mapping]) -> dict[str, list[int]]:
    """Per task (a split's set name before the `/`): items, items too short to check, items
    found in the corpus."""
    totals: dict[str, list[int]] = {}
    for row in sets:
        task = totals.setdefault(row["set"].split("/")[0], [0, 0, 0])
        task[0] += row["items"]
        task[1] += row["items_without_ngram"]
        task[2] += len(row["contaminated"])
    return totals


def _decontamination(card: Card, stages: Sequence[StageOutput]) -> None:
    """Which benchmarks the corpus held, in which corpora, and what was done about it: what
    a reader of the evaluation numbers needs to know."""
    for s in stages:
        summary, hist, config = s.manifest.summary, s.manifest.histograms, s.manifest.config
        totals = _benchmark_totals(summary.get("sets", []))
        documents = hist.get("overlap_by_benchmark", {})
        found = [[t, *n, documents.get(t, 0)] for t, n in sorted(totals.items()) if n[2]]
        clean = [n[0] for n in totals.values() if not n[2]]
        outcome = ", ".join(f"{k} {v}" for k, v in sorted(hist.get("overlap_outcome", {}).items()))
        lines = [
            f"## Benchmark decontamination: {s.label}",
            "",
            f"{config.get('ngram_size')}-gram overlaps with the evaluation sets in "
            f"`{config.get('benchmarks')}`, policy `{config.get('policy')}`; documents: "
            f"{outcome or 'none overlapped'}.",
        ]
        if summary.get("warning"):
            lines += ["", f"⚠ {summary['warning']}"]
        header = ["benchmark", "items", "too short to check", "items found", "documents"]
        lines += ["", _table(header, found) if found else "No evaluation item was found."]
        if clean:
            lines += ["", f"Not found: {len(clean)} more benchmarks ({sum(clean)} items)."]
        if documents:
            by_corpus = sorted(hist.get("overlap_by_corpus", {}).items())
            lines += ["", _table(["corpus", "documents with an overlap"], by_corpus)]
        card.add(*lines)


def mixture_section(card: Card, mixture: Manifest) -> None:
    summary, hist = mixture.summary, mixture.histograms
    realised = realised_shares(hist)
    docs = hist.get("docs_by_split", {})
    rows, warnings = [], []
    for p in summary.get("plan", []):
        corpus = p["corpus"]
        rows.append(
            [
                corpus,
                f"{100 * PAPER_MIXTURE.get(corpus, (0, 0))[0]:.1f}%",
                f"{100 * p['share']:.1f}%",
                f"{100 * p['achievable_share']:.1f}%",
                f"{100 * realised.get(corpus, 0):.1f}%",
                p["paper_epochs"],
                "n/a" if p["epochs"] is None else f"{p['epochs']:.2f}",
                f"{p['achievable_epochs']:.2f}",
                f"{p['available_tokens']:,.0f}",
                docs.get(f"train:{corpus}", 0),
                docs.get(f"validation:{corpus}", 0),
            ]
        )
        if p["warning"]:
            warnings.append(f"- ⚠ {p['warning']}")
    card.add(
        "## Mixture: planned versus realised",
        "",
        f"Target: {summary.get('target_tokens', 0):,} training tokens (estimated as UTF-8 bytes "
        f"/ {mixture.config.get('bytes_per_token')}). Shares are of the training stream, copies "
        "counted; validation documents are held out before sampling.",
        "",
        _table(
            [
                "corpus",
                "paper share",
                "configured",
                "achievable",
                "realised",
                "paper epochs",
                "needed epochs",
                "epochs",
                "available tokens",
                "train docs",
                "validation docs",
            ],
            rows,
        ),
        "",
        *(warnings or ["Every corpus reaches its configured share."]),
    )
    corpora = [p["corpus"] for p in summary.get("plan", [])]
    figure, axis = plt.subplots(figsize=(8, 3.5))
    width = 0.27
    for offset, label, values in [
        (-width, "paper", [PAPER_MIXTURE.get(c, (0, 0))[0] for c in corpora]),
        (0.0, "planned", [p["achievable_share"] for p in summary.get("plan", [])]),
        (width, "realised", [realised.get(c, 0) for c in corpora]),
    ]:
        axis.bar([i + offset for i in range(len(corpora))], values, width, label=label)
    axis.set_xticks(range(len(corpora)), corpora, rotation=20)
    axis.set_ylabel("share of training tokens")
    axis.legend()
    card.add_figure(figure, "mixture", "mixture shares")


def _tokens(card: Card, tokens: Mapping[str, Mapping[str, int]]) -> None:
    corpora = sorted({c for per in tokens.values() for c in per})
    rows = [[c, *(tokens.get(split, {}).get(c, 0) for split in sorted(tokens))] for c in corpora]
    rows.append(["total", *(sum(tokens[split].values()) for split in sorted(tokens))])
    card.add(
        "## Tokens per corpus (after tokenization)",
        "",
        _table(["corpus", *(f"{split} tokens" for split in sorted(tokens))], rows),
    )


def _provenance(card: Card, stages: Sequence[StageOutput], code_version: str) -> None:
    rows = []
    for s in stages:
        inputs = s.manifest.inputs
        rows.append(
            [
                s.label,
                s.manifest.code_version,
                len(inputs),
                ", ".join(i["name"] for i in inputs[:3]) + (" ..." if len(inputs) > 3 else ""),
                fingerprint(inputs)[:12],
                s.manifest.fingerprint[:12],
            ]
        )
    configs = "\n".join(
        f"- `{s.label}`: `{_compact(s.manifest.config)}`" for s in stages if s.manifest.config
    )
    card.add(
        "## Provenance",
        "",
        f"Code version {code_version}. Crawls: "
        + (", ".join(sorted({s.partition for s in stages if s.asset == "cc_documents"})) or "none")
        + ".",
        "",
        _table(["stage", "code", "inputs", "first inputs", "inputs sha", "run fingerprint"], rows),
        "",
        "Configuration of each stage:",
        "",
        configs,
    )


def _compact(config: Mapping[str, object]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in config.items())
    return text if len(text) < 400 else text[:400] + " ..."
