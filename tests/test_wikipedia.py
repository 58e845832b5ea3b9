import bz2
import io
import json
import tracemalloc
from xml.sax.saxutils import escape

import pyarrow.parquet as pq
import pytest
from defusedxml import DefusedXmlException

from curation.core.documents import document_id
from curation.core.runner import run_stage
from curation.core.stage import ShardInput
from curation.sources.wikipedia import (
    MalformedExport,
    WikipediaText,
    article_url,
    cited_urls,
    export_language,
    iter_articles,
    iter_pages,
    normalize_url,
    wikitext_to_text,
)

EXPORT_10 = "http://www.mediawiki.org/xml/export-0.10/"
EXPORT_11 = "http://www.mediawiki.org/xml/export-0.11/"
FR_NAMESPACES = {-2: "Média", 6: "Fichier", 14: "Catégorie", 1: "Discussion"}


def page_xml(title: str, text: str, page_id: int, ns: int = 0, redirect: str | None = None):
    redirect_tag = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    return (
        f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}"
        f"<revision><id>{page_id * 10}</id><model>wikitext</model>"
        f'<text bytes="{len(text)}" xml:space="preserve">{escape(text)}</text></revision></page>'
    )


def export_xml(pages: list[str], xmlns: str | None = EXPORT_10, namespaces=None) -> bytes:
    names = "".join(
        f'<namespace key="{key}" case="first-letter">{escape(name)}</namespace>'
        for key, name in (namespaces or {}).items()
    )
    attr = f' xmlns="{xmlns}"' if xmlns else ""
    return (
        f'<mediawiki{attr} version="0.10" xml:lang="fr"><siteinfo><sitename>Wikipedia</sitename>'
        f"<namespaces>{names}</namespaces></siteinfo>{''.join(pages)}</mediawiki>"
    ).encode()


ARTICLE = "'''Paris''' est la [[capitale]] de la [[France|République française]].\n"
PAGES = [
    page_xml("Paris", ARTICLE + "[[Catégorie:Ville]]", 1),
    page_xml("Ville lumière", "#WEITERLEITUNG [[Paris]]", 2, redirect="Paris"),
    page_xml("Lutèce", "#redirect [[Paris]]", 3),  # no <redirect> element, only the text
    page_xml("Discussion:Paris", "Une page de discussion.", 4, ns=1),
    page_xml("Modèle vide", "{{Infobox ville}}<!-- rien -->", 5),
]


# --- markup -------------------------------------------------------------------------------


def test_links_keep_their_anchor_text_or_their_target():
    text = wikitext_to_text("A [[Foo|bar]] and [[Baz]]s and [[:Category:Qux|qux]] too.")
    assert text == "A bar and Bazs and qux too."


def test_templates_comments_and_refs_are_removed():
    wikitext = (
        "{{Infobox software\n| name = X\n}}\n<!-- a hidden note -->"
        "Body text.<ref>[https://example.org/a Cited page]</ref>"
        '<ref name="b">{{cite web|url=https://example.org/b|title=B}}</ref><ref name="b"/>'
    )
    assert wikitext_to_text(wikitext) == "Body text."


def test_tables_are_removed_with_their_cells():
    wikitext = (
        'Before.\n{| class="wikitable"\n! Section !! Title\n|-\n| 1.1 || [[Cell]]\n|}\nAfter.'
    )
    assert wikitext_to_text(wikitext) == "Before.\nAfter."


def test_category_file_and_interwiki_links_are_removed_but_colon_titles_kept():
    wikitext = (
        "See [[Stage 3: cleanup]].\n[[File:a.png|thumb|A caption with a [[link]]]]\n"
        "[[Image:b.jpg]][[Category:Debian]]\n[[Catégorie:Debian]]\n[[fr:Titre]][[zh-yue:X]]"
    )
    assert wikitext_to_text(wikitext, hidden_prefixes=["Catégorie"]) == "See Stage 3: cleanup."


def test_localized_category_links_need_the_wikis_namespace_names():
    assert wikitext_to_text("[[Catégorie:Debian]]") == "Catégorie:Debian"
    assert wikitext_to_text("[[Catégorie:Debian]]", hidden_prefixes=["Catégorie"]) == ""


def test_bold_italic_headings_lists_and_blank_lines():
    wikitext = (
        "'''Bold''' and ''italic'' &amp; more.\n\n\n== Section  title ==\n\n"
        "* first item\n# second item\n__NOTOC__\n----\nLast line.<br/>After break."
    )
    assert wikitext_to_text(wikitext) == (
        "Bold and italic & more.\nSection title\nfirst item\nsecond item\nLast line.\nAfter break."
    )


