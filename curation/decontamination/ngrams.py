"""Word n-grams as lm-eval's decontamination defines them, as 64-bit hashes.

lm-eval (lm_eval/decontamination/janitor.py, decontaminate.py, following GPT-3's appendix C)
normalizes a text by lowercasing ASCII letters and deleting ASCII punctuation
(`string.punctuation`); nothing else changes (accented and non-Latin letters keep their case,
Unicode punctuation stays). The normalized text is split on whitespace and an n-gram is `n`
consecutive tokens (n = 13). `get_train_overlap` applies exactly that to both sides
(`word_ngrams(janitor.normalize_string(text), 13)`), so a token made only of ASCII
punctuation ("-", "...") vanishes and its neighbours become adjacent. (The Janitor's own
`clean_python` splits before normalizing, so such a token leaves an empty word that no
registered n-gram matches; the evaluation path is the one followed here.)

Normalization works on the UTF-8 bytes (ASCII punctuation bytes never occur inside a
multi-byte character, and `bytes.lower` touches only A-Z): the same result as the Janitor's
`str.translate`, ten times faster.

An n-gram is kept as a 64-bit number: each token hashed (blake2b, stable across processes and
machines; a process remembers the hashes of the tokens it has seen, so the frequent words are
hashed once), the n token hashes of a window combined as a polynomial modulo 2^64. Two
different n-grams share a number with probability about 2^-64 per pair. Character spans
of the windows in the original text come from the same tokens found with their offsets
(`\\S+` splits exactly where `str.split` does), for cutting the overlap out.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence

import numpy as np

N = 13  # GPT-3 and lm-eval's n-gram size
_PUNCTUATION = string.punctuation.encode()
_RAW_TOKEN = re.compile(r"\S+")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: every window position weighs differently
_KNOWN: dict[str, int] = {}  # token -> hash, per process
_KNOWN_LIMIT = 1 << 20


def normalize(text: str) -> str:
    """lm-eval's `Janitor.normalize_string`: ASCII lowercased, ASCII punctuation deleted."""
    data = text.encode("utf-8", "surrogatepass").translate(None, _PUNCTUATION).lower()
    return data.decode("utf-8", "surrogatepass")


def tokens(text: str) -> list[str]:
    """The normalized words of `text`, in order."""
    return normalize(text).split()


def token_spans(text: str) -> np.ndarray:
    """The (start, end) character offsets in `text` of every word `tokens(text)` returns, as
    an (n, 2) array: raw whitespace-separated words, less those normalization empties."""
    spans = [m.span() for m in _RAW_TOKEN.finditer(text) if normalize(m.group())]
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def _token_hash(token: str) -> int:
    data = token.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _token_hashes(words: Sequence[str]) -> np.ndarray:
    """The hash of every word, from this process's table of words seen (cleared when it
    reaches `_KNOWN_LIMIT` words, so memory stays bounded)."""
    if len(_KNOWN) > _KNOWN_LIMIT:
        _KNOWN.clear()
    codes = list(map(_KNOWN.get, words))
    for i, code in enumerate(codes):
        if code is None:
            codes[i] = _KNOWN.setdefault(words[i], _token_hash(words[i]))
    return np.fromiter(codes, np.uint64, len(codes))


def window_hashes(words: Sequence[str], n: int = N) -> np.ndarray:
    """One uint64 per window of `n` consecutive words, in order; none when there are fewer
    than `n` words (such a text has no n-gram: it can neither match nor be matched)."""
    windows = len(words) - n + 1
    if windows <= 0:
        return np.empty(0, dtype=np.uint64)
    codes = _token_hashes(words)
    hashes = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            hashes = hashes * _MULTIPLIER + codes[k : k + windows]
    return hashes
