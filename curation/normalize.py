"""CCNet's text normalization, for line dedup keys and for the perplexity language models.

Two flavours of one function: dedup keys fold case, digits, punctuation and control
characters so that trivially different copies of a boilerplate line collide; the language
models additionally strip accents and map typographic punctuation to ASCII (CCNet's
`normalize(..., accent=True, punct=1)`), so the KenLM vocabulary is not split by them.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_DIGITS = re.compile(r"\d")
_SPACES = re.compile(r"\s+")

# Typographic punctuation -> ASCII, as CCNet's unicode_punct table does for the LM text.
_PUNCT_MAP = str.maketrans(
    {
        "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
        "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
        "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
        "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
        "％": "%", "►": "-",
    }
)  # fmt: skip


@lru_cache(maxsize=4096)
def _is_removed(char: str) -> bool:
    """Unicode punctuation (P*) and control/format characters (Cc, Cf)."""
    category = unicodedata.category(char)
    return category[0] == "P" or category in ("Cc", "Cf")


def _drop_punct_and_controls(text: str) -> str:
    return "".join(c for c in text if c.isspace() or not _is_removed(c))


def dedup_key(line: str) -> str:
    """The key two lines must share to count as the same line in line dedup."""
    text = _DIGITS.sub("0", line.strip().lower())
    text = _drop_punct_and_controls(text)
    return _SPACES.sub(" ", text).strip()


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def lm_normalize(line: str) -> str:
    """Text as the perplexity models see it: lowercase, no accents, digits 0, ASCII punctuation,
    control characters removed."""
    text = _DIGITS.sub("0", strip_accents(line.strip().lower()))
    text = text.translate(_PUNCT_MAP)
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    return _SPACES.sub(" ", text).strip()
