"""Web sites of the sample crawl: URLs, page templates with per-site boilerplate, HTML to text.

Every page of a host is wrapped in the same navigation bar, cookie banner and footer (in the
page's language), so those lines repeat across the site the way they do in a real crawl: the
line-level deduplication stage is meant to remove exactly these. ``html_to_text`` is the WET
conversion: title as line 0, then one line per block element, boilerplate included.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import date, timedelta
from html.parser import HTMLParser

from sample_world.text import Doc

# Interface strings of the site templates, per page language.
UI: dict[str, dict[str, str]] = {
    "en": {
        "home": "Home",
        "docs": "Documentation",
        "download": "Download",
        "about": "About",
        "contact": "Contact",
        "search": "Search",
        "cookie": "This website uses cookies to ensure you get the best experience on our "
        "website. By continuing to browse, you agree to our use of cookies.",
        "accept": "Accept all cookies",
        "privacy": "Privacy policy",
        "terms": "Terms of use",
        "updated": "Last updated on",
        "license": "Content is available under the license of its authors unless otherwise noted.",
    },
    "fr": {
        "home": "Accueil",
        "docs": "Documentation",
        "download": "Télécharger",
        "about": "À propos",
        "contact": "Nous contacter",
        "search": "Rechercher",
        "cookie": "Ce site utilise des cookies pour vous garantir la meilleure expérience sur "
        "notre site. En poursuivant votre navigation, vous acceptez leur utilisation.",
        "accept": "Accepter les cookies",
        "privacy": "Politique de confidentialité",
        "terms": "Conditions d'utilisation",
        "updated": "Dernière mise à jour le",
        "license": "Le contenu est disponible sous la licence de ses auteurs, sauf mention "
        "contraire.",
    },
    "de": {
        "home": "Startseite",
        "docs": "Dokumentation",
        "download": "Herunterladen",
        "about": "Über uns",
        "contact": "Kontakt",
        "search": "Suche",
        "cookie": "Diese Website verwendet Cookies, um Ihnen die bestmögliche Nutzung zu "
        "ermöglichen. Wenn Sie die Seite weiter nutzen, stimmen Sie der Verwendung zu.",
        "accept": "Alle Cookies akzeptieren",
        "privacy": "Datenschutzerklärung",
        "terms": "Nutzungsbedingungen",
        "updated": "Zuletzt aktualisiert am",
        "license": "Der Inhalt ist, sofern nicht anders angegeben, unter der Lizenz seiner "
        "Autoren verfügbar.",
    },
    "es": {
        "home": "Inicio",
        "docs": "Documentación",
        "download": "Descargar",
        "about": "Acerca de",
        "contact": "Contacto",
        "search": "Buscar",
        "cookie": "Este sitio web utiliza cookies para que usted tenga la mejor experiencia "
        "de usuario. Si continúa navegando, acepta el uso de las cookies.",
        "accept": "Aceptar todas las cookies",
        "privacy": "Política de privacidad",
        "terms": "Condiciones de uso",
        "updated": "Última actualización el",
        "license": "El contenido está disponible bajo la licencia de sus autores, salvo que "
        "se indique lo contrario.",
    },
    "it": {
        "home": "Pagina iniziale",
        "docs": "Documentazione",
        "download": "Scarica",
        "about": "Chi siamo",
        "contact": "Contatti",
        "search": "Cerca",
        "cookie": "Questo sito utilizza i cookie per offrirti la migliore esperienza di "
        "navigazione. Continuando la navigazione accetti l'uso dei cookie.",
        "accept": "Accetta tutti i cookie",
        "privacy": "Informativa sulla privacy",
        "terms": "Condizioni d'uso",
        "updated": "Ultimo aggiornamento il",
        "license": "Il contenuto è disponibile con la licenza dei suoi autori, salvo dove "
        "diversamente indicato.",
    },
    "pt": {
        "home": "Início",
        "docs": "Documentação",
        "download": "Baixar",
        "about": "Sobre",
        "contact": "Fale conosco",
        "search": "Pesquisar",
        "cookie": "Este site usa cookies para garantir que você tenha a melhor experiência em "
        "nosso site. Ao continuar navegando, você concorda com o uso de cookies.",
        "accept": "Aceitar todos os cookies",
        "privacy": "Política de privacidade",
        "terms": "Termos de uso",
        "updated": "Última atualização em",
        "license": "O conteúdo está disponível sob a licença de seus autores, salvo indicação "
        "em contrário.",
    },
    "ja": {
        "home": "ホーム",
        "docs": "ドキュメント",
        "download": "ダウンロード",
        "about": "このサイトについて",
        "contact": "お問い合わせ",
        "search": "検索",
        "cookie": "このウェブサイトでは、最適な体験を提供するためにクッキーを使用しています。"
        "閲覧を続けることで、クッキーの使用に同意したものとみなされます。",
        "accept": "すべてのクッキーを受け入れる",
        "privacy": "プライバシーポリシー",
        "terms": "利用規約",
        "updated": "最終更新日",
        "license": "特に記載のない限り、コンテンツは著者のライセンスの下で利用できます。",
    },
    "ru": {
        "home": "Главная",
        "docs": "Документация",
        "download": "Скачать",
        "about": "О проекте",
        "contact": "Контакты",
        "search": "Поиск",
        "cookie": "Этот сайт использует файлы cookie, чтобы обеспечить вам наилучшие "
        "впечатления. Продолжая просмотр, вы соглашаетесь с их использованием.",
        "accept": "Принять все файлы cookie",
        "privacy": "Политика конфиденциальности",
        "terms": "Условия использования",
        "updated": "Последнее обновление",
        "license": "Содержимое доступно по лицензии его авторов, если не указано иное.",
    },
}

HANDBOOK_LOCALE = {
    "en": "en-US",
    "fr": "fr-FR",
    "de": "de-DE",
    "es": "es-ES",
    "it": "it-IT",
    "pt": "pt-BR",
    "ja": "ja-JP",
    "ru": "ru-RU",
}


@dataclass(frozen=True)
class Site:
    """A host with its page template: name shown in the header, copyright line of the footer."""

    host: str
    name: str
    owner: str
    extra_nav: tuple[str, ...] = ()


HANDBOOK = Site(
    "debian-handbook.info", "The Debian Administrator's Handbook", "Raphaël Hertzog, Roland Mas"
)
PYTHON = Site(
    "docs.python.org",
    "Python 3.11 documentation",
    "Python Software Foundation",
    ("Tutorial", "Library Reference", "Language Reference"),
)
MANPAGES = Site(
    "manpages.debian.org",
    "Debian Manpages",
    "Debian project and man page authors",
    ("bookworm", "bullseye", "sid"),
)
SITES = {s.host: s for s in (HANDBOOK, PYTHON, MANPAGES)}


def mirror_of(site: Site) -> Site:
    """A mirror host serving the same files (its pages are byte-identical to the original)."""
    slug = site.host.split(".")[-2] if site.host.count(".") > 1 else site.host.split(".")[0]
    return Site(f"{slug}.mirror.example", site.name, site.owner, site.extra_nav)


def site_for(doc: Doc) -> Site:
    if doc.source == "debian-handbook":
        return HANDBOOK
    if doc.source.startswith("python"):
        return PYTHON
    if doc.source.startswith("manpages-"):
        return MANPAGES
    raise ValueError(f"no site for source {doc.source}")


def man_name(doc: Doc) -> tuple[str, str]:
    """``("ls", "1")`` from a man page key like ``man1/ls.1``."""
    base = doc.key.split("/")[-1]
    name, _, sec = base.rpartition(".")
    return name, sec


def url_for(doc: Doc, variant: str = "current") -> str:
    """The page's URL; ``variant="old"`` is the previous release of the same document."""
    site = site_for(doc)
    if site is HANDBOOK:
        version = "stable" if variant == "current" else "10"
        return (
            f"https://{site.host}/browse/{HANDBOOK_LOCALE[doc.lang]}/{version}/"
            + (doc.key.split("/")[-1])
        )
    if site is PYTHON:
        version = "3.11" if variant == "current" else "3.10"
        return f"https://{site.host}/{version}/{doc.key}"
    name, sec = man_name(doc)
    suite = "bookworm" if variant == "current" else "bullseye"
    return f"https://{site.host}/{suite}/{doc.source}/{name}.{sec}.{doc.lang}.html"


