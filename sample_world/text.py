"""Pull real documents (title, headings, paragraphs) out of the HTML and troff sources.

The crawl and the Wikipedia sample are rebuilt from these documents, so extraction only needs to
be good enough to give whole, readable pages of one language: code listings and navigation are
left behind, paragraphs that are not in the page's language (untranslated leftovers in a partly
translated handbook) are dropped and counted.
"""

from __future__ import annotations

import gzip
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from sample_world.lang import detect, is_language

MAX_BLOCKS = 60  # keep pages whole but bounded, so the sample stays small
PY_MAX_CHARS = 60_000


@dataclass(frozen=True)
class Block:
    """One block of a document: a heading (level 2-3) or a paragraph (level 0)."""

    text: str
    level: int = 0


@dataclass
class Doc:
    """A source document, before it becomes a crawl page or a wiki article."""

    source: str  # Debian package name
    lang: str  # ISO 639-1
    key: str  # stable identifier inside the source (relative path or man page name)
    title: str
    blocks: list[Block] = field(default_factory=list)
    dropped_blocks: int = 0  # paragraphs dropped because they were not in ``lang``
    parent: str = ""  # the chapter a section belongs to (Debian Reference)

    @property
    def paragraphs(self) -> list[str]:
        return [b.text for b in self.blocks if b.level == 0]

    @property
    def text_len(self) -> int:
        return sum(len(b.text) for b in self.blocks)


_WS = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


_DROP = re.compile(
    r"<!--.*?-->|<(script|style|pre|table|head)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE
)
_BLOCK_TAG = re.compile(
    r"<(/?)(div|p|h[1-6]|ul|ol|li|dl|dt|dd|blockquote|section|article|nav|footer|header|aside"
    r"|main|body|form)\b([^>]*)>",
    re.IGNORECASE,
)
_INLINE_TAG = re.compile(r"<[^>]*>")
_CLASS = re.compile(r"""class\s*=\s*["']([^"']*)["']""")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.DOTALL | re.IGNORECASE)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 3}


def _inline_text(raw: str) -> str:
    return _clean(html.unescape(_INLINE_TAG.sub("", raw)))


def parse_html_blocks(
    raw: str,
    para_tags: set[str] | None = None,
    para_classes: set[str] | None = None,
    skip_classes: set[str] | None = None,
) -> tuple[str, list[Block]]:
    """Return the <title> and the heading/paragraph blocks of an HTML page.

    A small regex scanner over block-level tags rather than ``html.parser``: the sources are
    machine-generated, well-formed XHTML, and this runs five times faster, which keeps the
    whole build within a minute. Code, tables and elements with a ``skip_classes`` class are
    left out; a capture nested in another (a list inside a paragraph) stays in the outer one.
    """
    para_tags = para_tags if para_tags is not None else {"p"}
    para_classes = para_classes or set()
    skip_classes = skip_classes or set()
    m = _TITLE.search(raw)
    title = _inline_text(m.group(1)) if m else ""
    body = _DROP.sub(" ", raw)
    blocks: list[Block] = []
    stack: list[tuple[str, str]] = []  # (tag, role): role is "skip", "capture" or ""
    skip = 0
    buf: list[str] | None = None
    level = 0
    pos = 0
    for tm in _BLOCK_TAG.finditer(body):
        if buf is not None and not skip:
            buf.append(body[pos : tm.start()])
        pos = tm.end()
        closing, tag, attrs = tm.group(1), tm.group(2).lower(), tm.group(3)
        if not closing:
            if attrs.endswith("/"):
                continue
            cm = _CLASS.search(attrs) if attrs else None
            classes = set(cm.group(1).split()) if cm else set()
            role = ""
            if classes & skip_classes:
                role = "skip"
                skip += 1
            elif buf is None and not skip:
                if tag in _HEADINGS:
                    role, buf, level = "capture", [], _HEADINGS[tag]
                elif tag in para_tags or classes & para_classes:
                    role, buf, level = "capture", [], 0
            stack.append((tag, role))
            continue
        # Pop up to the matching open tag (tolerates unclosed <p>, <li> and friends).
        if not any(t == tag for t, _ in stack):
            continue
        while stack:
            open_tag, role = stack.pop()
            if role == "skip":
                skip -= 1
            elif role == "capture" and buf is not None:
                text = _inline_text("".join(buf))
                if text:
                    blocks.append(Block(text, level))
                buf = None
            if open_tag == tag:
                break
    return title, blocks


