"""MinHash signatures of documents, for near-duplicate detection: numpy over a batch at once.

Normalization. The text is lowercased (Unicode, Arrow's `utf8_lower`) and split into words on
its UTF-8 bytes: a word is a maximal run of ASCII letters, digits, `_` and non-ASCII bytes;
ASCII whitespace and punctuation separate words. Copies that differ in case, spacing, line
breaks or ASCII punctuation thus have the same words, and every script still splits on spaces
(non-ASCII punctuation such as an em dash or typographic quotes stays part of the word it
touches). Splitting on bytes rather than with a `\\w+` regex keeps the whole signature in
numpy: the regex alone costs more than everything else a signature takes.

Shingles are the word n-grams (n = 5); a document of fewer than n words is one shingle of all
its words, a document without words has no shingles and the empty signature (every value
2^32 - 1, as datasketch's empty MinHash), so it can only ever be an exact duplicate.

Hashes. A word's hash is a polynomial over its bytes mod 2^64, computed for every word of the
batch at once from one prefix sum, then mixed by the MurmurHash3 64-bit finalizer; a shingle's
hash is a polynomial over its word hashes (Horner, uint64 wrapping). `shingle_hashes` gives one
text's distinct shingle hashes, for exact set comparisons (the books stage's containment).

Signatures follow datasketch's "affine32" scheme exactly: the high 32 bits of each shingle hash
are premixed by the 32-bit MurmurHash3 finalizer and permuted by h -> a*h + b mod 2^32 with
datasketch's seeded (a, b); a signature value is the minimum over the shingles. It equals
`MinHash(num_perm, seed, hashfunc=int, scheme="affine32").update_batch(hashes >> 32)` (a test
checks it), but one (shingles x num_perm) product serves a whole chunk of documents and
`np.minimum.reduceat` takes the per-document minima, instead of one call per document.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH

EMPTY = np.uint32(0xFFFFFFFF)  # a signature value no shingle has lowered
_SCHEME = "affine32"
_BASE = np.uint64(0x100000001B3)  # odd, so invertible mod 2^64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_CHUNK_BYTES = 1 << 20  # text bytes per word-hashing pass: bounds its (8 x bytes) arrays
_CHUNK_SHINGLES = 2048  # shingles per permutation product: (2048 x num_perm) uint32
_BAND_SEED = np.uint64(0x9E3779B97F4A7C15)

_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"]] = True
_WORD_BYTE[128:] = True


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, datasketch's premix for the affine32 scheme."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) permutation parameters for `num_perm` and `seed` (affine32)."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _texts_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    return texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())


def _utf8_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The lowercased texts' bytes, concatenated, and the offsets of each text in them."""
    lower = pc.utf8_lower(texts.cast(pa.large_string()).fill_null(""))
    offsets = np.frombuffer(lower.buffers()[1], np.int64)[
        lower.offset : lower.offset + len(lower) + 1
    ]
    data = np.frombuffer(lower.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def _word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) byte positions of every word; no word crosses a text end."""
    n = len(data)
    is_word = _WORD_BYTE[data]
    text_start = np.zeros(n + 1, dtype=bool)
    text_start[offsets] = True
    before = np.zeros(n, dtype=bool)
    before[1:] = is_word[:-1]
    after = np.zeros(n, dtype=bool)
    after[:-1] = is_word[1:]
    starts = np.flatnonzero(is_word & (~before | text_start[:n]))
    ends = np.flatnonzero(is_word & (~after | text_start[1:])) + 1
    return starts, ends


def _power_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^j and BASE^-j mod 2^64 for j < n."""
    forward = np.full(n, _BASE, dtype=np.uint64)
    inverse = np.full(n, _BASE_INVERSE, dtype=np.uint64)
    forward[:1] = inverse[:1] = 1
    return np.cumprod(forward, out=forward), np.cumprod(inverse, out=inverse)


@cache
def _chunk_powers() -> tuple[np.ndarray, np.ndarray]:
    return _power_table(_CHUNK_BYTES)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """`_power_table(n)`; the tables of one chunk are made once per process."""
    forward, inverse = _chunk_powers() if n <= _CHUNK_BYTES else _power_table(n)
    return forward[:n], inverse[:n]


