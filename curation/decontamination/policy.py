"""What happens to a training document that shares n-grams with an evaluation set.

Three policies, by name:

- `remove` (the default): GPT-3's training-set filtering (Brown et al. 2020, appendix C),
  which lm-eval's `Janitor` implements with the same numbers: each colliding 13-gram is cut
  out with `window_chars` (200) characters on either side, the cuts merged; the pieces left
  are kept, joined by a newline, except pieces shorter than `min_piece_chars` (200); a
  document cut in more than `max_spans` (10) places, or with nothing left, is dropped whole.
  GPT-3 first dropped every document with one collision and moved to this because that
  "overly penalized long documents such as books for false positives"; a book or a forum
  thread quoting one benchmark passage keeps the rest of its text. Setting both lengths to
  0 cuts exactly the overlapping windows.
  The Janitor counts colliding n-grams, not places, against its limit of 10, so it drops any
  document holding a copy of 23 or more words; GPT-3 states the limit as pieces, followed
  here: one copied passage is one place however long it is.
- `drop`: the whole document goes, as GPT-3 first did; the strictest.
- `flag`: nothing changes; the annotation column says which items the document holds, for
  measuring contamination without changing the corpus.

Under every policy the document's row says which benchmark items it overlapped
(`benchmark_overlap`), and the overlap report lists them for the harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Policy = Literal["remove", "drop", "flag"]
POLICIES: tuple[Policy, ...] = ("remove", "drop", "flag")
PIECE_SEPARATOR = "\n"

Span = tuple[int, int]  # [start, end) character offsets


def merge_spans(spans: Sequence[Span], pad: int = 0, length: int | None = None) -> list[Span]:
    """`spans` widened by `pad` characters on each side (clipped to `[0, length)`), sorted,
    and merged where they overlap or touch."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        start, end = max(0, start - pad), end + pad
        if length is not None:
            end = min(length, end)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def pieces_between(text: str, cuts: Sequence[Span], min_chars: int) -> list[str]:
    """The text outside the sorted, disjoint `cuts`, as pieces of at least `min_chars`
    characters (and never only whitespace)."""
    pieces, at = [], 0
    for start, end in [*cuts, (len(text), len(text))]:
        piece = text[at:start]
        if piece.strip() and len(piece) >= min_chars:
            pieces.append(piece)
        at = end
    return pieces


@dataclass(frozen=True)
class Rules:
    """A policy and its numbers (see the module docstring)."""

    policy: Policy = "remove"
    window_chars: int = 200
    min_piece_chars: int = 200
    max_spans: int = 10

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        for name in ("window_chars", "min_piece_chars", "max_spans"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def apply(self, text: str, overlaps: Sequence[Span]) -> str | None:
        """The document's text after the policy, given the character spans of its colliding
        n-grams; None when the document is dropped."""
        if self.policy == "flag" or not overlaps:
            return text
        if self.policy == "drop":
            return None
        cuts = merge_spans(overlaps, self.window_chars, len(text))
        if len(cuts) > self.max_spans:
            return None
        pieces = pieces_between(text, cuts, self.min_piece_chars)
        return PIECE_SEPARATOR.join(pieces) if pieces else None