def test_lines_with_unmatched_markup_are_dropped():
    wikitext = "Good line.\nBroken {{cite web|url=https://x.example\nAnother good line."
    text = wikitext_to_text(wikitext)
    assert "{{" not in text and text.startswith("Good line.")


def test_sample_exports_give_clean_text(sample_world):
    for path in sorted((sample_world / "wikipedia").glob("*.xml.bz2")):
        articles = list(iter_articles(path))
        assert len(articles) > 100
        for article in articles:
            for leftover in ("{{", "}}", "[[", "]]", "<ref", "|}", "{|", "<!--"):
                assert leftover not in article.text, (path.name, article.title, leftover)


# --- export parsing -----------------------------------------------------------------------


def test_redirects_and_other_namespaces_are_skipped():
    articles = list(iter_articles(io.BytesIO(export_xml(PAGES))))
    assert [(a.title, a.page_id) for a in articles] == [("Paris", 1), ("Modèle vide", 5)]
    reasons = [p.skip_reason for p in iter_pages(io.BytesIO(export_xml(PAGES)))]
    assert reasons == [None, "redirect", "redirect", "non_article_namespace", None]


@pytest.mark.parametrize("xmlns", [EXPORT_10, EXPORT_11, None])
def test_tags_match_whatever_the_export_namespace(xmlns):
    articles = list(iter_articles(io.BytesIO(export_xml(PAGES, xmlns, FR_NAMESPACES))))
    assert articles[0].text == "Paris est la capitale de la République française."


def test_bz2_and_plain_paths_read_the_same(tmp_path):
    data = export_xml(PAGES, namespaces=FR_NAMESPACES)
    (tmp_path / "plain.xml").write_bytes(data)
    (tmp_path / "packed.xml.bz2").write_bytes(bz2.compress(data))
    plain = list(iter_articles(tmp_path / "plain.xml"))
    assert plain == list(iter_articles(tmp_path / "packed.xml.bz2"))
    assert plain == list(iter_articles(io.BytesIO(bz2.compress(data))))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<mediawiki><page><title>&lol9;</title><ns>0</ns><id>1</id>
