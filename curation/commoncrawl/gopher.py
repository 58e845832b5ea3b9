"""`cc_gopher`: the Gopher quality and repetition rules (Rae et al. 2021, appendix A.1.1).

Gopher's MassiveWeb drops web pages that do not look like prose (too short or too long, words
too short or too long, full of symbols, bullets or numbers, without English function words) or
that repeat themselves (lines, paragraphs, word n-grams). FineWeb applies the same rules, after
language id, with the paper's thresholds; so does this stage, which reads the crawl's
language-identified documents and keeps or drops each one whole, text unchanged.

It is **off in the LLaMA recipe**: the LLaMA paper's CommonCrawl is CCNet (line dedup, language
id, the n-gram model's perplexity) plus the Wikipedia-reference classifier, and applies no
Gopher rule. The stage is an option for people who want FineWeb-style filtering.

The units the rules measure:

- **word**: a run of non-whitespace characters trimmed of its leading and trailing Unicode
  punctuation (P*) and symbols (S*); a run with nothing left ("-", "...", "#", "|", an emoji)
  is no word. Punctuation stuck to a word ("end.", "(see", quotes) must not change which word it
  is (stop words, n-grams) nor its length, punctuation inside one ("don't", "e-mail", "3.14")
  keeps it one word, and lone symbols are what the symbol rules measure, not words. Unicode
  classes, not `str.isalnum`, so that a word ending in a combining mark (Devanagari vowel signs)
  keeps it: a multilingual crawl measures the same words. One `regex` pass, no tokenizer model.
- **line**: a line of the text (`str.splitlines`) with surrounding whitespace stripped; blank
  lines are not lines (they separate paragraphs, and would otherwise all be duplicates).
- **paragraph**: a maximal run of consecutive lines with no blank line inside, its lines joined
  by newlines.
- **characters** of a line or paragraph: its length as defined; the character fractions of
  lines (paragraphs) are over all lines' (paragraphs') characters. The n-gram fractions are over
  **word characters** (whitespace and trimmed punctuation do not count).

Duplicates. A line (paragraph) is a duplicate when its text occurs more than once in the
document, and every occurrence counts, the first too: one line doubled among ten lines is a
duplicate fraction of 0.2 (datatrove counts only the repeats, 0.1, so this reading is the
stricter one). The paper's n-gram fractions are "the fraction of characters contained within"
the n-grams, "taking care not to count characters that occur in overlapping n-grams more than
once". So here a word's characters are in the duplicate n-grams when some n-gram containing the
word occurs more than once (any occurrence, the first too), each counted once; and the top
n-gram's characters are those of the words inside any occurrence of the most frequent n-gram
(ties: the one with the most characters), counted once, and none when it occurs only once.
Both fractions therefore lie in [0, 1], over word characters (datatrove divides by the text's
length). N-grams compare words exactly (case kept).

Every line of a duplicated paragraph is a duplicate line, so rule 14 below can fail a page that
passes rule 13 only through the newlines inside the duplicated paragraphs (a repeated block of
many short lines); it is kept because the paper lists it.

Rules, in the order checked (cheap first: counts over words, then over lines, then the
duplicate counts); the first rule a document fails is its reason:

 1. `gopher_too_few_words`: fewer than `min_words` (50) words;
 2. `gopher_too_many_words`: more than `max_words` (100,000) words;
 3. `gopher_short_words`: mean word length under `min_mean_word_length` (3);
 4. `gopher_long_words`: mean word length over `max_mean_word_length` (10);
 5. `gopher_hash_ratio`: "#" characters per word over `max_hash_ratio` (0.1);
 6. `gopher_ellipsis_ratio`: ellipses ("..." or "…") per word over `max_ellipsis_ratio` (0.1);
 7. `gopher_bullet_lines`: lines starting with one of `bullets` over `max_bullet_lines` (0.9);
 8. `gopher_ellipsis_lines`: lines ending with an ellipsis over `max_ellipsis_lines` (0.3);
 9. `gopher_non_alpha_words`: words with an alphabetic character under `min_alpha_words` (0.8);
10. `gopher_few_stop_words`: fewer than `min_stop_words` (2) occurrences of `stop_words`
    (case-insensitive; "the ... the" is two, as in datatrove);
11. `gopher_duplicate_line_fraction`: duplicate lines over `max_duplicate_lines` (0.30);
12. `gopher_duplicate_paragraph_fraction`: duplicate paragraphs over 0.30;
13. `gopher_duplicate_line_chars`: characters in duplicate lines over 0.20;
14. `gopher_duplicate_paragraph_chars`: characters in duplicate paragraphs over 0.20;
15. `gopher_top_{n}gram`, n = 2, 3, 4: the top n-gram's characters over 0.20, 0.18, 0.16;
16. `gopher_duplicate_{n}gram`, n = 5 ... 10: characters in duplicate n-grams over 0.15 ... 0.10.

A document's words, lines, paragraphs and duplicate counts are computed at most once, and only
when a rule reaches them (a page too short costs no n-gram count); each n-gram measure is one
Counter pass and one cumulative sum, O(words) per n.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

from curation.commoncrawl.langid import LanguageId
from curation.core.documents import drop_rows
from curation.core.screening import iter_shard
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

# A word: from its first to its last character that is neither whitespace, punctuation nor symbol.
_WORD = regex.compile(r"[^\s\p{P}\p{S}](?:\S*[^\s\p{P}\p{S}])?")
HASH = ("#",)
ELLIPSES = ("...", "…")
# The paper's list (Rae et al. 2021, A.1.1).
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Bullet points and list dashes as web pages write them.
BULLETS = ("•", "‣", "◦", "⁃", "●", "○", "▪", "▫", "■", "□", "►", "▶", "➢", "✓", "-", "–", "—", "*")
TOP_NGRAM_FRACTIONS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUPLICATE_NGRAM_FRACTIONS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
_BATCH = 4096  # documents per batch: bounds the text held at once
MeasureFn = Callable[["Units"], float]  # a rule's measure of one document


def split_words(text: str) -> list[str]:
    """The words of `text` (module docstring)."""
    return _WORD.findall(text)


def split_lines(text: str) -> list[str]:
    """The non-blank lines of `text`, stripped."""
    return [line for line in (raw.strip() for raw in text.splitlines()) if line]


def split_paragraphs(text: str) -> list[str]:
    """Runs of consecutive non-blank lines (stripped), joined by newlines."""
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def duplicate_shares(items: Sequence[str]) -> tuple[float, float]:
    """The fraction of `items` whose text occurs more than once (every occurrence counted), and
    the fraction of their characters."""
    if not items:
        return 0.0, 0.0
    counts = Counter(items)
    duplicates = [item for item in items if counts[item] > 1]
    total_chars = sum(map(len, items))
    return len(duplicates) / len(items), sum(map(len, duplicates)) / max(total_chars, 1)


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Every n-gram of consecutive words, in order (none when there are fewer than n words)."""
    return list(zip(*(words[i:] for i in range(n)), strict=False))


