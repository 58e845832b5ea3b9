"""The planted cases of the sample crawl: what each filtering stage is there to catch.

Each function returns captures of one kind, with the ground truth the tests and the pipeline's
asset checks compare against (``kind``, ``language``, ``duplicate_of``). Synthetic text lives on
``*.example`` hosts, which cannot collide with a real site.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from datetime import date

from sample_world.sites import (
    PYTHON,
    SITES,
    Site,
    blocks_html,
    mirror_of,
    page_date,
    render_doc,
    render_page,
    site_for,
    title_for,
    url_for,
)
from sample_world.text import Block, Doc

HTML = "text/html; charset=utf-8"


@dataclass
class Capture:
    """One fetched URL: the HTTP payload and its ground truth."""

    url: str
    kind: str
    language: str | None
    source: str
    body: bytes
    content_type: str = HTML
    duplicate_of: str | None = None

    @property
    def is_html(self) -> bool:
        return self.content_type.startswith("text/html")


def page(doc: Doc, kind: str = "page") -> Capture:
    """A source document served on its own site."""
    return Capture(url_for(doc), kind, doc.lang, doc.source, render_doc(doc).encode("utf-8"))


def exact_duplicate(original: Capture) -> Capture:
    """The same bytes served by a mirror host."""
    host = original.url.split("/")[2]
    site = SITES[host]
    url = original.url.replace(f"//{host}/", f"//{mirror_of(site).host}/", 1)
    return Capture(
        url,
        "exact_duplicate",
        original.language,
        original.source,
        original.body,
        original.content_type,
        original.url,
    )


_SENTENCE_END = re.compile(r"(?<=[.!?;:。])\s+")
_WORD = re.compile(r"\b[^\W\d_]{5,}\b")


def _edit(doc: Doc, rng: random.Random) -> Doc:
    """Remove or change one sentence: the copy stays near (MinHash-close), never identical."""
    candidates = [
        i
        for i, b in enumerate(doc.blocks)
        if b.level == 0 and len(_SENTENCE_END.split(b.text)) >= 2
    ]
    i = (
        rng.choice(candidates)
        if candidates
        else next(i for i, b in enumerate(doc.blocks) if b.level == 0)
    )
    sentences = _SENTENCE_END.split(doc.blocks[i].text)
    j = rng.randrange(len(sentences))
    words = _WORD.findall(" ".join(p for p in doc.paragraphs))
    if len(sentences) >= 2 and rng.random() < 0.5:
        del sentences[j]  # a sentence removed
    else:
        targets = _WORD.findall(sentences[j])
        if targets and words:
            old = rng.choice(targets)
            new = rng.choice([w for w in words if w != old] or ["changed"])
            sentences[j] = sentences[j].replace(old, new, 1)  # a sentence changed
        else:
            sentences[j] = sentences[j] + " " + sentences[j]
    blocks = list(doc.blocks)
    blocks[i] = Block(" ".join(sentences), 0)
    return replace(doc, blocks=blocks)


def near_duplicate(doc: Doc, original_url: str, rng: random.Random) -> Capture:
    """The previous release of the page: one sentence edited, another "last updated" date."""
    edited = _edit(doc, rng)
    body = render_page(
        site_for(doc),
        doc.lang,
        title_for(doc, "old"),
        doc.title,
        blocks_html(edited),
        page_date(url_for(doc, "old"), base=date(2017, 6, 1), span_days=500),
    )
    return Capture(
        url_for(doc, "old"),
        "near_duplicate",
        doc.lang,
        doc.source,
        body.encode("utf-8"),
        HTML,
        original_url,
    )


# --- spam ---------------------------------------------------------------------------------------

SPAM_TOPICS: dict[str, list[str]] = {
    "cheap-pills-online.example": [
        "cheap viagra",
        "buy cialis online",
        "generic pills",
        "no prescription",
        "online pharmacy",
        "discount meds",
        "best price pills",
        "fast shipping",
    ],
    "best-casino-bonus.example": [
        "online casino",
        "free spins",
        "casino bonus",
        "jackpot",
        "real money slots",
        "no deposit bonus",
        "poker online",
        "win big",
    ],
    "replica-watch-outlet.example": [
        "replica watches",
        "rolex replica",
        "cheap handbags",
        "designer outlet",
        "luxury watches sale",
        "swiss replica",
        "best replica",
        "cheap watches",
    ],
    "fast-loans-now.example": [
        "payday loans",
        "fast cash",
        "bad credit loans",
        "instant approval",
        "cash advance",
        "loans online",
        "quick loans",
        "no credit check",
    ],
    "top-seo-links.example": [
        "buy backlinks",
        "seo services",
        "rank first on google",
        "cheap traffic",
        "link building",
        "seo package",
        "guest posts",
        "pbn links",
    ],
    "crypto-profit-club.example": [
        "bitcoin profit",
        "crypto signals",
        "double your bitcoin",
        "free crypto",
        "trading bot",
        "crypto giveaway",
        "bitcoin investment",
        "get rich fast",
    ],
}
_SPAM_GLUE = ["buy", "best", "cheap", "online", "now", "top", "free", "discount", "official"]


def spam_page(host: str, i: int, rng: random.Random) -> Capture:
    """A keyword-stuffed page: keyword soup, a link farm and a hidden keyword block."""
    kws = SPAM_TOPICS[host]
    title = " | ".join(w.title() for w in rng.sample(kws, 4))
    paras = []
    for _ in range(rng.randint(3, 6)):
        words = []
        for _ in range(rng.randint(25, 60)):
            words.append(rng.choice(kws) if rng.random() < 0.6 else rng.choice(_SPAM_GLUE))
        paras.append(" ".join(words).capitalize() + "!")
    links = "".join(
        f'<li><a href="/{rng.choice(kws).replace(" ", "-")}-{k}.html">'
        f"{rng.choice(_SPAM_GLUE)} {rng.choice(kws)}</a></li>\n"
        for k in range(rng.randint(15, 30))
    )
    hidden = " ".join(kws * 3)
    body_html = (
        "".join(f"<p>{p}</p>\n" for p in paras)
        + f'<ul class="links">\n{links}</ul>\n'
        + f'<div style="display:none">{hidden}</div>\n'
    )
    site = Site(host, host.split(".")[0].replace("-", " ").title(), host)
    slug = kws[i % len(kws)].replace(" ", "-")
    url = f"https://{host}/{slug}-{i}.html"
    html_text = render_page(site, "en", title, title, body_html, page_date(url))
    return Capture(url, "spam", "en", "synthetic", html_text.encode("utf-8"))


def _split(text: str) -> list[str]:
    return text.split()


# --- lorem ipsum --------------------------------------------------------------------------------

LOREM_WORDS: tuple[str, ...] = tuple(
    _split(
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
        "ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco "
        "laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate "
        "velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident "
        "sunt culpa qui officia deserunt mollit anim id est laborum pellentesque habitant morbi "
        "tristique senectus netus malesuada fames ac turpis egestas vestibulum tortor quam "
        "feugiat vitae ultricies eget tempor sit amet ante donec eu libero sit amet quam egestas "
        "semper aenean ultricies mi vitae"
    )
)
LOREM_HOSTS = (
    "wp-theme-demo.example",
    "starter-site.example",
    "agency-template.example",
    "shop-demo.example",
)


def _lorem_sentence(rng: random.Random) -> str:
    words = [rng.choice(LOREM_WORDS) for _ in range(rng.randint(6, 14))]
    return " ".join(words).capitalize() + "."


def lorem_page(host: str, i: int, rng: random.Random) -> Capture:
    """A theme demo page still full of placeholder text."""
    paras = [
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
        + " ".join(_lorem_sentence(rng) for _ in range(rng.randint(3, 6)))
    ]
    for _ in range(rng.randint(3, 6)):
        paras.append(" ".join(_lorem_sentence(rng) for _ in range(rng.randint(3, 7))))
    heading = _lorem_sentence(rng).rstrip(".")
    body_html = f"<p>{paras[0]}</p>\n<h2>{heading}</h2>\n" + "".join(
        f"<p>{p}</p>\n" for p in paras[1:]
    )
    title = " ".join(w.capitalize() for w in _lorem_sentence(rng).rstrip(".").split()[:5])
    site = Site(host, "Theme Demo", "Theme Authors")
    url = f"https://{host}/{['sample-page', 'blog', 'portfolio', 'services'][i % 4]}/{i}/"
    html_text = render_page(site, "en", title, title, body_html, page_date(url))
    return Capture(url, "lorem", "la", "synthetic", html_text.encode("utf-8"))


# --- short pages --------------------------------------------------------------------------------

SHORT_PAGES: tuple[tuple[str, str, str], ...] = (
    # (language, title, body HTML): every one under 300 characters of text, title included.
    (
        "en",
        "404 Not Found",
        "<h1>Not Found</h1><p>The requested URL was not found on this server.</p><hr>"
        "<address>Apache/2.4.57 (Debian) Server at {host} Port 443</address>",
    ),
    ("en", "404 Not Found", "<center><h1>404 Not Found</h1></center><hr><center>nginx</center>"),
    (
        "en",
        "Page not found",
        "<h1>Oops! That page can't be found.</h1><p>It looks like nothing was found at this "
        "location. Maybe try a search?</p>",
    ),
    ("en", "Coming soon", "<h1>Coming soon</h1><p>Our new website is under construction.</p>"),
    ("en", "{host}", "<h1>{host}</h1><p>This domain may be for sale.</p><p>Inquire now.</p>"),
    (
        "en",
        "Redirecting...",
        "<p>Redirecting to the new location. If you are not redirected "
        "automatically, follow this link.</p>",
    ),
    (
        "en",
        "403 Forbidden",
        "<h1>Forbidden</h1><p>You don't have permission to access this resource.</p>",
    ),
    (
        "fr",
        "Page introuvable",
        "<h1>Page introuvable</h1><p>La page que vous cherchez n'existe pas ou a été déplacée.</p>",
    ),
    (
        "de",
        "Seite nicht gefunden",
        "<h1>Seite nicht gefunden</h1><p>Die von Ihnen gesuchte "
        "Seite existiert leider nicht mehr.</p>",
    ),
    (
        "es",
        "Página no encontrada",
        "<h1>Página no encontrada</h1><p>Lo sentimos, la página que "
        "busca no existe o ha sido movida.</p>",
    ),
)
SHORT_HOSTS = (
    "docs.python.org",
    "debian-handbook.info",
    "manpages.debian.org",
    "old-blog.example",
    "parked-domain.example",
    "startup-landing.example",
)


def short_page(i: int, rng: random.Random) -> Capture:
    """A page with almost no text: error pages, parked domains, placeholders."""
    lang, title, body = SHORT_PAGES[i % len(SHORT_PAGES)]
    host = SHORT_HOSTS[rng.randrange(len(SHORT_HOSTS))]
    title, body = title.format(host=host), body.format(host=host)
    html_text = (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    url = f"https://{host}/missing/{i:03d}-{rng.randrange(10**6):06d}.html"
    return Capture(url, "short", lang, "synthetic", html_text.encode("utf-8"))


# --- non-HTML -----------------------------------------------------------------------------------


def tiny_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF with a few lines of text, byte-stable (no dates, no ids)."""
    text_ops = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
            for ln in lines
        )
        + " ET"
    )
    stream = text_ops.encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def non_html(images: list[tuple[str, bytes]], n: int, rng: random.Random) -> list[Capture]:
    """Real PNG figures, small PDFs and JSON API answers: no text to extract, no WET record."""
    n_img = max(0, n - 6)
    picked = rng.sample(images, min(n_img, len(images)))
    out = [
        Capture(url, "non_html", None, _image_source(url), data, "image/png")
        for url, data in sorted(picked)
    ]
    for i in range(3):
        lines = [
            f"Quarterly report {2018 + i}",
            "Figures are provisional.",
            f"Reference: SAMPLE-{rng.randrange(10**5):05d}",
        ]
        out.append(
            Capture(
                f"https://files.report-archive.example/reports/q{i + 1}-{2018 + i}.pdf",
                "non_html",
                None,
                "synthetic",
                tiny_pdf(lines),
                "application/pdf",
            )
        )
    for i in range(3):
        payload = {
            "status": "ok",
            "page": i + 1,
            "items": [
                {"id": rng.randrange(10**6), "name": f"item-{k}", "score": rng.randrange(100)}
                for k in range(5)
            ],
        }
        out.append(
            Capture(
                f"https://api.weather-widget.example/v1/items?page={i + 1}",
                "non_html",
                None,
                "synthetic",
                json.dumps(payload, sort_keys=True).encode("utf-8"),
                "application/json",
            )
        )
    return out


def _image_source(url: str) -> str:
    return "python3.11-doc" if url.startswith(f"https://{PYTHON.host}/") else "debian-handbook"


# --- invalid UTF-8 ------------------------------------------------------------------------------


def invalid_utf8(doc: Doc) -> Capture | None:
    """Declared UTF-8, but one paragraph is Latin-1 encoded (a CMS pasting from an old file).

    ``None`` when the document has no paragraph that Latin-1 can encode with accents in it.
    """
    page_html = render_doc(doc)
    for b in doc.blocks:
        if b.level or b.text.isascii():
            continue
        try:
            latin = b.text.encode("latin-1")
        except UnicodeEncodeError:
            continue
        plain = not any(c in b.text for c in "<>&")
        marker = f"<p>{b.text}</p>" if plain else None
        if marker is None or marker not in page_html:
            continue
        before, after = page_html.split(marker, 1)
        body = before.encode("utf-8") + b"<p>" + latin + b"</p>" + after.encode("utf-8")
        return Capture(url_for(doc), "invalid_utf8", doc.lang, doc.source, body)
    return None
