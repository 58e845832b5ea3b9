"""The sample's books: Gutenberg-style and Books3-style text files with planted near-duplicates.

Bodies are real long text from the Debian packages the sample already uses: the Debian
Reference in four languages (chapters grouped into five "parts" per language) and the Python
HOWTOs (grouped into five English books). Every book ends with its package's short appendix, a
shared boilerplate-like chapter that must not make distinct books duplicates. One more English
book is a selection of two chapters found in two other books, so it overlaps each of them
partially (well under 90%).

Planted for the book-level dedup: for some books, other editions of the same body with new
front matter, a rewritten preface and a few small edits (over 90% overlap), most of them in the
other collection; one Gutenberg file without START/END markers, one with an empty body and one
Books3 file that is not UTF-8. `books.jsonl` holds the ground truth: the cluster of every book.
The Gutenberg wrapper (preamble, markers, license section) is written here in the Gutenberg
style; it is not the Project Gutenberg license text.
"""

from __future__ import annotations

import html
import json
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from sample_world.debian import PACKAGES, REFERENCE_LANGS, Package, fetch_package
from sample_world.text import parse_html_blocks

REFERENCE_PARTS = (
    ("Part I", ("pr01", "ch01")),
    ("Part II", ("ch02", "ch03")),
    ("Part III", ("ch04", "ch05", "ch06", "ch07", "ch08")),
    ("Part IV", ("ch09", "ch10")),
    ("Part V", ("ch11", "ch12")),
)
SELECTION = ("Selected Chapters", ("ch03", "ch09"))  # English; overlaps Parts II and IV
PYTHON_BOOKS = (
    ("Logging", ("logging", "logging-cookbook")),
    ("Functional Programming and Regular Expressions", ("functional", "regex")),
    ("Argument Clinic", ("clinic",)),
    ("Text, Descriptors and Enumerations", ("unicode", "descriptor", "enum")),
    ("Sockets, URLs, Curses and Porting", ("sockets", "urllib2", "curses", "pyporting")),
)
PYTHON_APPENDIX = ("about", "bugs")
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
N_EDITION_CLUSTERS = 6
N_THIRD_EDITIONS = 2
SMALL_EDITS = 40
REFERENCE_SKIP = {"screen", "programlisting", "toc", "navheader", "navfooter", "table"}
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Work:
    """A book's content before it is given front matter and a collection's file format."""

    cluster: str
    title: str
    author: str
    language: str
    body: str
    package: str


@dataclass(frozen=True)
class BookFile:
    """One file to write, with its ground-truth row."""

    path: str  # relative to out_dir
    data: bytes
    title: str
    cluster: str | None  # None for a book the stage must quarantine
    language: str
    expected_drop: str | None = None  # the quarantine reason, for those


def _chapter(path: Path, python: bool) -> str:
    """Headings and paragraphs of one HTML page as plain text, one blank line between blocks
    (code listings and tables left out, as a book's prose is what the dedup compares)."""
    raw = path.read_text(encoding="utf-8")
    if python:
        start = max(raw.find('<div class="body" role="main">'), 0)
        end = raw.find('<div class="sphinxsidebar"', start)
        raw = raw[start : end if end > 0 else len(raw)]
    skip = {"highlight", "headerlink"} if python else REFERENCE_SKIP
    _, blocks = parse_html_blocks(raw, skip_classes=skip)
    texts = (b.text.replace("\u00b6", "").strip() for b in blocks)
    return "\n\n".join(t for t in texts if t)


def _page_title(path: Path) -> str:
    m = re.search(r"<title>(.*?)</title>", path.read_text(encoding="utf-8"), re.DOTALL)
    return html.unescape(m.group(1)).strip() if m else path.stem


def reference_works(root: Path, lang: str, package: str) -> list[Work]:
    """The Debian Reference of one language as five books (plus the English selection)."""
    ref = root / "usr/share/debian-reference"
    name = _page_title(ref / f"index.{lang}.html")
    appendix = _chapter(ref / f"apa.{lang}.html", python=False)
    parts = [*REFERENCE_PARTS, *([SELECTION] if lang == "en" else [])]
    return [
        Work(
            cluster=f"debian-reference-{lang}-{_slug(part)}",
            title=f"{name}, {part}",
            author="Osamu Aoki",
            language=lang,
            body="\n\n".join([*(_chapter(ref / f"{c}.{lang}.html", False) for c in chapters)])
            + f"\n\n{appendix}",
            package=package,
        )
        for part, chapters in parts
    ]


