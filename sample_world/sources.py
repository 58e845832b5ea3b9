"""Choose the source documents: which become crawl pages, which become Wikipedia articles.

The crawl is made of the handbook, the Python docs and the translated man pages; the Wikipedia
sample of Debian Reference sections. Keeping the two disjoint means a perplexity model trained on
the Wikipedia sample has not seen the crawl pages it scores. Choices depend only on the sorted
file lists and a seeded ``random.Random``, never on the file system's order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sample_world.debian import HANDBOOK_LOCALES, MAN_LANGS, REFERENCE_LANGS, Package
from sample_world.lang import detect
from sample_world.sites import html_to_text, render_doc
from sample_world.text import Doc, handbook_doc, man_doc, python_doc, reference_sections

# How many good documents to take from each source (None: all good ones).
PYTHON_PAGES = 400
MAN_PAGES = {"fr": None, "de": 400, "es": None}
WIKI_ARTICLES = 120
MAX_IMAGE_BYTES = 60_000  # keeps the non-HTML captures small


@dataclass
class Corpus:
    """Everything the crawl and the wiki sample are built from."""

    crawl: list[Doc] = field(default_factory=list)  # in a deterministic order
    wiki: dict[str, list[Doc]] = field(default_factory=dict)  # lang -> Debian Reference sections
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (url, PNG bytes)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count, for the README


def _min_chars(lang: str) -> int:
    # A kana/kanji character carries about as much as three Latin ones.
    return 250 if lang == "ja" else 600


def good_page(doc: Doc | None, corpus: Corpus) -> bool:
    """A document becomes a ``page`` capture only if it is whole enough and its final page
    (boilerplate included) is still recognisably in its language."""
    if doc is None:
        reason = "not a man(7) page (mdoc or .so alias)"
        corpus.rejected[reason] = corpus.rejected.get(reason, 0) + 1
        return False
    reason = None
    if len(doc.paragraphs) < 2 or doc.text_len < _min_chars(doc.lang):
        reason = "too little text in its language"
    elif doc.dropped_blocks > 2 * len(doc.paragraphs):
        reason = "mostly untranslated"
    else:
        text = html_to_text(render_doc(doc).encode("utf-8")).decode("utf-8")
        best, _ = detect(text.replace("\n", " "))
        if best != doc.lang:
            reason = "page language check failed"
    if reason:
        corpus.rejected[reason] = corpus.rejected.get(reason, 0) + 1
        return False
    return True


def _take(
    candidates: list[Path],
    parse: Callable[[Path], Doc | None],
    quota: int | None,
    rng: random.Random,
    corpus: Corpus,
) -> list[Doc]:
    """Parse candidates in a seeded order until ``quota`` good documents are found."""
    order = sorted(candidates)
    rng.shuffle(order)
    out: list[Doc] = []
    for path in order:
        if quota is not None and len(out) >= quota:
            break
        doc = parse(path)
        if good_page(doc, corpus):
            out.append(doc)
    return out


def collect(
    packages: dict[str, Package], rng: random.Random, max_pages: int | None = None
) -> Corpus:
    """Read the unpacked packages and pick the documents of the sample world.

    ``max_pages`` shrinks every source's quota (12 sources) for small test worlds.
    """
    corpus = Corpus()
    per_source = None if max_pages is None else max(8, -(-max_pages // 12))

    def quota(q: int | None) -> int | None:
        if per_source is None:
            return q
        return per_source if q is None else min(q, per_source)

    hb = packages["debian-handbook"].root / "usr/share/doc/debian-handbook/html"
    for locale in HANDBOOK_LOCALES:
        lang = locale.split("-")[0]
        corpus.crawl += _take(
            list((hb / locale).glob("*.html")),
            lambda p, lang=lang: handbook_doc(p, lang),
            quota(None),
            rng,
            corpus,
        )

    py = packages["python3.11-doc"].root / "usr/share/doc/python3.11/html"
    corpus.crawl += _take(
        [p for p in py.rglob("*.html") if not p.name.startswith(("genindex", "py-modindex"))],
        lambda p: python_doc(p, p.relative_to(py).as_posix()),
        quota(PYTHON_PAGES),
        rng,
        corpus,
    )
    corpus.images = [
        (f"https://docs.python.org/3.11/_images/{p.name}", p.read_bytes())
        for p in sorted((py / "_images").glob("*.png"))
    ]
    corpus.images += [
        (f"https://debian-handbook.info/browse/en-US/stable/images/{p.name}", p.read_bytes())
        for p in sorted((hb / "en-US" / "images").glob("*.png"))
        if p.stat().st_size <= MAX_IMAGE_BYTES
    ]

    for lang in MAN_LANGS:
        name = f"manpages-{lang}"
        man = packages[name].root / "usr/share/man" / lang
        corpus.crawl += _take(
            list(man.glob("man*/*.gz")),
            lambda p, lang=lang, name=name: man_doc(p, lang, name),
            quota(MAN_PAGES[lang]),
            rng,
            corpus,
        )

    for lang in REFERENCE_LANGS:
        name = f"debian-reference-{lang}"
        ref = packages[name].root / "usr/share/debian-reference"
        sections = [
            d
            for p in sorted(ref.glob(f"ch*.{lang}.html"))
            for d in reference_sections(p, lang, name)
            if len(d.paragraphs) >= 2 and d.text_len >= 400
        ]
        n_articles = WIKI_ARTICLES if max_pages is None else min(WIKI_ARTICLES, 2 * per_source)
        picked = rng.sample(sections, min(n_articles, len(sections)))
        corpus.wiki[lang] = sorted(picked, key=lambda d: [int(x) for x in d.key.split(".")])
    return corpus
