"""`c4[crawl]`: the C4 heuristics (Raffel et al. 2020) on the language-identified crawl.

Line and page rules follow the reference implementation (TFDS `c4_utils.clean_page`), in its
order, line by line, each line stripped:

1. a line with a word (whitespace-separated) longer than `max_word_length` is removed;
2. citation markers (`[1]`, `[edit]`, `[citation needed]`) are deleted from the line;
3. a line not ending in `.`, `!`, `?` or `"` (C4 keeps lines ending in a closing quote), or
   ending in an ellipsis `...`, is removed;
4. a line with fewer than `min_words_per_line` words is removed;
5. a line containing "lorem ipsum" (any case) drops the page;
6. a line containing "javascript" (any case) is removed;
7. a line containing "{" drops the page (C4's proxy for code);
8. a line containing one of `policy_phrases` (any case) is removed.

So, as in C4, "lorem ipsum" and "{" only drop a page when they sit in a line that survived
rules 1-4: a brace in a menu line without punctuation is removed with its line. A page is then
dropped when no line is left, with fewer than `min_sentences` sentences or `min_lines` lines,
when one of the bad words occurs, or when its language is not one of `languages` (C4 is an
English corpus; this rule comes first).

Span dedup: of every span of `span_sentences` consecutive sentences (numbered across the page's
kept lines) occurring more than once in the crawl, the first occurrence is kept (shard order,
then row, then position in the page) and every later one loses all of its sentences; a line
left without sentences disappears, a line that lost some is its remaining sentences joined by
one space. A page that then fails the sentence or line minimum is dropped (`c4_duplicate_spans`).
Only pages that pass every other rule take part, so a span is never lost because its first
occurrence sat in a dropped page. Bad words are checked before span dedup, unlike TFDS, for
the same reason.

Kept rows are relabelled `source = "c4"`: C4 is its own corpus in the mixture (paper Table 1)
although its pages come from the same crawl as `commoncrawl`. A row keeps the `id` of the crawl
page it was cleaned from, so the same page has the same id in both corpora.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.commoncrawl.exact_dedup import (
    BYTES_PER_PARTITION,
    PARTITION_HELP,
    first_occurrence_pass,
    first_occurrences,
)
from curation.commoncrawl.langid import LanguageId
from curation.core.documents import drop_rows
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, run_setting, state_field
from curation.core.storage import Storage

END_MARKS = (".", "!", "?", '"')
_ELLIPSIS = "..."
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# TFDS c4_utils._POLICY_SUBSTRINGS: phrases, not the bare word "cookie" (recipes keep theirs).
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# A sentence ends at . ! or ?, possibly followed by one closing quote or bracket, then space.
_SENTENCE_END = re.compile(r"([.!?][\"'”’»)\]]?)\s+")
# Rules of the line loop that drop the whole page rather than the line.
_PAGE_RULES_IN_LINES = frozenset({"c4_lorem_ipsum", "c4_curly_brace"})
_EXAMPLES = 20


def split_sentences(line: str) -> list[str]:
    """Sentences of one line, split after terminal punctuation followed by whitespace.

    Simpler than C4's Punkt tokenizer: an abbreviation ("e.g. this") ends a sentence here, so
    on such text the sentence minimum is slightly easier to reach than in C4.
    """
    # Lines hold no newline, so one marks the boundaries: two C-level passes, no Python loop.
    return [s for s in _SENTENCE_END.sub("\\1\n", line).split("\n") if s]


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def span_hashes(sentences: Sequence[str], span: int) -> np.ndarray:
    """One uint64 per window of `span` consecutive sentences (whitespace normalized)."""
    keys = [" ".join(s.split()) for s in sentences]
    windows = ("\n".join(keys[i : i + span]) for i in range(len(keys) - span + 1))
    return np.array([_hash64(w) for w in windows], dtype=np.uint64)


def page_sentences(text: str) -> list[str]:
    return [s for line in text.split("\n") for s in split_sentences(line)]


def remove_sentences(text: str, removed: set[int]) -> tuple[list[str], int]:
    """The lines of `text` without the sentences numbered `removed` (across the page), and the
    number of sentences left. Untouched lines keep their exact text."""
    lines, index = [], 0
    for line in text.split("\n"):
        sentences = split_sentences(line)
        kept = [s for j, s in enumerate(sentences, index) if j not in removed]
        index += len(sentences)
        if len(kept) == len(sentences):
            lines.append(line)
        elif kept:
            lines.append(" ".join(kept))
    return lines, index - len(removed)


def read_bad_words(path: str) -> list[str]:
    """A bad-words file: UTF-8 text, one word or phrase per line (the LDNOOBW lists C4 used are
    in this format); surrounding whitespace is ignored, as are blank lines and lines starting
    with `#`."""
    with open(path, encoding="utf-8") as f:
        words = (line.strip() for line in f)
        return sorted({w for w in words if w and not w.startswith("#")})


@cache
def bad_words_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """Any of the words, case-insensitively, as a whole word: not inside a longer word, so
    "ass" does not match "class"; the words of a phrase may be separated by any whitespace."""
    if not words:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


SOURCE = "c4"


_CLEANED_SCHEMA = pa.schema(
    [("text", pa.string()), ("reason", pa.string()), ("n_spans", pa.int64())]
)


@dataclass(frozen=True)
class C4Filter(Stage):
    """C4's line and page heuristics and its repeated-span dedup; see the module docstring."""

    name: ClassVar[str] = "c4"
    version: ClassVar[str] = "2"
    output_schema: ClassVar[pa.Schema] = LanguageId.output_schema
    input_schema: ClassVar[pa.Schema] = LanguageId.output_schema

    languages: tuple[str, ...] = ("en",)  # empty: every language
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_sentences: int = 5
    min_lines: int = 3
    policy_phrases: tuple[str, ...] = POLICY_PHRASES
    bad_words_path: str = ""  # a local file, format in `read_bad_words`; empty: no rule
    span_sentences: int = 3
    bytes_per_partition: int = run_setting(BYTES_PER_PARTITION, help=PARTITION_HELP)
    workdir: str = state_field()
    # The words of `bad_words_path`, read once by `prepare` and shipped to the workers.
    bad_words: tuple[str, ...] = field(default=(), metadata={"config": False})

    def config(self) -> dict[str, Any]:
        """The fields, plus the bad words themselves: editing the list recomputes the stage."""
        words = "\n".join(self._read_bad_words())
        digest = hashlib.sha256(words.encode()).hexdigest() if words else ""
        return {**super().config(), "bad_words_sha256": digest}

    def _read_bad_words(self) -> tuple[str, ...]:
        return tuple(read_bad_words(self.bad_words_path)) if self.bad_words_path else ()

    def line_rule(self, line: str) -> tuple[str, str]:
        """The rule the stripped `line` breaks ("" for none) and the line without citation
        markers. Rule names starting with `c4_` drop the page."""
        if len(line) > self.max_word_length and any(
            len(word) > self.max_word_length for word in line.split()
        ):
            return "long_word", line
        line = _CITATION.sub("", line)
        if not line.endswith(END_MARKS) or line.endswith(_ELLIPSIS):
            return "no_terminal_punctuation", line
        if len(line.split()) < self.min_words_per_line:
            return "too_few_words", line
        lower = line.lower()
        if "lorem ipsum" in lower:
            return "c4_lorem_ipsum", line
        if "javascript" in lower:
            return "javascript", line
        if "{" in line:
            return "c4_curly_brace", line
        if any(phrase in lower for phrase in self.policy_phrases):
            return "policy_phrase", line
        return "", line

    def clean_page(
        self, text: str, language: str, lines: Counter[str], examples: Counter[str]
    ) -> tuple[str, str]:
        """The page's kept lines joined by newlines, and its drop reason ("" if kept). Counts
        each line's fate in `lines` and removed lines in `examples`."""
        if self.languages and language not in self.languages:
            return "", "c4_language"
        kept: list[str] = []
        for raw in text.splitlines():
            rule, line = self.line_rule(raw.strip())
            if rule in _PAGE_RULES_IN_LINES:
                return "", rule
            lines[rule or "kept"] += 1
            if rule:
                examples[f"{rule}: {line[:80]}"] += 1
            else:
                kept.append(line)
        n_sentences = sum(len(split_sentences(line)) for line in kept)
        cleaned = "\n".join(kept)
        if not kept:
            return "", "c4_empty_after_line_filter"
        return cleaned, self.size_reason(len(kept), n_sentences) or self.bad_words_reason(cleaned)

    def size_reason(self, n_lines: int, n_sentences: int) -> str:
        if n_sentences < self.min_sentences:
            return "c4_too_few_sentences"
        if n_lines < self.min_lines:
            return "c4_too_few_lines"
        return ""

    def bad_words_reason(self, text: str) -> str:
        pattern = bad_words_pattern(self.bad_words)
        return "c4_bad_words" if pattern is not None and pattern.search(text) else ""

    def prepare(self, inputs, storage, workdir, executor) -> C4Filter:
        ready = dataclasses.replace(self, workdir=workdir, bad_words=self._read_bad_words())
        first_occurrence_pass(
            inputs, storage, workdir, executor, ready.shard_keys, self.bytes_per_partition
        )
        return ready

    def shard_keys(self, shard: ShardInput, storage: Storage, workdir: str) -> np.ndarray:
        """Map step of the global pass: clean every page of the shard (saved for `process`)
        and return the hashes of the spans of the pages that passed, in row and span order."""
        table = read_shard(self, shard, storage, ["text", "language"])
        lines, examples = Counter(), Counter()
        texts, reasons, hashes = [], [], []
        for text, language in zip(
            table.column("text").to_pylist(), table.column("language").to_pylist(), strict=True
        ):
            cleaned, reason = self.clean_page(text, language, lines, examples)
            texts.append(cleaned)
            reasons.append(reason)
            sentences = [] if reason else page_sentences(cleaned)
            hashes.append(span_hashes(sentences, self.span_sentences))
        histograms = {"lines": lines, "line_examples": dict(examples.most_common(_EXAMPLES))}
        cleaned_table = pa.table(
            {"text": texts, "reason": reasons, "n_spans": [len(h) for h in hashes]},
            schema=_CLEANED_SCHEMA,  # typed: a shard may have no rows
        ).replace_schema_metadata({"histograms": json.dumps(histograms)})
        pq.write_table(cleaned_table, _cleaned_path(workdir, shard), filesystem=storage.fs)
        return np.concatenate(hashes) if hashes else np.array([], dtype=np.uint64)

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
        cleaned = pq.read_table(_cleaned_path(self.workdir, shard), filesystem=storage.fs)
        repeated = self._repeated_spans(storage, shard, cleaned.column("n_spans").to_numpy())
        sentences_removed, sentence_examples = Counter(), Counter()
        texts, reasons = [], []
        for row, (text, reason) in enumerate(
            zip(
                cleaned.column("text").to_pylist(),
                cleaned.column("reason").to_pylist(),
                strict=True,
            )
        ):
            if not reason and row in repeated:
                removed = {s + k for s in repeated[row] for k in range(self.span_sentences)}
                sentences = page_sentences(text)
                sentence_examples.update(sentences[i][:80] for i in removed)
                sentences_removed["repeated_span"] += len(removed)
                lines, n_sentences = remove_sentences(text, removed)
                text = "\n".join(lines)
                if self.size_reason(len(lines), n_sentences):
                    reason = "c4_duplicate_spans"
            texts.append(text)
            reasons.append(reason)
        histograms = json.loads(cleaned.schema.metadata[b"histograms"])
        return _shard_output(
            self.name,
            table,
            texts,
            reasons,
            {
                "lines": Counter(histograms["lines"]),
                "line_examples": Counter(histograms["line_examples"]),
                "sentences_removed": sentences_removed,
                "sentence_examples": Counter(dict(sentence_examples.most_common(_EXAMPLES))),
            },
        )

    def _repeated_spans(
        self, storage: Storage, shard: ShardInput, n_spans: np.ndarray
    ) -> dict[int, list[int]]:
        """Row -> start positions of its spans whose first occurrence is elsewhere. The keys
        of the global pass are every page's spans in row order, `n_spans[row]` of them."""
        rows = np.repeat(np.arange(len(n_spans)), n_spans)
        starts = np.arange(len(rows)) - np.repeat(np.cumsum(n_spans) - n_spans, n_spans)
        later = ~first_occurrences(storage, self.workdir, shard)
        repeated: dict[int, list[int]] = {}
        for row, start in zip(rows[later].tolist(), starts[later].tolist(), strict=True):
            repeated.setdefault(row, []).append(start)
        return repeated


def _shard_output(
    stage: str, table: pa.Table, texts: list[str], reasons: list[str], histograms: dict
) -> ShardOutput:
    """Kept rows with their cleaned text; dropped rows as they came in, with their reason."""
    keep = pa.array([not r for r in reasons], pa.bool_())
    dropped = table.filter(pc.invert(keep))
    cleaned = table.set_column(
        table.schema.get_field_index("text"), "text", pa.array(texts, pa.string())
    ).set_column(
        table.schema.get_field_index("source"),
        "source",
        pa.array([SOURCE] * len(texts), pa.string()),
    )
    return ShardOutput(
        n_in=table.num_rows,
        kept=cleaned.filter(keep),
        dropped=drop_rows(dropped, stage, [r for r in reasons if r]),
        histograms=histograms,
    )


def _cleaned_path(workdir: str, shard: ShardInput) -> str:
    return posixpath.join(workdir, f"{shard.name}.c4.parquet")