def _keep_language(blocks: list[Block], lang: str, strict: bool = True) -> tuple[list[Block], int]:
    """Drop paragraphs that are not in ``lang``; headings follow the paragraphs they introduce.

    ``strict`` keeps only paragraphs confidently in ``lang`` (translations left partly in English);
    otherwise a paragraph goes only when it is confidently in another language, which keeps the
    short API sentences of an English-only source.
    """
    kept: list[Block] = []
    dropped = 0
    for b in blocks:
        best, conf = detect(b.text)
        other = best is not None and best != lang and conf >= 0.35
        if other or (b.level == 0 and strict and not is_language(b.text, lang)):
            dropped += 1
            continue
        kept.append(b)
    # A heading with no kept paragraph after it is noise.
    out: list[Block] = []
    for i, b in enumerate(kept):
        if b.level and (i + 1 == len(kept) or kept[i + 1].level):
            continue
        out.append(b)
    return out, dropped


def handbook_doc(path: Path, lang: str, source: str = "debian-handbook") -> Doc:
    """A debian-handbook (publican) page: paragraphs are ``div.para``, code is ``pre.screen``."""
    title, blocks = parse_html_blocks(
        path.read_text(encoding="utf-8"),
        para_tags=set(),
        para_classes={"para"},
        skip_classes={"docnav", "screen", "programlisting", "toc", "indexterm"},
    )
    blocks = [Block(b.text.replace("\u00a0", " "), b.level) for b in blocks if len(b.text) >= 2]
    # The page's own title comes back as its first heading: the <h1> shows it already.
    if blocks and blocks[0].level and blocks[0].text == title:
        blocks = blocks[1:]
    kept, dropped = _keep_language(blocks, lang)
    return Doc(source, lang, f"{path.parent.name}/{path.name}", title, kept[:MAX_BLOCKS], dropped)


def python_doc(path: Path, rel: str, source: str = "python3.11-doc") -> Doc:
    """A Sphinx page of the Python docs: ``<p>`` and headings, minus the ``¶`` permalinks."""
    raw = path.read_text(encoding="utf-8")
    title = _clean(raw[raw.find("<title>") + 7 : raw.find("</title>")])
    # Only the main column, and only its first part: MAX_BLOCKS are kept anyway, and the
    # library reference pages run to hundreds of kilobytes.
    start = max(raw.find('<div class="body" role="main">'), 0)
    end = raw.find('<div class="sphinxsidebar"', start)
    _, blocks = parse_html_blocks(
        raw[start : end if end > 0 else len(raw)][:PY_MAX_CHARS],
        para_tags={"p"},
        skip_classes={"highlight", "headerlink"},
    )
    title = re.sub(r"\s+\u2014 Python 3\.11\.\d+ documentation$", "", html.unescape(title))
    blocks = [Block(b.text.replace("\u00b6", "").strip(), b.level) for b in blocks]
    blocks = [b for b in blocks if b.text]
    if blocks and blocks[0].level == 1:
        blocks = blocks[1:]
    kept, dropped = _keep_language(blocks, "en", strict=False)
    return Doc(source, "en", rel, title, kept[:MAX_BLOCKS], dropped)


# --- troff ------------------------------------------------------------------------------------

_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_SPECIAL = {
    "\\(em": "\u2014",
    "\\(en": "\u2013",
    "\\(aq": "'",
    "\\(dq": '"',
    "\\(lq": "\u201c",
    "\\(rq": "\u201d",
    "\\(Fo": "\u00ab",
    "\\(Fc": "\u00bb",
    "\\(bu": "\u2022",
    "\\(co": "\u00a9",
    "\\(de": "\u00b0",
    "\\(mu": "\u00d7",
    "\\(rs": "\\",
    "\\(ti": "~",
    "\\(ha": "^",
    "\\(cq": "\u2019",
    "\\(oq": "\u2018",
    "\\*(lq": "\u201c",
    "\\*(rq": "\u201d",
    "\\*(Aq": "'",
    "\\-": "-",
    "\\ ": " ",
    "\\~": " ",
    "\\e": "\\",
    "\\&": "",
    "\\,": "",
    "\\/": "",
    "\\:": "",
    "\\%": "",
    "\\^": "",
    "\\|": "",
    "\\c": "",
}
_SPECIAL_RE = re.compile("|".join(re.escape(k) for k in sorted(_SPECIAL, key=len, reverse=True)))
_OTHER_ESCAPE = re.compile(r"\\(\*\(..|\*.|\(..|\[[^\]]*\]|[sS][+-]?\d+|.)")
_BREAKS = {"PP", "P", "LP", "IP", "TP", "sp", "br", "HP", "TQ", "RS", "RE", "nf", "fi", "EX", "EE"}
_TEXT_MACROS = {"B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB"}