def python_works(root: Path, package: str) -> list[Work]:
    """Five English books from the Python HOWTOs, each with the docs' "about" appendix."""
    docs = root / "usr/share/doc/python3.11/html"
    appendix = "\n\n".join(_chapter(docs / f"{p}.html", True) for p in PYTHON_APPENDIX)
    return [
        Work(
            cluster=f"python-howto-{_slug(title)}",
            title=f"Python HOWTOs: {title}",
            author="The Python Software Foundation",
            language="en",
            body="\n\n".join(_chapter(docs / "howto" / f"{p}.html", True) for p in pages)
            + f"\n\n{appendix}",
            package=package,
        )
        for title, pages in PYTHON_BOOKS
    ]


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG.sub("-", ascii_text.lower()).strip("-")


def new_edition(work: Work, number: int, rng: random.Random) -> Work:
    """The same book as another edition: a rewritten first paragraph (the preface) and a few
    words swapped in random paragraphs, far under the 10% that would make it another book."""
    paragraphs = work.body.split("\n\n")
    paragraphs[0] = (
        f"Preface to edition {number}. This edition follows the text of the previous one; "
        f"a few passages were corrected and the wording of some sentences was improved."
    )
    for i in rng.sample(range(1, len(paragraphs)), min(SMALL_EDITS, len(paragraphs) - 1)):
        words = paragraphs[i].split(" ")
        if len(words) > 3:
            j = rng.randrange(len(words) - 1)
            words[j], words[j + 1] = words[j + 1], words[j]
        paragraphs[i] = " ".join(words)
    return replace(work, title=f"{work.title} (edition {number})", body="\n\n".join(paragraphs))


def gutenberg_text(work: Work, number: int, release: str, markers: bool = True) -> str:
    """The book wrapped as a Project Gutenberg plain-text ebook: preamble with the metadata
    fields, START line, title page (none for an empty body) and body, END line and the
    license section."""
    title = work.title
    upper = title.upper()
    preamble = (
        f"The Project Gutenberg eBook of {title}\n\n"
        "This ebook may be used by anyone, anywhere in the United States and in most other\n"
        "countries, free of charge and with hardly any restriction. You may copy it, give it\n"
        "away or re-use it under the Project Gutenberg License at the end of this file or\n"
        "online at www.gutenberg.org. Outside the United States, check the laws of your\n"
        "country before using this eBook.\n\n"
        f"Title: {title}\n\n"
        f"Author: {work.author}\n\n"
        f"Release date: {release} [eBook #{number}]\n\n"
        f"Language: {LANGUAGE_NAMES[work.language]}\n\n"
        "Credits: Produced from the Debian package sources by the sample builder\n\n\n"
    )
    title_page = f"{upper}\n\nBY {work.author.upper()}\n\n\n" if work.body else ""
    if not markers:
        return preamble + title_page + work.body + "\n"
    return (
        f"{preamble}*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n\n"
        f"{title_page}{work.body}\n\n\n"
        f"*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n"
        f"{GUTENBERG_LICENSE}"
    )


GUTENBERG_LICENSE = """\
Updated editions will replace this one; the old editions will be renamed.

Creating the works from print editions not protected by U.S. copyright law means that no one
owns a United States copyright in these works, so the Foundation (and you!) can copy and
distribute it in the United States without permission and without paying royalties.

START: FULL LICENSE

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

To protect the Project Gutenberg mission of promoting the free distribution of electronic
works, by using or distributing this work (or any other work associated in any way with the
phrase "Project Gutenberg"), you agree to comply with all the terms of the Full Project
Gutenberg License available with this file or online at www.gutenberg.org/license.

Section 1. General Terms of Use and Redistributing Project Gutenberg electronic works

1.A. By reading or using any part of this Project Gutenberg electronic work, you indicate
that you have read and accept all the terms of this license. If you do not agree, you must
stop using the work and destroy all copies of it in your possession.

1.B. "Project Gutenberg" is a registered trademark. It may only be used on or associated in
any way with an electronic work by people who agree to be bound by the terms of this
agreement.

Section 2. Information about the Mission of Project Gutenberg

Project Gutenberg is synonymous with the free distribution of electronic works in formats
readable by the widest variety of computers, including obsolete, old, middle-aged and new
computers. It exists because of the efforts of hundreds of volunteers and donations.

Section 5. General Information About Project Gutenberg electronic works

Most people start at our website which has the main PG search facility: www.gutenberg.org.
This website includes information about Project Gutenberg, including how to make donations
and how to subscribe to our email newsletter to hear about new eBooks.
"""


def books3_text(work: Work, year: int) -> str:
    """The book as Books3 has it: plain text starting with the title and copyright page."""
    return (
        f"{work.title}\n{work.author}\n\n"
        f"Copyright © {year} {work.author}. All rights reserved.\n"
        f"First published {year}.\n\n{work.body}\n"
    )