def title_for(doc: Doc, variant: str = "current") -> str:
    """The <title> a real page of that site would have."""
    site = site_for(doc)
    if site is PYTHON:
        version = "3.11.2" if variant == "current" else "3.10.12"
        return f"{doc.title} \u2014 Python {version} documentation"
    if site is MANPAGES:
        suite = "bookworm" if variant == "current" else "bullseye"
        return f"{doc.title} \u2014 {doc.source} \u2014 Debian {suite} \u2014 Debian Manpages"
    return doc.title


def page_date(url: str, base: date = date(2019, 1, 1), span_days: int = 900) -> date:
    """A stable "last updated" date per URL (no clock involved)."""
    h = int.from_bytes(hashlib.sha1(url.encode()).digest()[:4], "big")
    return base + timedelta(days=h % span_days)


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def render_page(
    site: Site,
    lang: str,
    title: str,
    h1: str,
    body_html: str,
    updated: date | None = None,
) -> str:
    """Wrap a page body in the site template: cookie banner, header, nav, footer."""
    ui = UI[lang]
    nav_items = [
        ui["home"],
        ui["docs"],
        *site.extra_nav,
        ui["download"],
        ui["about"],
        ui["contact"],
    ]
    nav = "\n".join(f'<li><a href="/{i}">{_e(item)}</a></li>' for i, item in enumerate(nav_items))
    updated_html = (
        f'<p class="last-updated">{_e(ui["updated"])} {updated.isoformat()}.</p>\n'
        if updated
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="stylesheet" href="/static/site.css">\n'
        "<script>window.dataLayer = window.dataLayer || []; "
        "function gtag(){dataLayer.push(arguments);}</script>\n"
        "</head>\n<body>\n"
        f'<div class="cookie-banner" id="cookie-consent"><p>{_e(ui["cookie"])}</p>'
        f'<button type="button">{_e(ui["accept"])}</button></div>\n'
        f'<header><a class="brand" href="/">{_e(site.name)}</a>'
        f'<form action="/search"><input name="q"><button>{_e(ui["search"])}</button></form>'
        "</header>\n"
        f'<nav class="main-nav"><ul>\n{nav}\n</ul></nav>\n'
        f"<main>\n<article>\n<h1>{_e(h1)}</h1>\n{body_html}{updated_html}</article>\n</main>\n"
        f"<footer>\n<p>\u00a9 {_e(site.owner)}. {_e(ui['license'])}</p>\n"
        f'<p><a href="/privacy">{_e(ui["privacy"])}</a> | <a href="/terms">{_e(ui["terms"])}'
        f'</a> | <a href="/contact">{_e(ui["contact"])}</a></p>\n</footer>\n'
        "</body>\n</html>\n"
    )