def covered_chars(starts: np.ndarray, n: int, lengths: np.ndarray) -> int:
    """Characters of the words inside at least one of the n-grams whose start is marked in
    `starts` (one flag per n-gram), each word counted once however many of them overlap it."""
    opened = np.concatenate(([0], np.cumsum(starts)))  # opened[i]: marked starts before i
    word = np.arange(len(lengths))
    last = np.minimum(word + 1, len(starts))  # word j is in the n-grams starting j-n+1 ... j
    first = np.clip(word - n + 1, 0, len(starts))
    return int(lengths[opened[last] - opened[first] > 0].sum())


def top_ngram_fraction(words: Sequence[str], lengths: np.ndarray, n: int) -> float:
    """The share of word characters inside occurrences of the most frequent n-gram (0 when no
    n-gram occurs twice); ties go to the n-gram with the most characters."""
    grams = ngrams(words, n)
    counts = Counter(grams)
    best = max(counts.values(), default=0)
    if best < 2:
        return 0.0
    top = max((g for g, c in counts.items() if c == best), key=lambda g: sum(map(len, g)))
    starts = np.fromiter((g == top for g in grams), bool, len(grams))
    return covered_chars(starts, n, lengths) / max(int(lengths.sum()), 1)


def duplicate_ngram_fraction(words: Sequence[str], lengths: np.ndarray, n: int) -> float:
    """The share of word characters inside some n-gram that occurs more than once."""
    grams = ngrams(words, n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    starts = np.fromiter((counts[g] > 1 for g in grams), bool, len(grams))
    return covered_chars(starts, n, lengths) / max(int(lengths.sum()), 1)


def word_count(units: Units) -> float:
    return len(units.words)


def mean_word_length(units: Units) -> float:
    return float(units.lengths.mean()) if units.words else 0.0


def symbols_per_word(units: Units, symbols: Sequence[str]) -> float:
    """Occurrences of `symbols` in the text (non-overlapping, per symbol) per word."""
    return sum(units.text.count(s) for s in symbols) / max(len(units.words), 1)


def bullet_line_share(units: Units, bullets: tuple[str, ...]) -> float:
    """The fraction of lines starting with a bullet."""
    return _line_share(units.lines, lambda line: line.startswith(bullets))


def ellipsis_line_share(units: Units) -> float:
    """The fraction of lines ending with an ellipsis."""
    return _line_share(units.lines, lambda line: line.endswith(ELLIPSES))


def _line_share(lines: Sequence[str], test: Callable[[str], bool]) -> float:
    return sum(map(test, lines)) / len(lines) if lines else 0.0


def alpha_word_share(units: Units) -> float:
    """The fraction of words with at least one alphabetic character."""
    words = units.words
    return sum(any(c.isalpha() for c in w) for w in words) / len(words) if words else 0.0


def stop_word_count(units: Units, stop_words: tuple[str, ...]) -> float:
    """Occurrences of `stop_words` among the words, case-insensitively."""
    wanted = frozenset(stop_words)
    return sum(w.lower() in wanted for w in units.words)


def duplicate_line_share(units: Units) -> float:
    return units.line_duplicates[0]


def duplicate_paragraph_share(units: Units) -> float:
    return units.paragraph_duplicates[0]


def duplicate_line_chars(units: Units) -> float:
    return units.line_duplicates[1]


def duplicate_paragraph_chars(units: Units) -> float:
    return units.paragraph_duplicates[1]


def top_ngram_share(units: Units, n: int) -> float:
    return top_ngram_fraction(units.words, units.lengths, n)


def duplicate_ngram_share(units: Units, n: int) -> float:
    return duplicate_ngram_fraction(units.words, units.lengths, n)


class Units:
    """One document's words, lines and paragraphs and the measures more than one rule reads,
    each computed on first use: a document dropped by a cheap rule costs no n-gram count."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return split_words(self.text)

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), np.int64, len(self.words))

    @cached_property
    def lines(self) -> list[str]:
        return split_lines(self.text)

    @cached_property
    def line_duplicates(self) -> tuple[float, float]:
        return duplicate_shares(self.lines)

    @cached_property
    def paragraph_duplicates(self) -> tuple[float, float]:
        return duplicate_shares(split_paragraphs(self.text))


@dataclass(frozen=True)
class Rule:
    """A document fails when `measure` of it lies outside [minimum, maximum]."""

    reason: str
    measure: MeasureFn
    minimum: float = -math.inf
    maximum: float = math.inf

    def fails(self, units: Units) -> bool:
        return not self.minimum <= self.measure(units) <= self.maximum


@dataclass(frozen=True)
class GopherQuality(Stage):
    """Drop documents failing a Gopher quality or repetition rule; see the module docstring."""

    name: ClassVar[str] = "cc_gopher"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = LanguageId.output_schema
    input_schema: ClassVar[pa.Schema] = LanguageId.output_schema

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_hash_ratio: float = 0.1
    max_ellipsis_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple[str, ...] = STOP_WORDS
    bullets: tuple[str, ...] = BULLETS
    max_duplicate_lines: float = 0.30
    max_duplicate_paragraphs: float = 0.30
    max_duplicate_line_chars: float = 0.20
    max_duplicate_paragraph_chars: float = 0.20
    top_ngram_fractions: tuple[tuple[int, float], ...] = TOP_NGRAM_FRACTIONS
    duplicate_ngram_fractions: tuple[tuple[int, float], ...] = DUPLICATE_NGRAM_FRACTIONS

    def rules(self) -> list[Rule]:
        """Every rule, in the order of the module docstring."""
        return [
            *self._size_rules(),
            *self._symbol_rules(),
            *self._vocabulary_rules(),
            *self._duplicate_rules(),
            *self._ngram_rules(),
        ]

    def _size_rules(self) -> list[Rule]:
        """Rules 1-4: word count and mean word length."""
        return [
            Rule("gopher_too_few_words", word_count, minimum=self.min_words),
            Rule("gopher_too_many_words", word_count, maximum=self.max_words),
            Rule("gopher_short_words", mean_word_length, minimum=self.min_mean_word_length),
            Rule("gopher_long_words", mean_word_length, maximum=self.max_mean_word_length),
        ]

    def _symbol_rules(self) -> list[Rule]:
        """Rules 5-8: hashes and ellipses per word, bullet and ellipsis lines."""
        hashes = partial(symbols_per_word, symbols=HASH)
        ellipses = partial(symbols_per_word, symbols=ELLIPSES)
        bullets = partial(bullet_line_share, bullets=self.bullets)
        return [
            Rule("gopher_hash_ratio", hashes, maximum=self.max_hash_ratio),
            Rule("gopher_ellipsis_ratio", ellipses, maximum=self.max_ellipsis_ratio),
            Rule("gopher_bullet_lines", bullets, maximum=self.max_bullet_lines),
            Rule("gopher_ellipsis_lines", ellipsis_line_share, maximum=self.max_ellipsis_lines),
        ]

    def _vocabulary_rules(self) -> list[Rule]:
        """Rules 9-10: alphabetic words and stop words."""
        stop_words = partial(stop_word_count, stop_words=self.stop_words)
        return [
            Rule("gopher_non_alpha_words", alpha_word_share, minimum=self.min_alpha_words),
            Rule("gopher_few_stop_words", stop_words, minimum=self.min_stop_words),
        ]

    def _duplicate_rules(self) -> list[Rule]:
        """Rules 11-14: duplicate lines and paragraphs, by count, then by characters."""
        return [
            Rule(
                "gopher_duplicate_line_fraction",
                duplicate_line_share,
                maximum=self.max_duplicate_lines,
            ),
            Rule(
                "gopher_duplicate_paragraph_fraction",
                duplicate_paragraph_share,
                maximum=self.max_duplicate_paragraphs,
            ),
            Rule(
                "gopher_duplicate_line_chars",
                duplicate_line_chars,
                maximum=self.max_duplicate_line_chars,
            ),
            Rule(
                "gopher_duplicate_paragraph_chars",
                duplicate_paragraph_chars,
                maximum=self.max_duplicate_paragraph_chars,
            ),
        ]

    def _ngram_rules(self) -> list[Rule]:
        """Rules 15-16: the top n-grams, then the duplicate n-grams, in table order."""
        top = [
            Rule(f"gopher_top_{n}gram", partial(top_ngram_share, n=n), maximum=limit)
            for n, limit in self.top_ngram_fractions
        ]
        duplicate = [
            Rule(f"gopher_duplicate_{n}gram", partial(duplicate_ngram_share, n=n), maximum=limit)
            for n, limit in self.duplicate_ngram_fractions
        ]
        return top + duplicate

    def failures(self, text: str) -> list[str]:
        """Every rule `text` fails, in order (the stage drops with the first)."""
        units = Units(text)
        return [rule.reason for rule in self.rules() if rule.fails(units)]

    def reason(self, text: str, rules: Sequence[Rule] | None = None) -> str:
        """The first rule `text` fails, "" when it passes them all."""
        units = Units(text)
        return next((rule.reason for rule in rules or self.rules() if rule.fails(units)), "")

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        return ShardOutput.concat(self.process_batches(shard, storage))

    def process_batches(self, shard: ShardInput, storage: Storage) -> Iterator[ShardOutput]:
        for table in iter_shard(self, shard, storage, None, _BATCH):
            yield self._output(table)

    def _output(self, table: pa.Table) -> ShardOutput:
        rules = self.rules()
        reasons = [self.reason(text, rules) for text in table.column("text").to_pylist()]
        keep = pa.array([not r for r in reasons], pa.bool_())
        dropped = drop_rows(table.filter(pc.invert(keep)), self.name, [r for r in reasons if r])
        return ShardOutput(n_in=table.num_rows, kept=table.filter(keep), dropped=dropped)
