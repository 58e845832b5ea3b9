"""A small Wikipedia per language, as a real MediaWiki XML export (``pages-articles``, bz2).

Articles are Debian Reference sections (real text of the language) dressed in the wikitext a
cleaner has to handle: infoboxes, links with and without anchor text, comments, ``<ref>`` tags
with bare and ``{{cite web}}`` citations, sections, tables, categories and interlanguage links;
plus redirects and pages outside the article namespace. About 30% of the language's ``page``
captures are cited, strongly preferring the Debian handbook (the articles are about Debian, as
real articles cite the reference works of their subject), so that within one language the
Wikipedia-reference classifier has positives that differ in kind from the random negatives.

Long because one language's export plants its articles, templates and citations together
with their ground truth, and they must agree.
"""

from __future__ import annotations

import bz2
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sample_world.text import Doc

CITE_SHARE = 0.30
# Weighted sampling without replacement: a handbook page is this many times as likely to be
# cited as any other page.
CITE_WEIGHTS = {"debian-handbook": 6.0}
EXPORT_NS = "http://www.mediawiki.org/xml/export-0.10/"

NAMESPACES: dict[str, list[tuple[int, str]]] = {
    "en": [
        (-2, "Media"),
        (-1, "Special"),
        (0, ""),
        (1, "Talk"),
        (2, "User"),
        (3, "User talk"),
        (4, "Wikipedia"),
        (5, "Wikipedia talk"),
        (6, "File"),
        (7, "File talk"),
        (8, "MediaWiki"),
        (9, "MediaWiki talk"),
        (10, "Template"),
        (11, "Template talk"),
        (12, "Help"),
        (13, "Help talk"),
        (14, "Category"),
        (15, "Category talk"),
    ],
    "fr": [
        (-2, "Média"),
        (-1, "Spécial"),
        (0, ""),
        (1, "Discussion"),
        (2, "Utilisateur"),
        (3, "Discussion utilisateur"),
        (4, "Wikipédia"),
        (5, "Discussion Wikipédia"),
        (6, "Fichier"),
        (7, "Discussion fichier"),
        (8, "MediaWiki"),
        (9, "Discussion MediaWiki"),
        (10, "Modèle"),
        (11, "Discussion modèle"),
        (12, "Aide"),
        (13, "Discussion aide"),
        (14, "Catégorie"),
        (15, "Discussion catégorie"),
    ],
    "de": [
        (-2, "Medium"),
        (-1, "Spezial"),
        (0, ""),
        (1, "Diskussion"),
        (2, "Benutzer"),
        (3, "Benutzer Diskussion"),
        (4, "Wikipedia"),
        (5, "Wikipedia Diskussion"),
        (6, "Datei"),
        (7, "Datei Diskussion"),
        (8, "MediaWiki"),
        (9, "MediaWiki Diskussion"),
        (10, "Vorlage"),
        (11, "Vorlage Diskussion"),
        (12, "Hilfe"),
        (13, "Hilfe Diskussion"),
        (14, "Kategorie"),
        (15, "Kategorie Diskussion"),
    ],
    "es": [
        (-2, "Medio"),
        (-1, "Especial"),
        (0, ""),
        (1, "Discusión"),
        (2, "Usuario"),
        (3, "Usuario discusión"),
        (4, "Wikipedia"),
        (5, "Wikipedia discusión"),
        (6, "Archivo"),
        (7, "Archivo discusión"),
        (8, "MediaWiki"),
        (9, "MediaWiki discusión"),
        (10, "Plantilla"),
        (11, "Plantilla discusión"),
        (12, "Ayuda"),
        (13, "Ayuda discusión"),
        (14, "Categoría"),
        (15, "Categoría discusión"),
    ],
}

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "sitename": "Wikipedia",
        "main": "Main_Page",
        "infobox": "Infobox software",
        "name": "name",
        "developer": "developer",
        "license": "license",
        "website": "website",
        "overview": "Overview",
        "see_also": "See also",
        "references": "References",
        "section": "Section",
        "title": "Title",
        "redirect": "#REDIRECT",
        "category": "Debian",
        "talk": "Is the second paragraph still accurate for the "
        "current release? The cited page was updated since.",
        "reply": "Checked, it is.",
    },
    "fr": {
        "sitename": "Wikipédia",
        "main": "Wikipédia:Accueil_principal",
        "infobox": "Infobox Logiciel",
        "name": "nom",
        "developer": "développeur",
        "license": "licence",
        "website": "site web",
        "overview": "Présentation",
        "see_also": "Voir aussi",
        "references": "Notes et références",
        "section": "Section",
        "title": "Titre",
        "redirect": "#REDIRECTION",
        "category": "Debian",
        "talk": "Le deuxième paragraphe est-il encore exact pour la "
        "version actuelle ? La page citée a été mise à jour depuis.",
        "reply": "Vérifié, il l'est.",
    },
    "de": {
        "sitename": "Wikipedia",
        "main": "Wikipedia:Hauptseite",
        "infobox": "Infobox Software",
        "name": "Name",
        "developer": "Entwickler",
        "license": "Lizenz",
        "website": "Website",
        "overview": "Überblick",
        "see_also": "Siehe auch",
        "references": "Einzelnachweise",
        "section": "Abschnitt",
        "title": "Titel",
        "redirect": "#WEITERLEITUNG",
        "category": "Debian",
        "talk": "Ist der zweite Absatz für die aktuelle Version noch richtig? Die zitierte "
        "Seite wurde inzwischen aktualisiert.",
        "reply": "Geprüft, er ist es.",
    },
    "es": {
        "sitename": "Wikipedia",
        "main": "Wikipedia:Portada",
        "infobox": "Ficha de software",
        "name": "nombre",
        "developer": "desarrollador",
        "license": "licencia",
        "website": "sitio web",
        "overview": "Descripción",
        "see_also": "Véase también",
        "references": "Referencias",
        "section": "Sección",
        "title": "Título",
        "redirect": "#REDIRECCIÓN",
        "category": "Debian",
        "talk": "¿Sigue siendo correcto el segundo párrafo para la versión actual? La "
        "página citada se ha actualizado desde entonces.",
        "reply": "Comprobado, lo es.",
    },
}
EDITORS = (
    ("Aoki", 10342),
    ("DocGnome", 220481),
    ("Hertzog", 4711),
    ("Lolando", 88120),
    ("SampleBot", 3905530),
    ("Paquetier", 516662),
)


