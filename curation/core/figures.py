"""Matplotlib without a display, and figures as deterministic PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402, F401  (re-exported for plotting modules)


def png_bytes(figure) -> bytes:
    """The figure as PNG, closed; no software/date tags, so the same plot gives the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
