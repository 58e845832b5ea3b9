"""`wikipedia`: MediaWiki XML exports to plain-text article documents.

The text feeds two consumers: the perplexity language models (CCNet trains them on Wikipedia)
and the Wikipedia mixture source; the `<ref>` citations feed the Wikipedia-reference
classifier, so they are extracted here, once, and stored in `meta`.

Exports are untrusted input: they are parsed with defusedxml, which refuses entity
declarations and DTDs (a "billion laughs" file raises instead of expanding), and streamed page
by page with every finished element cleared, so memory stays bounded by the largest page.
"""

from __future__ import annotations

import bz2
import io
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar
from urllib.parse import urlsplit, urlunsplit
from xml.etree.ElementTree import Element, ParseError

import mwparserfromhell
import pyarrow as pa
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from mwparserfromhell.definitions import INVISIBLE_TAGS
from mwparserfromhell.nodes import (
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)
from mwparserfromhell.wikicode import Wikicode

from curation.commoncrawl.langid import LANGUAGE_FIELDS
from curation.core.documents import Document, document_id, documents_table, drop_rows, schema_with
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

SOURCE = "wikipedia"
ARTICLE_NAMESPACE = 0
# MediaWiki namespace keys whose links render as media or page metadata, not as text.
_MEDIA_KEY, _FILE_KEY, _CATEGORY_KEY = -2, 6, 14
# The canonical English names work on every wiki, whatever its language.
CANONICAL_HIDDEN_PREFIXES = frozenset({"media", "file", "image", "category"})
# Interwiki language links are written with the lowercase language code: [[fr:Titre]].
_INTERWIKI = re.compile(r"[a-z]{2,3}(?:-[a-z]{2,8})*")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
# Markup the parser could not match (unclosed templates, broken tables) survives as text; a
# line holding it is dropped rather than fed to the language models.
_LEFTOVER_MARKUP = ("{{", "}}", "[[", "]]", "{|", "|}", "<ref")
_TABLE_ROW_START = ("|", "!")
_REMOVED_TAGS = frozenset({"ref", "references", "table", *INVISIBLE_TAGS})
_LINE_BREAK_TAGS = frozenset({"br", "p"})
_EXPORT_NAME = re.compile(r"([a-z][a-z0-9_]*?)wiki-")


class MalformedExport(ValueError):
    """The file is not a well-formed, safe MediaWiki export (or its compression is broken)."""


@dataclass(frozen=True)
class Page:
    """One `<page>` of an export, before any filtering."""

    title: str
    page_id: int
    namespace: int
    redirect: bool
    wikitext: str
    hidden_prefixes: frozenset[str] = CANONICAL_HIDDEN_PREFIXES

    @property
    def skip_reason(self) -> str | None:
        """Why this page is not an article, or None for an article."""
        if self.redirect or self.wikitext.lstrip()[:9].upper() == "#REDIRECT":
            return "redirect"
        if self.namespace != ARTICLE_NAMESPACE:
            return "non_article_namespace"
        return None

    def plain_text(self) -> str:
        return wikitext_to_text(self.wikitext, self.hidden_prefixes)


@dataclass(frozen=True)
class Article:
    title: str
    page_id: int
    text: str


def iter_articles(source: str | os.PathLike | BinaryIO) -> Iterator[Article]:
    """Plain text of every article (namespace 0, not a redirect) of an export."""
    for page in iter_pages(source):
        if page.skip_reason is None:
            yield Article(page.title, page.page_id, page.plain_text())


def iter_pages(source: str | os.PathLike | BinaryIO) -> Iterator[Page]:
    """Every page of an `.xml` or `.xml.bz2` export (a path or a binary stream).

    Raises MalformedExport on broken XML, refused XML (entities, DTD) or a broken bz2 stream,
    after yielding the pages that came before the problem.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield from _parse_export(_decompressed(stream))
    else:
        yield from _parse_export(_decompressed(source))


def _decompressed(stream: BinaryIO) -> BinaryIO:
    """bz2 is recognised by its magic bytes, so paths and streams need no naming convention."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
    return bz2.BZ2File(buffered) if buffered.peek(3)[:3] == b"BZh" else buffered


def _parse_export(stream: BinaryIO) -> Iterator[Page]:
    # forbid_dtd: an export never has one, and refusing it also refuses every entity trick.
    events = iterparse(stream, events=("start", "end"), forbid_dtd=True)
    root: Element | None = None
    hidden = CANONICAL_HIDDEN_PREFIXES
    try:
        for event, elem in events:
            if root is None:
                root = elem
            if event != "end":
                continue
            tag = _local(elem.tag)
            if tag == "namespaces":
                hidden = hidden | _hidden_prefixes(elem)
            elif tag == "page":
                yield _page(elem, hidden)
                root.clear()  # drop finished pages: memory is bounded by one page
    except (ParseError, DefusedXmlException, EOFError, OSError, ValueError) as exc:
        # ValueError: a page without a numeric id; OSError/EOFError: a broken bz2 stream.
        raise MalformedExport(f"{type(exc).__name__}: {exc}") from exc


