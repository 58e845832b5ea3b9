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
    text = _TYPOGRAPHIC.sub(lambda m: _PUNCT_MAP[m.group()], text)
    return _squeeze(_CONTROL.sub("", text))
