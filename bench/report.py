"""The table every benchmark prints: one row per measure, rate, item count, ratio note."""

from __future__ import annotations

Row = tuple[str, float, int, str]


def print_rows(rows: list[Row], label: str, unit: str) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{label.ljust(width)}  {unit:>10}  {'items':>6}  ratio")
    for name, rate, n, note in rows:
        print(f"{name.ljust(width)}  {rate:10.1f}  {n:6d}  {note}")
