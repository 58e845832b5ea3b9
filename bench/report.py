"""What every benchmark shares: best-of timing, and the table it prints (one row per
measure: rate, item count, ratio note)."""

from __future__ import annotations

import time
from collections.abc import Callable

Row = tuple[str, float, int, str]


def print_rows(rows: list[Row], label: str, unit: str) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{label.ljust(width)}  {unit:>10}  {'items':>6}  ratio")
    for name, rate, n, note in rows:
        print(f"{name.ljust(width)}  {rate:10.1f}  {n:6d}  {note}")


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    """Fastest of `repeat` runs (the least disturbed by other load), and the item count."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - started)
    return best, count
