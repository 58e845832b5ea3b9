"""PNG plots for asset metadata: embedded in the web UI and written beside the outputs.

Plots go to `<partition>.plots/` next to the partition directory, not inside it: the
partition is published atomically by the runner and stays byte-identical across runs.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Mapping, Sequence

from dagster import MetadataValue
from matplotlib.ticker import EngFormatter, NullFormatter

from curation.core.figures import plt, png_bytes
from curation.core.manifest import Manifest
from curation.core.storage import Storage


def plots_dir(output: str) -> str:
    return output.rstrip("/") + ".plots"


def data_uri(png: bytes) -> str:
    """A PNG inlined: the web UI shows markdown images only from data URIs."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def save_png(figure, storage: Storage, output: str, name: str) -> MetadataValue:
    """Write the figure as `<output>.plots/<name>.png` and return it as inline markdown."""
    data = png_bytes(figure)
    directory = plots_dir(output)
    storage.makedirs(directory)
    path = posixpath.join(directory, f"{name}.png")
    storage.write_bytes(path, data)
    return MetadataValue.md(f"![{name}]({data_uri(data)})\n\n`{path}`")


def funnel(manifest: Manifest):
    """Documents in, kept, and dropped by reason, as horizontal bars."""
    labels = ["in", "kept", *(f"dropped: {r}" for r in manifest.dropped)]
    values = [manifest.n_in, manifest.kept, *manifest.dropped.values()]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(labels) + 1))
    colors = ["#4c72b0", "#55a868", *["#c44e52"] * len(manifest.dropped)]
    axis.barh(labels[::-1], values[::-1], color=colors[::-1])
    for y, value in enumerate(values[::-1]):
        axis.text(value, y, f" {value}", va="center")
    axis.set_title(f"{manifest.stage}: funnel")
    axis.set_xlabel("documents")
    return figure


def histograms(
    values: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    cutoffs: Mapping[str, Sequence[float]] | None = None,
    log_x: bool = False,
):
    """One small histogram per group (language, label), with vertical cutoff lines."""
    groups = sorted(values)
    columns = min(4, max(1, len(groups)))
    rows = (len(groups) + columns - 1) // columns or 1
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axis, group in zip(axes.flat, groups, strict=False):
        data = [v for v in values[group] if v > 0] if log_x else list(values[group])
        if data:
            bins = _log_bins(data) if log_x else 30
            axis.hist(data, bins=bins, color="#4c72b0")
        if log_x:
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())  # major ticks only: readable
        for cut in (cutoffs or {}).get(group, []):
            axis.axvline(cut, color="#c44e52", linestyle="--")
        axis.set_title(f"{group} (n={len(values[group])})", fontsize=9)
        axis.set_xlabel(xlabel, fontsize=8)
    for axis in list(axes.flat)[len(groups) :]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _log_bins(data: Sequence[float]) -> list[float]:
    low, high = min(data), max(data)
    if high <= low:
        return [low * 0.9, high * 1.1]
    ratio = (high / low) ** (1 / 30)
    return [low * ratio**i for i in range(31)]


def suite_curves(points: Sequence[dict], title: str):
    """The paper's suites over training tokens (its Figure 2): one line per measured row of
    every suite, a point per checkpoint evaluated (the trainer's `suites.jsonl`)."""
    figure, axis = plt.subplots(figsize=(7, 3.6))
    lines: dict[str, list[tuple[int, float]]] = {}
    for point in points:
        for suite in point["suites"].values():
            for row in suite["rows"]:
                if row["status"] == "ok":
                    label = f"{row['row']} ({row['shots']}-shot)"
                    lines.setdefault(label, []).append((point["tokens_seen"], row["value"]))
    for label, values in sorted(lines.items()):
        axis.plot(*zip(*values, strict=True), "o-", label=label)
    axis.xaxis.set_major_formatter(EngFormatter())
    axis.set_xlabel("training tokens")
    axis.set_ylabel("score")
    axis.legend(fontsize=7, ncol=2)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def heldout_curves(records: Sequence[dict], title: str):
    """Held-out loss over training tokens, the shape of the paper's Figures 1 and 2 (training
    loss and benchmarks over training tokens): one line for all held-out documents and one per
    corpus, a point per evaluation (the trainer's records that carry `heldout`)."""
    points = [r for r in records if r.get("heldout")]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    tokens = [r["tokens_seen"] for r in points]
    axis.plot(tokens, [r["heldout"]["loss"] for r in points], "o-", color="black", label="all")
    for corpus in sorted({c for r in points for c in r["heldout"].get("per_corpus", {})}):
        measured = [r for r in points if corpus in r["heldout"].get("per_corpus", {})]
        losses = [r["heldout"]["per_corpus"][corpus]["loss"] for r in measured]
        axis.plot([r["tokens_seen"] for r in measured], losses, ".-", label=corpus)
    axis.xaxis.set_major_formatter(EngFormatter())
    axis.set_xlabel("training tokens")
    axis.set_ylabel("held-out loss (nats per token)")
    axis.legend(fontsize=8)
    axis.set_title(title)
    figure.tight_layout()
    return figure