def _local(tag: str) -> str:
    """The tag without its namespace: export-0.10 and export-0.11 files read the same."""
    return tag.rpartition("}")[2]


def _child(elem: Element, name: str) -> Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _child_text(elem: Element, name: str) -> str:
    child = _child(elem, name)
    return (child.text or "") if child is not None else ""


def _hidden_prefixes(namespaces: Element) -> frozenset[str]:
    """This wiki's own names for media, file and category links ("Catégorie", "Datei")."""
    keys = {str(_MEDIA_KEY), str(_FILE_KEY), str(_CATEGORY_KEY)}
    return frozenset(_prefix_key(ns.text) for ns in namespaces if ns.get("key") in keys and ns.text)


def _page(elem: Element, hidden: frozenset[str]) -> Page:
    revisions = [c for c in elem if _local(c.tag) == "revision"]
    wikitext = _child_text(revisions[-1], "text") if revisions else ""
    return Page(
        title=_child_text(elem, "title"),
        page_id=int(_child_text(elem, "id")),
        namespace=int(_child_text(elem, "ns") or ARTICLE_NAMESPACE),
        redirect=_child(elem, "redirect") is not None,
        wikitext=wikitext,
        hidden_prefixes=hidden,
    )


def _prefix_key(prefix: str) -> str:
    return prefix.strip().replace("_", " ").casefold()


def wikitext_to_text(wikitext: str, hidden_prefixes: Iterable[str] = ()) -> str:
    """Plain text of an article: one line per paragraph, list item or heading.

    Links keep their anchor text; templates, comments, references, tables, media, category and
    interwiki links and bold/italic markup go. `hidden_prefixes` adds the wiki's localized
    names of the file and category namespaces to the canonical English ones.
    """
    hidden = CANONICAL_HIDDEN_PREFIXES | {_prefix_key(p) for p in hidden_prefixes}
    rendered = _render(mwparserfromhell.parse(wikitext), hidden)
    lines = (" ".join(line.split()) for line in rendered.splitlines())
    return "\n".join(line for line in lines if line and _is_clean(line))


def _is_clean(line: str) -> bool:
    return not line.startswith(_TABLE_ROW_START) and not any(m in line for m in _LEFTOVER_MARKUP)


def _render(code: Wikicode | None, hidden: frozenset[str]) -> str:
    if code is None:
        return ""
    return "".join(_render_node(node, hidden) for node in code.nodes)


def _render_node(node, hidden: frozenset[str]) -> str:
    """Text of one parse node; anything else (templates, comments, ...) renders empty."""
    if isinstance(node, Text):
        return _MAGIC_WORD.sub("", node.value)
    if isinstance(node, HTMLEntity):
        return node.normalize()
    if isinstance(node, Wikilink):
        return _render_wikilink(node, hidden)
    if isinstance(node, ExternalLink):
        # [url title] shows its title; [url] shows a footnote number; a bare url shows itself.
        return _render(node.title, hidden) if node.brackets else str(node.url)
    if isinstance(node, Heading):
        return f"\n{_render(node.title, hidden).strip()}\n"
    if isinstance(node, Tag):
        return _render_tag(node, hidden)
    return ""


def _render_wikilink(link: Wikilink, hidden: frozenset[str]) -> str:
    title = str(link.title).strip()
    if title.startswith(":"):  # [[:Category:X]] is an ordinary, visible link
        title = title[1:]
    else:
        prefix, colon, _ = title.partition(":")
        if colon and (_prefix_key(prefix) in hidden or _INTERWIKI.fullmatch(prefix.strip())):
            return ""
    return _render(link.text, hidden) if link.text is not None else title


def _render_tag(tag: Tag, hidden: frozenset[str]) -> str:
    name = str(tag.tag).strip().lower()
    if name in _REMOVED_TAGS:
        return ""
    if name in _LINE_BREAK_TAGS:
        return "\n" + _render(tag.contents, hidden) + "\n"
    # List markers (*, #, ;, :) and ---- have no contents: the item's text follows them.
    return _render(tag.contents, hidden) if tag.contents is not None else ""


