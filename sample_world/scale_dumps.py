"""Copies of the sample's XML dumps (Wikipedia exports, Stack Exchange ``Posts.xml``) for the
scale world, edited in place as text: the sample writes one element per line, so a copy keeps
every byte it does not mean to change.

- Wikipedia: ``<lang>wiki-sample-pages-articles.xml.bz2`` becomes
  ``<lang>wiki-sample-copy-000k-pages-articles.xml.bz2`` (the stage takes the language from the
  name before ``wiki-``). Each page's id becomes ``k * 10**7 + id`` (the stage's id is
  ``lang:page_id``) and its title, and any redirect's target, gets `` (copy-000k)`` (the
  article URL is made from the title). Crawl URLs cited in the text become the crawl copy's
  URLs, so copy k's wiki cites copy k's crawl. A near article's wikitext is edited. ``bytes``
  and ``<sha1>`` follow the text; revision ids are kept (no stage reads them).
- Stack Exchange: ``<site>/Posts.xml`` becomes ``<site-head>-copy-000k.<rest>/Posts.xml`` (the
  stage's ids are ``site/post``); post ids, and so every ParentId and AcceptedAnswerId, are
  kept. A near thread (question and answers) gets its edits in its posts' bodies.
"""

from __future__ import annotations

import bz2
import html
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sample_world.scale_crawl import copy_url
from sample_world.scale_edit import Copies, apply_text, copy_tag, edit_kind
from sample_world.wiki import base36_sha1

PAGE_ID_STRIDE = 10**7
_PAGE = re.compile(r"  <page>\n.*?  </page>\n", re.DOTALL)
_TEXT = re.compile(r'(<text bytes=")\d+(" xml:space="preserve">)(.*?)(</text>)', re.DOTALL)
_TITLE = re.compile(r'(<title>|<redirect title=")(.*?)(</title>|" />)')
_PAGE_ID = re.compile(r"<id>(\d+)</id>")
_SHA1 = re.compile(r"<sha1>\w+</sha1>")
_URL = re.compile(r"https?://[^\s\[\]|<>{}&]+")
_ROW = re.compile(r"^  <row (.*) />$")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Citations:
    """The crawl URLs the wiki cites: copy k's wiki cites copy k's crawl pages."""

    urls: frozenset[str]

    def __call__(self, url: str, copy: int) -> str:
        return copy_url(url, copy) if url in self.urls else url


def wiki_name(name: str, copy: int) -> str:
    return name if copy == 0 else name.replace("wiki-sample-", f"wiki-sample-{copy_tag(copy)}-", 1)


def _retitled(page: str, copy: int) -> str:
    """The page under copy ``copy``'s title (a redirect's target too) and page id."""
    suffix = f" ({copy_tag(copy)})"
    page = _TITLE.sub(lambda m: f"{m[1]}{m[2]}{suffix}{m[3]}", page)
    page_id = int(_PAGE_ID.search(page)[1])
    if page_id >= PAGE_ID_STRIDE:
        raise ValueError(f"sample page id {page_id} is not below {PAGE_ID_STRIDE}")
    return page.replace(f"<id>{page_id}</id>", f"<id>{copy * PAGE_ID_STRIDE + page_id}</id>", 1)


def _with_text(page: str, wikitext: str) -> str:
    """The page with new (escaped) wikitext, its ``bytes`` and ``<sha1>`` recomputed."""
    plain = html.unescape(wikitext)
    m = _TEXT.search(page)
    page = (
        page[: m.start()]
        + f"{m[1]}{len(plain.encode('utf-8'))}{m[2]}{wikitext}{m[4]}"
        + page[m.end() :]
    )
    return _SHA1.sub(f"<sha1>{base36_sha1(plain)}</sha1>", page, count=1)


def _page_copy(
    page: str, lang: str, copy: int, copies: Copies, cite: Callable
) -> tuple[str, dict | None]:
    """One page of copy ``copy`` and its ground-truth row (articles only: None otherwise)."""
    page_id = _PAGE_ID.search(page)[1]
    article = "<ns>0</ns>" in page and "<redirect" not in page
    wikitext = _TEXT.search(page)[3]
    edits = copies.edits("wikipedia", f"{lang}:{page_id}", copy, wikitext) if article else []
    new = _URL.sub(lambda m: cite(m[0], copy), apply_text(wikitext, edits))
    out = _retitled(page, copy) if copy else page
    if new != wikitext:
        out = _with_text(out, new)
    row = {
        "source": "wikipedia",
        "item": f"{lang}:{copy * PAGE_ID_STRIDE + int(page_id)}",
        "copy": copy,
        "original": f"{lang}:{page_id}",
        "group": f"{lang}:{page_id}",
        "edit": edit_kind(edits, copy),
    }
    return out, row if article else None


def copy_wiki(
    copies: Copies, sample: Path, out: Path, name: str, cite: Callable, ks: range
) -> list[dict]:
    """Copies ``ks`` of one export; ``cite(url, k)`` is the URL copy ``k`` cites for ``url``."""
    xml = bz2.decompress((sample / name).read_bytes()).decode("utf-8")
    lang = name.split("wiki-", 1)[0]
    pages = list(_PAGE.finditer(xml))
    head, tail = xml[: pages[0].start()], xml[pages[-1].end() :]
    truth = []
    for k in ks:
        parts = [head]
        for m in pages:
            page, row = _page_copy(m[0], lang, k, copies, cite)
            parts.append(page)
            truth += [row] if row else []
        parts.append(tail)
        if k == 0:
            shutil.copyfile(sample / name, out / name)
        else:
            (out / wiki_name(name, k)).write_bytes(bz2.compress("".join(parts).encode(), 9))
    return truth


# --- Stack Exchange ---------------------------------------------------------------------------


def site_name(site: str, copy: int) -> str:
    """``debian.stackexchange.com`` -> ``debian-copy-0003.stackexchange.com``."""
    if copy == 0:
        return site
    head, _, rest = site.partition(".")
    return f"{head}-{copy_tag(copy)}.{rest}"


def _threads(lines: list[str]) -> dict[str, list[str]]:
    """Question id -> the bodies (as escaped in the file) of the question and its answers;
    answers to no question in the file (the planted orphans) are in no thread."""
    rows = [dict(_ATTR.findall(m[1])) for m in map(_ROW.match, lines) if m]
    threads = {r["Id"]: [] for r in rows if r.get("PostTypeId") == "1"}
    for r in rows:
        qid = r.get("Id") if r.get("PostTypeId") == "1" else r.get("ParentId")
        if qid in threads and "Body" in r:
            threads[qid].append(r["Body"])
    return threads


def copy_site(copies: Copies, sample: Path, out: Path, site: str, ks: range) -> list[dict]:
    """Copies ``ks`` of one site's ``Posts.xml``; ground-truth rows per question thread."""
    data = (sample / site / "Posts.xml").read_bytes()
    text = data.decode("utf-8")  # a dump is UTF-8 (the planted malformed one too)
    threads = _threads(text.split("\n"))
    truth = []
    for k in ks:
        target = out / site_name(site, k) / "Posts.xml"
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_text = text
        for qid, bodies in threads.items():
            item = f"{site}/{qid}"
            edits = copies.edits("stackexchange", item, k, "\n".join(bodies), also_in=(copy_text,))
            copy_text = apply_text(copy_text, edits)
            truth.append(
                {
                    "source": "stackexchange",
                    "item": f"{site_name(site, k)}/{qid}",
                    "copy": k,
                    "original": item,
                    "group": item,
                    "edit": edit_kind(edits, k),
                }
            )
        target.write_bytes(copy_text.encode("utf-8"))
    return truth