@dataclass
class _Writer:
    """Hands out file names and release data from one seeded generator."""

    rng: random.Random
    numbers: list[int]

    def gutenberg(self, work: Work, markers: bool = True) -> BookFile:
        number = self.numbers.pop()
        release = f"{self.rng.choice(['March', 'June', 'October'])} {self.rng.randint(1, 28)}, "
        release += str(self.rng.randint(1995, 2023))
        text = gutenberg_text(work, number, release, markers)
        return BookFile(
            f"gutenberg/pg{number:05d}.txt",
            text.encode(),
            work.title,
            work.cluster,
            work.language,
        )

    def books3(self, work: Work) -> BookFile:
        text = books3_text(work, self.rng.randint(2005, 2020))
        return BookFile(
            f"books3/{_slug(work.title)}.txt",
            text.encode(),
            work.title,
            work.cluster,
            work.language,
        )

    def write(self, work: Work, gutenberg: bool) -> BookFile:
        return self.gutenberg(work) if gutenberg else self.books3(work)


def plan_books(works: list[Work], seed: int) -> list[BookFile]:
    """Every file of the sample, deterministic in `seed`: each work once, in a collection
    drawn at random; its other editions alternate collections, so most clusters span both."""
    rng = random.Random(seed)
    writer = _Writer(rng, rng.sample(range(10000, 70000), len(works) + N_EDITION_CLUSTERS * 2 + 2))
    in_gutenberg = {w.cluster: rng.random() < 0.5 for w in works}
    with_editions = rng.sample(works, N_EDITION_CLUSTERS)
    singles = [w for w in works if w not in with_editions]
    unmarked = rng.choice(singles)
    files = [writer.write(w, in_gutenberg[w.cluster]) for w in singles if w is not unmarked]
    files.append(writer.gutenberg(unmarked, markers=False))
    for k, work in enumerate(with_editions):
        editions = [work, new_edition(work, 2, rng)]
        if k < N_THIRD_EDITIONS:
            editions.append(new_edition(work, 3, rng))
        for i, edition in enumerate(editions):
            files.append(writer.write(edition, in_gutenberg[work.cluster] ^ (i % 2 == 1)))
    files += _quarantined(writer, works[0])
    return files


def _quarantined(writer: _Writer, work: Work) -> list[BookFile]:
    """A Gutenberg file with nothing between its markers, and a Books3 file in Latin-1."""
    empty = writer.gutenberg(replace(work, title="Notes", body=""))
    latin = replace(work, title="Encodage", body="Référence en français, édition déjà vue.")
    invalid = writer.books3(latin)
    return [
        replace(empty, cluster=None, expected_drop="empty_book"),
        replace(
            invalid,
            data=invalid.data.decode().encode("latin-1"),
            cluster=None,
            expected_drop="invalid_encoding",
        ),
    ]


def _package(name: str, cache_dir: Path) -> Package:
    return fetch_package(next(spec for spec in PACKAGES if spec.name == name), cache_dir)


def build_books(out_dir: Path, cache_dir: Path, seed: int) -> dict:
    """Write `gutenberg/`, `books3/` and `books.jsonl` under `out_dir`; return counts and
    provenance for the sample README."""
    works: list[Work] = []
    versions = {}
    for lang in REFERENCE_LANGS:
        package = _package(f"debian-reference-{lang}", cache_dir)
        works += reference_works(package.root, lang, package.name)
        versions[package.name] = package.version
    python = _package("python3.11-doc", cache_dir)
    works += python_works(python.root, python.name)
    versions[python.name] = python.version

    files = plan_books(works, seed)
    for collection in ("gutenberg", "books3"):
        (out_dir / collection).mkdir(parents=True, exist_ok=True)
    rows = []
    for book in files:
        (out_dir / book.path).write_bytes(book.data)
        rows.append(
            {
                "file": book.path,
                "title": book.title,
                "cluster": book.cluster,
                "language": book.language,
                "expected_drop": book.expected_drop,
            }
        )
    with (out_dir / "books.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    return {
        "books": len(files),
        "gutenberg": sum(b.path.startswith("gutenberg/") for b in files),
        "books3": sum(b.path.startswith("books3/") for b in files),
        "bytes": sum(len(b.data) for b in files),
        "edition_clusters": N_EDITION_CLUSTERS,
        "expected_drops": dict(
            sorted(Counter(b.expected_drop for b in files if b.expected_drop).items())
        ),
        "languages": dict(sorted(Counter(b.language for b in files).items())),
        "packages": versions,
    }