def cited_urls(wikitext: str) -> list[str]:
    """URLs cited inside `<ref>` tags, in order of first citation, each once.

    Both citation styles count: bare `[https://... title]` links and `url=` parameters of
    citation templates (`{{cite web|url=...}}`).
    """
    urls: dict[str, None] = {}
    code = mwparserfromhell.parse(wikitext)
    for ref in code.ifilter_tags(recursive=True, matches=lambda t: t.tag.lower() == "ref"):
        if ref.contents is None:
            continue
        for node in ref.contents.ifilter(recursive=True):
            if isinstance(node, ExternalLink):
                urls[str(node.url).strip()] = None
            elif isinstance(node, Template) and node.has("url"):
                url = node.get("url").value.strip_code().strip()
                if url:
                    urls[url] = None
    return list(urls)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str:
    """The form in which a cited URL and a crawled URL of the same page compare equal.

    Lowercase scheme and host, no `www.`, no default port, no fragment, no trailing `/`; the
    path and query are kept as they are (they are case sensitive on most servers).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").removeprefix("www.")
    try:
        port = parts.port
    except ValueError:  # a non-numeric port: keep the host part as written
        port, host = None, parts.netloc.lower().removeprefix("www.")
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def export_language(file_name: str) -> str:
    """`frwiki-20230301-pages-articles.xml.bz2` -> `fr` (dump files are named by database)."""
    match = _EXPORT_NAME.match(posixpath.basename(file_name))
    if match is None:
        raise ValueError(f"not a Wikipedia export name (<lang>wiki-...): {file_name}")
    return match.group(1)


def article_url(language: str, title: str) -> str:
    host = language.replace("_", "-")
    return f"https://{host}.wikipedia.org/wiki/{title.replace(' ', '_')}"


@dataclass(frozen=True)
class WikipediaText(Stage):
    """One export file per shard to one document per article; everything else is a dropped row.

    Streams: pages are parsed and written in batches, so a shard may be a whole multi-GB
    dump; the split dump files (`pages-articles1.xml-p1p41242.bz2`, ...) parallelize better.
    """

    name: ClassVar[str] = "wikipedia"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = schema_with([LANGUAGE_FIELDS[0]])

    batch_pages: int = 1000

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        return ShardOutput.concat(self.process_batches(shard, storage))

    def process_batches(self, shard: ShardInput, storage: Storage) -> Iterator[ShardOutput]:
        """Batches of `batch_pages` pages: memory stays constant on a multi-GB dump."""
        language = export_language(shard.name)
        batch: list[tuple[Document, str | None]] = []
        with storage.fs.open_input_file(shard.path) as stream:
            try:
                for page in iter_pages(stream):
                    batch.append(_page_document(page, language))
                    if len(batch) >= self.batch_pages:
                        yield self._output(batch, language)
                        batch = []
            except MalformedExport as exc:
                batch.append((_malformed_document(shard.name, language, exc), "malformed_xml"))
        yield self._output(batch, language)

    def _output(self, batch: list[tuple[Document, str | None]], language: str) -> ShardOutput:
        kept = [doc for doc, reason in batch if reason is None]
        dropped = [(doc, reason) for doc, reason in batch if reason is not None]
        reasons = [reason for _, reason in dropped]
        return ShardOutput(
            n_in=len(batch),
            kept=_with_language(documents_table(kept), language),
            dropped=drop_rows(
                _with_language(documents_table([d for d, _ in dropped]), language),
                self.name,
                reasons,
            ),
            histograms={"language": Counter({language: len(kept)}), "dropped": Counter(reasons)},
        )


def _page_document(page: Page, language: str) -> tuple[Document, str | None]:
    """The page as a document and its drop reason (None: kept). Dropped pages keep their
    wikitext as text, so a person can see what was dropped."""
    reason = page.skip_reason
    text = page.plain_text() if reason is None else page.wikitext
    if reason is None and not text:
        reason, text = "empty_after_cleaning", page.wikitext
    meta = {"title": page.title, "page_id": page.page_id}
    if reason is None:
        meta["cited_urls"] = cited_urls(page.wikitext)
    elif reason == "non_article_namespace":
        meta["namespace"] = page.namespace
    doc = Document(
        id=document_id(SOURCE, f"{language}:{page.page_id}"),
        source=SOURCE,
        text=text,
        url=article_url(language, page.title),
        meta=meta,
    )
    return doc, reason


def _malformed_document(file: str, language: str, exc: MalformedExport) -> Document:
    return Document(
        id=document_id(SOURCE, f"{language}:file:{file}"),
        source=SOURCE,
        text="",
        url=None,
        meta={"file": file, "error": str(exc)},
    )


def _with_language(table: pa.Table, language: str) -> pa.Table:
    return table.append_column(
        LANGUAGE_FIELDS[0], pa.array([language] * table.num_rows, pa.string())
    )
