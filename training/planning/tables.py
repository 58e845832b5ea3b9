"""Plain-text tables and number formats for the planners' reports (what `llamapipe plan`
prints): right-aligned numbers, a rule under the header, no dependencies."""

from __future__ import annotations

import re
from collections.abc import Sequence

from training.planning.hardware import GIB

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns sized to their widest cell; the first column and text left-aligned, columns of
    numbers right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [i > 0 and all(_is_number(row[i]) for row in cells[1:]) for i in range(len(widths))]

    def line(row: list[str]) -> str:
        aligned = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        )
        return "  ".join(aligned).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _is_number(cell: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,.]+(e[+-]?\d+)?[%xKMBT]?", cell))


def count(value: float) -> str:
    """1.4e12 -> "1.4T", 6.74e9 -> "6.74B": three significant digits."""
    for scale, suffix in _SUFFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def energy(kwh: float) -> str:
    """MWh for a cluster's run, kWh for a small one."""
    return f"{kwh / 1000:,.1f} MWh" if kwh >= 1000 else f"{kwh:,.3g} kWh"


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def parse_count(text: str) -> int:
    """A count from text: "1.4T" -> 1_400_000_000_000, "300B", "4M", "2048" (decimal
    suffixes, exact digits)."""
    from decimal import Decimal, InvalidOperation

    text = text.strip().replace("_", "").replace(",", "")
    scale = {suffix: Decimal(int(s)) for s, suffix in _SUFFIXES}.get(text[-1:].upper())
    try:
        number = Decimal(text[:-1] if scale else text) * (scale or 1)
    except InvalidOperation:
        raise ValueError(f"not a count: {text!r} (e.g. 1.4T, 300B, 4M, 2048)") from None
    if number != number.to_integral_value() or number <= 0:
        raise ValueError(f"not a positive whole count: {text!r}")
    return int(number)