@dataclass(frozen=True)
class CitedPage:
    """A crawl page a wiki article cites."""

    lang: str
    url: str
    title: str
    source: str


@dataclass
class WikiPage:
    """One page of the export: ``redirect`` is the target title of a redirect page."""

    title: str
    ns: int
    text: str
    redirect: str | None = None


def base36_sha1(text: str) -> str:
    """MediaWiki's ``<sha1>``: the SHA-1 of the text in base 36, 31 digits."""
    n = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest(), "big")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(31, "0")


def xml_escape(text: str) -> str:
    """Escape as MediaWiki's exporter does (htmlspecialchars: & < > ")."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def choose_cited(pages: list[CitedPage], rng: random.Random) -> list[CitedPage]:
    """About ``CITE_SHARE`` of the pages, weighted by ``CITE_WEIGHTS`` (Efraimidis-Spirakis:
    the largest ``u ** (1 / weight)`` win)."""
    k = round(CITE_SHARE * len(pages))
    weighted = sorted(
        pages, key=lambda p: -(rng.random() ** (1.0 / CITE_WEIGHTS.get(p.source, 1.0)))
    )
    return sorted(weighted[:k], key=lambda p: p.url)


_LINKABLE = re.compile(r"^([^\W\d_]{7,})([.,;:]?)$")


def _wikify_paragraph(text: str, titles: list[str], rng: random.Random) -> str:
    """Escape what wikitext would misread and add up to two internal links."""
    text = text.replace("<", "&lt;").replace("[[", "[ [").replace("{{", "{ {").replace("''", "'")
    tokens = text.split(" ")
    spots = [i for i, t in enumerate(tokens) if _LINKABLE.match(t)]
    for i in rng.sample(spots, min(2, len(spots))):
        m = _LINKABLE.match(tokens[i])
        assert m is not None
        word, punct = m.groups()
        if rng.random() < 0.5 or not titles:
            tokens[i] = f"[[{word}]]{punct}"
        else:
            tokens[i] = f"[[{rng.choice(titles)}|{word}]]{punct}"
    return " ".join(tokens)


def _ref(cite: CitedPage, n: int, style: int) -> str:
    title = cite.title.replace("]", ")").replace("|", "-").replace("}}", ")")
    host = cite.url.split("/")[2]
    if style == 0:
        return f"<ref>[{cite.url} {title}]</ref>"
    return (
        f'<ref name="c{n}">{{{{cite web|url={cite.url}|title={title}|website={host}'
        f"|access-date=2019-07-{1 + n % 28:02d}|language={cite.lang}}}}}</ref>"
    )


def _insert_after_sentence(paragraph: str, ref: str, rng: random.Random) -> str:
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", paragraph)]
    if not ends:
        return paragraph + ref
    at = rng.choice(ends)
    return paragraph[:at] + ref + paragraph[at:]


def article_text(
    doc: Doc,
    lang: str,
    titles: list[str],
    siblings: list[Doc],
    cites: list[CitedPage],
    interwiki: dict[str, str],
    license_name: str,
    rng: random.Random,
    ref_counter: list[int],
) -> str:
    """The wikitext of one article."""
    w = WORDS[lang]
    ns = dict(NAMESPACES[lang])
    chapter = doc.key.split(".")[0]
    paras = [_wikify_paragraph(p, titles, rng) for p in doc.paragraphs]
    # References: each cited crawl page once, a named one sometimes reused later.
    reused: list[str] = []
    for cite in cites:
        ref_counter[0] += 1
        n = ref_counter[0]
        style = rng.randrange(2)
        i = rng.randrange(len(paras))
        paras[i] = _insert_after_sentence(paras[i], _ref(cite, n, style), rng)
        if style == 1 and rng.random() < 0.3:
            reused.append(f'<ref name="c{n}" />')
    for r in reused:
        paras[-1] = paras[-1] + r
    # Every article credits its real source, a URL outside the crawl.
    source_url = (
        f"https://www.debian.org/doc/manuals/debian-reference/ch{int(chapter):02d}.{lang}.html"
    )
    paras[0] = paras[0] + f"<ref>[{source_url} Debian Reference, {doc.parent}]</ref>"

    lines = [
        f"{{{{{w['infobox']}",
        f"| {w['name']} = {doc.title}",
        f"| {w['developer']} = Debian",
        f"| {w['license']} = {license_name}",
        f"| {w['website']} = {source_url}",
        "}}",
        f"<!-- {doc.source}, {w['section'].lower()} {doc.key} -->",
        f"'''{doc.title}''' \u2013 {paras[0]}",
        "",
    ]
    if len(paras) > 1:
        lines += [f"== {w['overview']} ==", *(p + "\n" for p in paras[1:])]
    if len(siblings) >= 3 and rng.random() < 0.3:
        lines += ['{| class="wikitable"', f"! {w['section']} !! {w['title']}"]
        for s in siblings[:6]:
            lines += ["|-", f"| {s.key} || [[{s.title}]]"]
        lines += ["|}", ""]
    others = [t for t in rng.sample(titles, min(3, len(titles))) if t != doc.title]
    if others:
        lines += [f"== {w['see_also']} ==", *(f"* [[{t}]]" for t in others), ""]
    lines += [f"== {w['references']} ==", "<references />", ""]
    lines += [f"[[{ns[14]}:{w['category']}]]", f"[[{ns[14]}:{doc.parent}]]"]
    lines += [f"[[{code}:{title}]]" for code, title in sorted(interwiki.items())]
    return "\n".join(lines) + "\n"


def _talk_text(lang: str, editor: str, dt: datetime) -> str:
    w = WORDS[lang]
    user_ns = dict(NAMESPACES[lang])[2]
    sig = f"[[{user_ns}:{editor}|{editor}]] {dt:%H:%M, %d.%m.%Y} (UTC)"
    return f"== {w['references']} ==\n{w['talk']} {sig}\n:{w['reply']} {sig}\n"


def _template_pages(lang: str) -> list[WikiPage]:
    w = WORDS[lang]
    tpl = dict(NAMESPACES[lang])[10]
    keys = [w["name"], w["developer"], w["license"], w["website"]]
    rows = "\n".join(f"|-\n! {k}\n| {{{{{{{k}|}}}}}}" for k in keys)
    infobox = (
        '<includeonly>{| class="infobox"\n' + rows + "\n|}</includeonly><noinclude>\n"
        "<!-- documentation -->\n[[" + dict(NAMESPACES[lang])[14] + ":Infobox]]\n</noinclude>\n"
    )
    cite = (
        "<includeonly>[{{{url}}} {{{title}}}]. ''{{{website|}}}''. {{{access-date|}}}."
        "</includeonly><noinclude>{{Documentation}}</noinclude>\n"
    )
    return [WikiPage(f"{tpl}:{w['infobox']}", 10, infobox), WikiPage(f"{tpl}:Cite web", 10, cite)]


def build_pages(
    lang: str,
    docs: list[Doc],
    all_docs: dict[str, list[Doc]],
    cited: list[CitedPage],
    license_name: str,
    rng: random.Random,
) -> list[WikiPage]:
    """Articles, redirects, talk, template and category pages of one language."""
    titles: list[str] = []
    seen: set[str] = set()
    for d in docs:
        t = d.title[:1].upper() + d.title[1:]
        while t in seen:
            t = f"{t} (Debian)"
        seen.add(t)
        titles.append(t)
    docs = [
        Doc(d.source, d.lang, d.key, t, d.blocks, d.dropped_blocks, d.parent)
        for d, t in zip(docs, titles, strict=True)
    ]
    by_key_other = {
        code: {d.key: d.title[:1].upper() + d.title[1:] for d in others}
        for code, others in all_docs.items()
        if code != lang
    }
    # Spread the cited pages over the articles: some get two or three, some none.
    cites_for: list[list[CitedPage]] = [[] for _ in docs]
    slots = list(range(len(docs)))
    for n, cite in enumerate(cited):
        if n % len(docs) == 0:
            rng.shuffle(slots)
        cites_for[slots[n % len(docs)]].append(cite)

    pages: list[WikiPage] = []
    ref_counter = [0]
    for i, doc in enumerate(docs):
        chapter = doc.key.split(".")[0]
        siblings = [d for d in docs if d.key.split(".")[0] == chapter]
        interwiki = {code: m[doc.key] for code, m in by_key_other.items() if doc.key in m}
        pages.append(
            WikiPage(
                doc.title,
                0,
                article_text(
                    doc,
                    lang,
                    titles,
                    siblings,
                    cites_for[i],
                    interwiki,
                    license_name,
                    rng,
                    ref_counter,
                ),
            )
        )
    w = WORDS[lang]
    ns = dict(NAMESPACES[lang])
    for n, doc in enumerate(rng.sample(docs, min(12, len(docs)))):
        keyword = "#REDIRECT" if n % 2 == 0 else w["redirect"]
        alias = f"{doc.title} (Debian)" if n % 3 else f"Debian Reference {doc.key}"
        if alias in seen:
            continue
        seen.add(alias)
        pages.append(WikiPage(alias, 0, f"{keyword} [[{doc.title}]]\n", redirect=doc.title))
    base = datetime(2019, 7, 1, 12, 0, 0)
    for n, doc in enumerate(rng.sample(docs, min(5, len(docs)))):
        editor = EDITORS[n % len(EDITORS)][0]
        pages.append(
            WikiPage(f"{ns[1]}:{doc.title}", 1, _talk_text(lang, editor, base + timedelta(days=n)))
        )
    pages += _template_pages(lang)
    chapters = sorted({d.parent for d in docs})
    pages.append(WikiPage(f"{ns[14]}:{w['category']}", 14, f"[[{ns[14]}:{w['sitename']}]]\n"))
    pages += [WikiPage(f"{ns[14]}:{c}", 14, f"[[{ns[14]}:{w['category']}]]\n") for c in chapters]
    return pages


def export_xml(lang: str, pages: list[WikiPage], rng: random.Random) -> bytes:
    """The MediaWiki export document (schema 0.10) for ``pages``."""
    w = WORDS[lang]
    ns_lines = "\n".join(
        f'      <namespace key="{k}" case="first-letter" />'
        if not name
        else f'      <namespace key="{k}" case="first-letter">{xml_escape(name)}</namespace>'
        for k, name in NAMESPACES[lang]
    )
    out = [
        f'<mediawiki xmlns="{EXPORT_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{EXPORT_NS} http://www.mediawiki.org/xml/export-0.10.xsd" '
        f'version="0.10" xml:lang="{lang}">',
        "  <siteinfo>",
        f"    <sitename>{xml_escape(w['sitename'])}</sitename>",
        f"    <dbname>{lang}wiki</dbname>",
        f"    <base>https://{lang}.wikipedia.org/wiki/{xml_escape(w['main'])}</base>",
        "    <generator>MediaWiki 1.34.0-wmf.13</generator>",
        "    <case>first-letter</case>",
        "    <namespaces>",
        ns_lines,
        "    </namespaces>",
        "  </siteinfo>",
    ]
    page_id = 1000
    rev_id = 900_000_000
    ts = datetime(2019, 6, 1, 8, 0, 0)
    for page in pages:
        page_id += rng.randint(1, 40)
        rev_id += rng.randint(1, 5000)
        ts += timedelta(minutes=rng.randint(1, 600))
        name, uid = EDITORS[rng.randrange(len(EDITORS))]
        redirect = (
            f'    <redirect title="{xml_escape(page.redirect)}" />\n' if page.redirect else ""
        )
        out.append(
            "  <page>\n"
            f"    <title>{xml_escape(page.title)}</title>\n"
            f"    <ns>{page.ns}</ns>\n"
            f"    <id>{page_id}</id>\n"
            f"{redirect}"
            "    <revision>\n"
            f"      <id>{rev_id}</id>\n"
            f"      <parentid>{rev_id - rng.randint(100, 90000)}</parentid>\n"
            f"      <timestamp>{ts:%Y-%m-%dT%H:%M:%SZ}</timestamp>\n"
            "      <contributor>\n"
            f"        <username>{xml_escape(name)}</username>\n"
            f"        <id>{uid}</id>\n"
            "      </contributor>\n"
            "      <model>wikitext</model>\n"
            "      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(page.text.encode("utf-8"))}" xml:space="preserve">'
            f"{xml_escape(page.text)}</text>\n"
            f"      <sha1>{base36_sha1(page.text)}</sha1>\n"
            "    </revision>\n"
            "  </page>"
        )
    out.append("</mediawiki>\n")
    return "\n".join(out).encode("utf-8")


def write_wiki(
    out_dir: Path,
    docs: dict[str, list[Doc]],
    cited: dict[str, list[CitedPage]],
    license_name: dict[str, str],
    rng: random.Random,
    edit: Callable[[str, list[WikiPage]], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Write ``<lang>wiki-sample-pages-articles.xml.bz2`` per language; return page counts.
    ``edit(lang, pages)`` may change a language's pages in place before they are exported
    (after every random draw, so nothing else moves)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for lang in sorted(docs):
        pages = build_pages(lang, docs[lang], docs, cited.get(lang, []), license_name[lang], rng)
        if edit is not None:
            edit(lang, pages)
        xml = export_xml(lang, pages, rng)
        (out_dir / f"{lang}wiki-sample-pages-articles.xml.bz2").write_bytes(bz2.compress(xml, 9))
        counts[lang] = {
            "articles": sum(1 for p in pages if p.ns == 0 and not p.redirect),
            "redirects": sum(1 for p in pages if p.redirect),
            "other": sum(1 for p in pages if p.ns != 0),
        }
    return counts