def blocks_html(doc: Doc) -> str:
    """The document's headings and paragraphs as HTML."""
    out = []
    for b in doc.blocks:
        tag = f"h{min(max(b.level, 2), 4)}" if b.level else "p"
        out.append(f"<{tag}>{_e(b.text)}</{tag}>\n")
    return "".join(out)


def render_doc(doc: Doc, variant: str = "current", updated: date | None = None) -> str:
    """A whole HTML page for a source document on its site."""
    url = url_for(doc, variant)
    return render_page(
        site_for(doc),
        doc.lang,
        title_for(doc, variant),
        doc.title,
        blocks_html(doc),
        updated or page_date(url),
    )


# --- the WET conversion ---------------------------------------------------------------------

_BLOCK_TAGS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "button",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "td",
    "th",
    "tr",
    "ul",
}
_WS = re.compile(r"\s+")


class _TextParser(HTMLParser):
    """Block elements become lines, inline text is joined; scripts and styles are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.lines: list[str] = []
        self._line: list[str] = []
        self._skip = 0
        self._in_title = False

    def _flush(self) -> None:
        line = _WS.sub(" ", "".join(self._line)).strip()
        if line:
            self.lines.append(line)
        self._line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "noscript"}:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "noscript"}:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title.append(data)
        else:
            self._line.append(data)


def html_to_text(body: bytes) -> bytes:
    """WET-style plain text of an HTML page: the title as line 0, then block lines.

    Works on bytes and keeps undecodable bytes as they are (surrogateescape), so a page that
    lies about its charset keeps lying in the WET file, as it does in Common Crawl's.
    """
    parser = _TextParser()
    parser.feed(body.decode("utf-8", errors="surrogateescape"))
    parser.close()
    parser._flush()
    title = _WS.sub(" ", "".join(parser.title)).strip()
    lines = [title, *parser.lines] if title else parser.lines
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


def boilerplate_lines(site: Site, lang: str) -> list[str]:
    """The WET lines the site template adds to every page (cookie banner, header, nav,
    footer): the planted boilerplate that line dedup must remove."""
    sentinel = "\x00sentinel\x00"
    page = render_page(site, lang, sentinel, sentinel, "")
    lines = html_to_text(page.encode()).decode().split("\n")
    return [line for line in lines if line.strip() and sentinel not in line]