def troff_inline(line: str) -> str:
    """Strip font switches and character escapes from one line of troff text."""
    line = _FONT.sub("", line)
    line = _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group(0)], line)
    return _OTHER_ESCAPE.sub("", line)


def _macro_args(rest: str) -> list[str]:
    """Split macro arguments the way troff does: on blanks, with double quotes grouping."""
    found = re.findall(r'"((?:[^"]|"")*)"|(\S+)', rest)
    return [(quoted or bare).replace('""', '"') for quoted, bare in found]


def troff_doc(raw: str, lang: str, key: str, source: str) -> Doc | None:
    """Convert a man(7) page to a Doc; ``None`` for mdoc pages and ``.so`` redirects."""
    title = ""
    blocks: list[Block] = []
    para: list[str] = []
    section_name = ""

    def flush() -> None:
        text = _clean(" ".join(para))
        if text:
            blocks.append(Block(text, 0))
        para.clear()

    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\"')) or line.startswith('\\"'):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name == "so" or name in {"Dd", "Nm", "Sh"}:
                return None
            if name == "TH":
                args = _macro_args(rest)
                if args:
                    title = f"{args[0].lower()}({args[1] if len(args) > 1 else ''})"
            elif name in {"SH", "SS"}:
                flush()
                section_name = _clean(troff_inline(" ".join(_macro_args(rest))))
                if section_name:
                    blocks.append(Block(section_name.capitalize(), 2 if name == "SH" else 3))
            elif name in _BREAKS:
                flush()
                if name == "IP":
                    args = _macro_args(rest)
                    if args and len(args[0]) > 2:  # a tag like an option name, keep as text
                        para.append(troff_inline(args[0]))
            elif name in _TEXT_MACROS:
                args = _macro_args(rest)
                joiner = "" if len(name) == 2 and name not in {"SM", "SB"} else " "
                para.append(troff_inline(joiner.join(args)))
            # every other request (.de, .ds, .nh, .ad, .if, .ie, .UR, ...) is dropped
            continue
        para.append(troff_inline(line))
    flush()
    if not title:
        return None
    kept, dropped = _keep_language(blocks, lang)
    return Doc(source, lang, key, title, kept[:MAX_BLOCKS], dropped)


def man_doc(path: Path, lang: str, source: str) -> Doc | None:
    """Read a gzipped man page (skipping symlinks: they are aliases of another page)."""
    if path.is_symlink():
        return None
    raw = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    name = path.name.removesuffix(".gz")
    return troff_doc(raw, lang, f"{path.parent.name}/{name}", source)


_SECTION_NUMBER = re.compile(r"^(\d+(?:\.\d+)+)\.?\s+(.*)$")


def reference_sections(path: Path, lang: str, source: str) -> list[Doc]:
    """Split a Debian Reference chapter into its numbered sections, one Doc each.

    These become the Wikipedia articles: the key is the section number (``2.1.3``), identical
    across translations, so articles can carry real interlanguage links.
    """
    _, blocks = parse_html_blocks(
        path.read_text(encoding="utf-8"),
        para_tags={"p"},
        skip_classes={"screen", "programlisting", "toc", "navheader", "navfooter", "table"},
    )
    docs: list[Doc] = []
    current: Doc | None = None
    chapter = ""
    for b in blocks:
        if b.level == 1:
            chapter = re.sub(r"^\S+\s+[\dA-Z]+\.\s*", "", b.text)  # "Chapter 2. Title" -> title
        elif b.level in (2, 3):
            m = _SECTION_NUMBER.match(b.text)
            current = None
            if m:
                best, conf = detect(m.group(2))
                if not (best is not None and best != lang and conf >= 0.35):
                    current = Doc(source, lang, m.group(1), m.group(2).strip(), parent=chapter)
                    docs.append(current)
        elif b.level == 0 and current is not None:
            if is_language(b.text, lang):
                current.blocks.append(b)
            else:
                current.dropped_blocks += 1
    return docs
