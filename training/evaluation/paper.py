"""The paper's published numbers (`paper_results.csv`, each with its table and row) and the
suite tables that put ours beside them and beside the previous evaluation of the run.

The paper reports four sizes; a run is compared with the nearest one by parameter count (the
sample's tiny model with 7B: the comparison is a scale, not a target). Percent figures are
shown as percent, fractions (toxicity, TruthfulQA) as fractions, ours in the same unit.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

RESULTS_FILE = Path(__file__).with_name("paper_results.csv")
PAPER_SIZES = {"7B": 6.7e9, "13B": 13.0e9, "33B": 32.5e9, "65B": 65.2e9}  # paper Table 2


@dataclass(frozen=True)
class PaperNumber:
    table: str
    row: str
    value: float
    scale: str  # "percent" or "fraction"
    note: str

    def show(self, ours: float) -> str:
        """`ours` (a fraction, as the harness reports it) in this number's unit."""
        return f"{ours * 100:.1f}" if self.scale == "percent" else f"{ours:.3f}"


def paper_numbers() -> dict[tuple[str, str, int, str], PaperNumber]:
    """{(task, metric, shots, size): number} from the CSV."""
    with open(RESULTS_FILE, newline="") as f:
        return {
            (r["task"], r["metric"], int(r["shots"]), r["size"]): PaperNumber(
                r["table"], r["row"], float(r["value"]), r["scale"], r["note"]
            )
            for r in csv.DictReader(f)
        }


def nearest_size(parameters: int) -> str:
    """The paper's model size closest to `parameters` on a log scale."""
    return min(PAPER_SIZES, key=lambda s: abs(math.log(PAPER_SIZES[s] / max(parameters, 1))))


def suite_tables(suites: dict, size: str, previous: dict | None = None) -> dict[str, str]:
    """One markdown table per suite: each row's value, the paper's at `size` and the previous
    evaluation's; an unavailable row says why instead of showing a number. With an overlap
    report, a last column: the value without the items the training corpus held."""
    numbers = paper_numbers()
    tables = {}
    for name, suite in suites.items():
        before = {_key(r): r for r in (previous or {}).get(name, {}).get("rows", [])}
        marked = any("contaminated" in r or "contamination" in r for r in suite["rows"])
        lines = [
            f"{suite['table']} | metric | ours | paper {size} | previous"
            + (" | without items the corpus held" if marked else ""),
            "---|---|---:|---:|---:" + ("|---:" if marked else ""),
        ]
        for row in suite["rows"]:
            paper = numbers.get((row["task"], row["metric"], row["shots"], size))
            label = f"{row['row']} ({row['shots']}-shot)"
            if row["status"] != "ok":
                lines.append(f"{label} | {row['metric']} | unavailable: {row['reason']} | "
                             f"{_paper(paper)} |")  # fmt: skip
                continue
            old = before.get(_key(row), {})
            lines.append(
                f"{label} | {row['metric']} | {_ours(paper, row['value'])} | {_paper(paper)} | "
                f"{_ours(paper, old['value']) if old.get('status') == 'ok' else ''}"
                + (f" | {_clean(paper, row)}" if marked else "")
            )
        shown = [numbers.get((r["task"], r["metric"], r["shots"], size)) for r in suite["rows"]]
        notes = sorted({f"{n.row.split()[0]}: {n.note}" for n in shown if n and n.note})
        tables[name] = "\n".join(lines + ([""] + [f"paper: {n}" for n in notes] if notes else []))
    return tables


def _clean(paper: PaperNumber | None, row: dict) -> str:
    if "contaminated" not in row:
        return row.get("contamination", "")
    clean = row["clean_value"]
    return f"{'-' if clean is None else _ours(paper, clean)} ({row['contaminated']} held)"


def _key(row: dict) -> tuple:
    return row["task"], row["metric"], row["shots"]


def _ours(paper: PaperNumber | None, value: float) -> str:
    return paper.show(value) if paper else f"{value:.4g}"


def _paper(paper: PaperNumber | None) -> str:
    if paper is None:
        return ""
    return f"{paper.value:.1f}" if paper.scale == "percent" else f"{paper.value:g}"
