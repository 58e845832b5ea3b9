"""CCNet's text normalization, for line dedup keys and for the perplexity language models.

Two flavours of one function: dedup keys fold case, digits, punctuation and control
characters so that trivially different copies of a boilerplate line collide; the language
models additionally strip accents and map typographic punctuation to ASCII (CCNet's
`normalize(..., accent=True, punct=1)`), so the KenLM vocabulary is not split by them.
"""

from __future__ import annotations

import re
import unicodedata

import regex

# The `regex` module knows Unicode categories; the per-character Python loop it replaces
# was most of the perplexity stage's time.
_DIGITS = re.compile(r"\d")
_PUNCT_OR_CONTROL = regex.compile(r"[\p{P}\p{Cc}\p{Cf}]")
_CONTROL = regex.compile(r"[\p{Cc}\p{Cf}]")
_CONTROL_EXCEPT_NEWLINE = regex.compile(r"[[\p{Cc}\p{Cf}]--[\n]]", regex.V1)
_MARKS = regex.compile(r"\p{Mn}")

# Typographic punctuation -> ASCII, as CCNet's unicode_punct table does for the LM text.
_PUNCT_MAP = {
        "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
        "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
        "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
        "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
        "％": "%", "►": "-",
}  # fmt: skip
_TYPOGRAPHIC = re.compile("|".join(map(re.escape, _PUNCT_MAP)))


def _squeeze(text: str) -> str:
    """Whitespace runs to one space, ends stripped (str.split is much faster than a regex)."""
    return " ".join(text.split())


def dedup_key(line: str) -> str:
    """The key two lines must share to count as the same line in line dedup."""
    text = _DIGITS.sub("0", _squeeze(line.lower()))
    return _squeeze(_PUNCT_OR_CONTROL.sub("", text))


def strip_accents(text: str) -> str:
    return _MARKS.sub("", unicodedata.normalize("NFD", text))


def lm_normalize(line: str) -> str:
    """Text as the perplexity models see it: lowercase, no accents, digits 0, ASCII punctuation,
    control characters removed."""
    text = _DIGITS.sub("0", strip_accents(_squeeze(line.lower())))
    text = _TYPOGRAPHIC.sub(_ascii_punct, text)
    return _squeeze(_CONTROL.sub("", text))


def lm_normalize_lines(text: str, max_chars_per_line: int) -> list[str]:
    """`lm_normalize` of every line of a document, each line cut at `max_chars_per_line`
    first; empty lines are left out. One regex pass per document instead of per line: the
    perplexity stage spends most of its Python time here."""
    lines = [line[:max_chars_per_line] for line in text.splitlines()]
    joined = _DIGITS.sub("0", strip_accents("\n".join(lines).lower()))
    joined = _CONTROL_EXCEPT_NEWLINE.sub("", _TYPOGRAPHIC.sub(_ascii_punct, joined))
    return [squeezed for line in joined.split("\n") if (squeezed := _squeeze(line))]


def _ascii_punct(match: re.Match) -> str:
    return _PUNCT_MAP[match.group()]