def _polynomial_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum(byte_j * BASE^(end-1-j)) mod 2^64 for every span, from one prefix sum over
    byte_j * BASE^-j: the difference of two prefixes times BASE^(end-1)."""
    forward, inverse = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * inverse, out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * forward[ends - 1]


def word_hashes(texts: Sequence[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of every word of every text, concatenated in order, and the number of
    words per text. Texts go in chunks of about `_CHUNK_BYTES` to bound the temporaries."""
    data, offsets = _utf8_buffers(_texts_array(texts))
    hashes, counts = [], []
    for first, last in _chunks(offsets, _CHUNK_BYTES):
        lo, hi = offsets[first], offsets[last]
        chunk_offsets = offsets[first : last + 1] - lo
        starts, ends = _word_spans(data[lo:hi], chunk_offsets)
        hashes.append(fmix64(_polynomial_hashes(data[lo:hi], starts, ends)))
        text = np.searchsorted(chunk_offsets, starts, side="right") - 1
        counts.append(np.bincount(text, minlength=last - first))
    if not hashes:
        return np.array([], np.uint64), np.array([], np.int64)
    return np.concatenate(hashes), np.concatenate(counts).astype(np.int64)


def _chunks(offsets: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[first, last) text ranges of about `size` bytes each; a longer text is one chunk."""
    ranges, first = [], 0
    n = len(offsets) - 1
    while first < n:
        last = int(np.searchsorted(offsets, offsets[first] + size, side="right")) - 1
        last = min(max(last, first + 1), n)
        ranges.append((first, last))
        first = last
    return ranges


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)]), vectorized."""
    heads = np.cumsum(lengths) - lengths
    within = np.arange(int(lengths.sum())) - np.repeat(heads, lengths)
    return np.repeat(starts, lengths) + within


def ngram_hashes(words: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of texts whose word hashes are concatenated in `words` (`lengths` words
    each): the hash of every word n-gram, or of all the words of a text shorter than n. The
    result is text-contiguous, with the number of shingles per text."""
    starts = np.cumsum(lengths) - lengths
    width = np.minimum(lengths, n)
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    out = np.empty(int(counts.sum()), dtype=np.uint64)
    out_starts = np.cumsum(counts) - counts
    gram = words.copy()
    for k in range(1, n + 1):
        if k > 1:  # gram[i] is now the hash of words[i : i + k]
            gram = gram[:-1] * _BASE + words[k - 1 :]
        texts = np.flatnonzero(width == k)
        if len(texts):
            source = _ranges(starts[texts], counts[texts])
            out[_ranges(out_starts[texts], counts[texts])] = gram[source]
    return out, counts


def shingle_hashes(text: str, n: int = 5) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the text's word n-grams (one of all its words if it
    has fewer than n), for exact set comparisons."""
    words, lengths = word_hashes([text])
    return np.unique(ngram_hashes(words, lengths, n)[0])


def signatures(
    texts: Sequence[str] | pa.Array | pa.ChunkedArray, num_perm: int, seed: int, n: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures, (texts x num_perm) uint32, and the number of words of each text."""
    words, lengths = word_hashes(_texts_array(texts))
    shingles, counts = ngram_hashes(words, lengths, n)
    values = np.full((len(counts), num_perm), EMPTY, dtype=np.uint32)
    a, b = permutations(num_perm, seed)
    text = np.repeat(np.arange(len(counts)), counts)
    premixed = fmix32((shingles >> np.uint64(32)).astype(np.uint32))
    for lo in range(0, len(shingles), _CHUNK_SHINGLES):
        hi = min(lo + _CHUNK_SHINGLES, len(shingles))
        permuted = np.multiply.outer(premixed[lo:hi], a)
        permuted += b
        owner = text[lo:hi]
        heads = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        minima = np.minimum.reduceat(permuted, heads, axis=0)
        rows = owner[heads]
        values[rows] = np.minimum(values[rows], minima)
    return values, lengths


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinHash estimate of the Jaccard similarity of row pairs: the share of equal values."""
    return np.count_nonzero(a == b, axis=-1) / a.shape[-1]


def band_keys(values: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(texts x bands) 64-bit keys: two texts share key j exactly when their values
    [j*rows, (j+1)*rows) are equal (barring a 64-bit hash collision). The band index is
    hashed in, so equal values in two different bands give different keys."""
    if bands * rows > values.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows exceed {values.shape[1]} permutations")
    keys = np.empty((len(values), bands), dtype=np.uint64)
    wide = values.astype(np.uint64)
    for band in range(bands):
        seed = fmix64(np.array([band + 1], np.uint64) * _BAND_SEED)  # arrays wrap silently
        key = np.repeat(seed, len(values))
        for column in range(band * rows, (band + 1) * rows):
            key = fmix64(key * _BASE + wide[:, column])
        keys[:, band] = key
    return keys


def banding_for(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for a Jaccard `threshold`: datasketch's choice (the split of `num_perm`
    minimizing the equally weighted areas of false positives below the threshold and false
    negatives above it under the LSH S-curve 1 - (1 - s^rows)^bands)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r
