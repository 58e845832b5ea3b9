"""What a copy of the scale world changes in a document: its text edits and its names.

Every copy decision is drawn from its own ``random.Random`` seeded by (seed, source, item, copy),
never from a shared stream, so a copy's text does not depend on which worker wrote it or in
which order: the world is the same bytes for any number of workers.

A copy is ``exact`` (the original text, so exact dedup has work) or, for a seeded fraction,
``near``: one or two small edits, each a word replaced by another word of the same document or a
sentence dropped, so the copy stays MinHash-close to its original and to no other document (the
new word comes from the document itself). Only plain prose is edited: a sentence with markup
characters (HTML, wikitext, LaTeX, XML entities), a protected line (planted boilerplate that line
dedup must still see repeated) or a sentence that is not unique in every text it must be found
in (the WET text and its HTML payload) is never touched, so an edit means the same change
wherever it is applied. A ``near`` copy with nothing editable stays ``exact``.

New names carry the copy's tag (``copy-0003``) or, for numbered files, a number past the
sample's (``numbered_name``), so copy ``k`` of anything is never the name of another copy.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

ORIGINAL, EXACT, NEAR = "original", "exact", "near"
EDIT_FRACTION = 0.3  # of copies k > 0 that get edits

_SENTENCE_END = re.compile(r"(?<=[.!?;:。])\s+")
_WORD = re.compile(r"\b[^\W\d_]{5,}\b")
# A sentence holding one of these may be markup (or an escape of it): never edited.
_MARKUP = frozenset("<>&\"'[]{}|\\$%=#*`")
_BRACKETS = (("[", "]"), ("{", "}"), ("<", ">"), ("&lt;", "&gt;"))
_MIN_WORDS = 6
_NUMBERED = re.compile(r"^(?P<prefix>.+-)(?P<number>\d+)(?P<suffix>\..+)$")


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (unique wherever the edit applies) by ``new``."""

    kind: str  # "substitute" or "drop"
    old: str
    new: str


def _unique(old: str, texts: Sequence[str | bytes]) -> bool:
    return all(t.count(old.encode("utf-8") if isinstance(t, bytes) else old) == 1 for t in texts)


def _plain(sentence: str) -> bool:
    return len(sentence.split()) >= _MIN_WORDS and not _MARKUP.intersection(sentence)


def _outside_markup(before: str) -> bool:
    """Whether the text before a sentence in its line closes every bracket it opens: a plain
    sentence inside a link, a template or a tag (a citation's title) is not plain prose."""
    return all(before.count(a) == before.count(b) for a, b in _BRACKETS)


def _editable(sentences: list[str], j: int) -> bool:
    return _plain(sentences[j]) and _outside_markup(" ".join(sentences[:j]))


def _candidates(text: str, protected: frozenset[str]) -> list[list[str]]:
    """Per editable line, its sentences (a line is editable when it is not protected)."""
    lines = []
    for line in text.split("\n"):
        if line.strip() and line.strip() not in protected:
            sentences = _SENTENCE_END.split(line.strip())
            if any(_editable(sentences, j) for j in range(len(sentences))):
                lines.append(sentences)
    return lines


def _dropped(sentences: list[str], j: int) -> str:
    """What removing sentence ``j`` takes out of its line: the sentence and one space."""
    return sentences[j] + " " if j + 1 < len(sentences) else " " + sentences[j]


def _substitute(sentence: str, vocabulary: list[str], rng: random.Random) -> str | None:
    words = list(_WORD.finditer(sentence))
    if not words:
        return None
    m = rng.choice(words)
    choices = [w for w in vocabulary if w != m.group(0)]
    if not choices:
        return None
    return sentence[: m.start()] + rng.choice(choices) + sentence[m.end() :]


def _edit_line(
    sentences: list[str], vocabulary: list[str], rng: random.Random, texts: Sequence[str | bytes]
) -> Edit | None:
    """One edit in one line: a sentence dropped (lines of two or more) or a word replaced."""
    plain = [j for j in range(len(sentences)) if _editable(sentences, j)]
    j = rng.choice(plain)
    if len(sentences) >= 2 and rng.random() < 0.5:
        old = _dropped(sentences, j)
        if _unique(old, texts):
            return Edit("drop", old, "")
    changed = _substitute(sentences[j], vocabulary, rng)
    if changed is not None and _unique(sentences[j], texts):
        return Edit("substitute", sentences[j], changed)
    return None


def plan_edits(
    text: str,
    rng: random.Random,
    protected: frozenset[str] = frozenset(),
    also_in: Sequence[str | bytes] = (),
) -> list[Edit]:
    """One or two edits of ``text`` in distinct lines; each edit's ``old`` is found exactly once
    in ``text`` and in every one of ``also_in``. Empty when nothing is safely editable."""
    lines = _candidates(text, protected)
    if not lines:
        return []
    vocabulary = sorted(set(_WORD.findall(text)))
    wanted = 1 + (rng.random() < 0.5)
    texts = (text, *also_in)
    edits = []
    for sentences in rng.sample(lines, min(wanted, len(lines))):
        edit = _edit_line(sentences, vocabulary, rng, texts)
        if edit is not None:
            edits.append(edit)
    return edits


def apply_text(text: str, edits: Sequence[Edit]) -> str:
    for e in edits:
        text = text.replace(e.old, e.new, 1)
    return text


def apply_bytes(data: bytes, edits: Sequence[Edit]) -> bytes:
    for e in edits:
        data = data.replace(e.old.encode("utf-8"), e.new.encode("utf-8"), 1)
    return data


@dataclass(frozen=True)
class Copies:
    """How copies are drawn: the seed and the fraction of copies k > 0 that get edits."""

    seed: int
    fraction: float = EDIT_FRACTION

    def edits(
        self,
        source: str,
        item: str,
        copy: int,
        text: str,
        protected: frozenset[str] = frozenset(),
        also_in: Sequence[str | bytes] = (),
    ) -> list[Edit]:
        """Copy ``copy`` of ``item``'s edits (none: an exact copy, or the original at 0), from
        the copy's own random stream (seeded by seed, source, item and copy)."""
        rng = random.Random(f"{self.seed}:scale:{source}:{item}:{copy}")
        if copy == 0 or rng.random() >= self.fraction:
            return []
        return plan_edits(text, rng, protected, also_in)


def edit_kind(edits: Sequence[Edit], copy: int) -> str:
    """The ground truth's name for what the copy is."""
    if copy == 0:
        return ORIGINAL
    return NEAR if edits else EXACT


def copy_tag(copy: int) -> str:
    """The mark a copy's new names and URLs carry: ``copy-0003``."""
    return f"copy-{copy:04d}"


def numbered_name(name: str, copy: int, count: int) -> str:
    """``CC-SAMPLE-00005.warc.gz`` (one of ``count``) -> copy ``copy``'s name, numbered
    ``copy * count + 5``: the same pattern, and the same parity when ``count`` is even."""
    m = _NUMBERED.match(name)
    if m is None:
        raise ValueError(f"not a numbered file name: {name}")
    number = copy * count + int(m["number"])
    return f"{m['prefix']}{number:0{len(m['number'])}d}{m['suffix']}"