<revision><text>&lol9;</text></revision></page></mediawiki>"""


def test_billion_laughs_is_refused_not_expanded():
    with pytest.raises(MalformedExport, match="Forbidden") as info:
        list(iter_pages(io.BytesIO(BILLION_LAUGHS)))
    assert isinstance(info.value.__cause__, DefusedXmlException)


def test_pages_are_cleared_as_they_stream():
    body = "Lorem ipsum dolor sit amet. " * 700  # ~20 KB per page, ~4 MB in all
    data = export_xml([page_xml(f"P{i}", body, i) for i in range(200)])
    tracemalloc.start()
    try:
        for _ in iter_pages(io.BytesIO(data)):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) / 4


# --- citations ----------------------------------------------------------------------------


def test_cited_urls_come_from_refs_in_both_styles_once_each():
    wikitext = (
        "Text [https://outside.example/not-cited here].<ref>[https://a.example/x Title A]</ref>"
        '<ref name="c1">{{cite web|url=https://b.example/y?q=1|title=B}}</ref>'
        '<ref name="c1"/><ref>again [https://a.example/x Title A]</ref>'
        '<references>\n<ref name="c2">{{Cite news |url= https://c.example/z }}</ref>\n'
        "</references>"
    )
    assert cited_urls(wikitext) == [
        "https://a.example/x",
        "https://b.example/y?q=1",
        "https://c.example/z",
    ]


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTPS://WWW.Example.COM/Path/Page.html", "https://example.com/Path/Page.html"),
        ("https://example.com/dir/#section", "https://example.com/dir"),
        ("http://example.com:80/a?b=1&c=2", "http://example.com/a?b=1&c=2"),
        ("https://example.com:443/", "https://example.com"),
        ("https://example.com:8443/a/", "https://example.com:8443/a"),
        ("http://www.example.com", "http://example.com"),
    ],
)
def test_normalize_url(url, normalized):
    assert normalize_url(url) == normalized


def test_every_planted_citation_of_the_sample_is_found(sample_world):
    wiki = sample_world / "wikipedia"
    found = set()
    for path in wiki.glob("*.xml.bz2"):
        language = export_language(path.name)
        for page in iter_pages(path):
            if page.skip_reason is None:
                found |= {(language, normalize_url(u)) for u in cited_urls(page.wikitext)}
    planted = [json.loads(line) for line in (wiki / "cited_urls.jsonl").read_text().splitlines()]
    assert planted and {(c["lang"], normalize_url(c["url"])) for c in planted} <= found


# --- the stage ----------------------------------------------------------------------------


def write_export(path, data: bytes) -> ShardInput:
    path.write_bytes(bz2.compress(data))
    return ShardInput(path.name, str(path), f"fp-{path.name}", path.stat().st_size)


def test_export_language_and_article_url():
    assert export_language("frwiki-20230301-pages-articles.xml.bz2") == "fr"
    assert export_language("zh_min_nanwiki-latest-pages-articles1.xml.bz2") == "zh_min_nan"
    assert article_url("zh_min_nan", "Tâi oân") == "https://zh-min-nan.wikipedia.org/wiki/Tâi_oân"
    with pytest.raises(ValueError, match="not a Wikipedia export"):
        export_language("pages-articles.xml.bz2")


def test_stage_keeps_articles_and_drops_the_rest_with_reasons(storage, tmp_path):
    cited = ARTICLE.strip() + "<ref>[https://www.example.org/src/ Source]</ref>"
    pages = [page_xml("Tour Eiffel", cited, 6), *PAGES]
    shard = write_export(tmp_path / "frwiki-test-pages-articles.xml.bz2", export_xml(pages))
    out = str(tmp_path / "wiki")
    manifest = run_stage(WikipediaText(), [shard], out, storage)

    kept = pq.read_table(f"{out}/part-00000.parquet").to_pylist()
    assert [r["url"] for r in kept] == [
        "https://fr.wikipedia.org/wiki/Tour_Eiffel",
        "https://fr.wikipedia.org/wiki/Paris",
    ]
    first = kept[0]
    assert first["id"] == document_id("wikipedia", "fr:6")
    assert first["source"] == "wikipedia" and first["language"] == "fr"
    assert json.loads(first["meta"]) == {
        "cited_urls": ["https://www.example.org/src/"],
        "page_id": 6,
        "title": "Tour Eiffel",
    }
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet")
    assert dropped.column("reason").to_pylist() == [
        "redirect",
        "redirect",
        "non_article_namespace",
        "empty_after_cleaning",
    ]
    assert manifest.n_in == 6 and manifest.kept == 2
    assert manifest.histograms["language"] == {"fr": 2}


def test_a_malformed_export_is_one_dropped_row_after_the_pages_before_it(storage, tmp_path):
    truncated = export_xml(PAGES[:1] + [page_xml("Cut", "Half a page", 9)])[:-60]
    shard = write_export(tmp_path / "dewiki-cut-pages-articles.xml.bz2", truncated)
    out = str(tmp_path / "wiki")
    manifest = run_stage(WikipediaText(), [shard], out, storage)
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet").to_pylist()
    assert [r["reason"] for r in dropped] == ["malformed_xml"]
    assert "ParseError" in json.loads(dropped[0]["meta"])["error"]
    assert manifest.n_in == 2 and manifest.kept == 1


def test_a_hostile_export_is_reported_not_expanded(storage, tmp_path):
    shard = write_export(tmp_path / "enwiki-evil-pages-articles.xml.bz2", BILLION_LAUGHS)
    out = str(tmp_path / "wiki")
    manifest = run_stage(WikipediaText(), [shard], out, storage)
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet").to_pylist()
    assert manifest.n_in == 1 and manifest.dropped == {"malformed_xml": 1}
    assert "DTDForbidden" in json.loads(dropped[0]["meta"])["error"]


def test_small_batches_stream_the_same_rows_as_one_batch(storage, tmp_path):
    cited = ARTICLE.strip() + "<ref>[https://www.example.org/src/ Source]</ref>"
    pages = [page_xml("Tour Eiffel", cited, 6), *PAGES]
    shard = write_export(tmp_path / "frwiki-test-pages-articles.xml.bz2", export_xml(pages))
    whole = run_stage(WikipediaText(), [shard], str(tmp_path / "whole"), storage)
    streamed = run_stage(WikipediaText(batch_pages=2), [shard], str(tmp_path / "streamed"), storage)
    for sub in ["", "/_dropped"]:
        a = pq.read_table(f"{tmp_path}/whole{sub}/part-00000.parquet")
        b = pq.read_table(f"{tmp_path}/streamed{sub}/part-00000.parquet")
        assert a.to_pylist() == b.to_pylist()
    assert (whole.n_in, whole.kept, whole.dropped) == (
        streamed.n_in,
        streamed.kept,
        streamed.dropped,
    )
