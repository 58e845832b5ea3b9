"""The hostile-input corpus, generated (no binary blobs in the repository).

One `HostileSet` per stage that parses raw input or reads Parquet: real good inputs from the
sample world, and hostile files beside them, each with the quarantine reasons it must produce
(reason -> rows). tests/test_hostile_inputs.py runs every set through the stage; a new case is
one more entry in a dict here.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from archives import FRENCH, Page, html_page, tar_gz, tar_member, warc_bytes

GOOD_TEXT = (
    "The package manager resolves dependencies before it installs anything, and it refuses "
    "to continue when two packages claim the same file. This protects the system from a "
    "half-finished upgrade that would leave it in a state nobody can reason about."
)


@dataclass(frozen=True)
class Hostile:
    data: bytes
    reasons: dict[str, int]  # the quarantine rows this input must produce, by reason
    kept: int = 0  # documents it must still yield (a hostile detail in a legitimate page)


@dataclass(frozen=True)
class HostileSet:
    stage: str  # `llamapipe stage NAME`
    good: dict[str, Path]  # input path (relative) -> a real file to copy
    hostile: dict[str, Hostile]  # input path (relative) -> bytes and expected reasons
    options: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)


# --- Common Crawl archives ------------------------------------------------------------------


def _gziptar_member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _warc_record(url: str, body: bytes, content_length: int | None = None) -> bytes:
    """One gzipped WARC response record written by hand, so its Content-Length may lie."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body
    length = len(http) if content_length is None else content_length
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{abs(hash(url)) % 10**12:012d}>\r\n"
        "WARC-Date: 2023-01-31T12:00:00Z\r\n"
        f"WARC-Target-URI: {url}\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    return _gziptar_member(head + http + b"\r\n\r\n")


def _page(url: str, html: str | bytes) -> Page:
    return Page(url, html.encode() if isinstance(html, str) else html)


def commoncrawl_set(sample: Path) -> HostileSet:
    good_page = html_page("https://good.example/a", "Good", [GOOD_TEXT] * 3)
    nested = "<div>" * 100_000 + GOOD_TEXT + "</div>" * 100_000
    attribute = f'<html><body><p title="{"x" * 2_000_000}">{GOOD_TEXT * 3}</p></body></html>'
    records = {
        "truncated.warc.gz": Hostile(warc_bytes([good_page])[:-40], {"truncated_gzip_member": 1}),
        "not-gzip.warc.gz": Hostile(
            b"\x1f\x8b\x08\x00" + b"garbage" * 100, {"corrupt_gzip_member": 1}
        ),
        "huge-length.warc.gz": Hostile(
            _warc_record("https://lying.example/", b"<p>short</p>", content_length=10**9),
            {"record_too_large": 1},
        ),
        "lying-length.warc.gz": Hostile(
            _warc_record("https://lying.example/", b"<p>short</p>", content_length=5000),
            {"truncated_record": 1},
        ),
        # lxml stops at its depth limit: nothing extracted, quarantined as empty.
        "nested.warc.gz": Hostile(
            warc_bytes([_page("https://nest.example/", nested)]), {"empty_record": 1}
        ),
        "attribute.warc.gz": Hostile(
            warc_bytes([_page("https://attr.example/", attribute)]), {}, kept=1
        ),
        "encoding.warc.gz": Hostile(
            warc_bytes([_page("https://enc.example/", b"<p>\xff\xfe\xc3\x28 " * 200 + b"</p>")]),
            {"invalid_encoding": 1},
        ),
        "nul.warc.gz": Hostile(
            warc_bytes(
                [
                    _page(
                        "https://nul.example/",
                        f"<html><body><p>{GOOD_TEXT}\x00\x00{GOOD_TEXT}</p></body></html>",
                    )
                ]
            ),
            {},
            kept=1,
        ),
        "empty.warc.gz": Hostile(b"", {"no_records": 1}),
    }
    good = {
        "CC-SAMPLE-00000.warc.gz": sample / "crawls" / "sample" / "warc" / "CC-SAMPLE-00000.warc.gz"
    }
    return HostileSet("cc_documents", good, records, ("--input-format", "warc", "--crawl", "h"))


# --- Wikipedia and StackExchange XML --------------------------------------------------------

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY a "aaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
"""


def wikipedia_set(sample: Path) -> HostileSet:
    page = "<page><title>T</title><ns>0</ns><id>1</id><revision><text>{}</text></revision></page>"
    body = "<mediawiki>" + page.format("&h;") + "</mediawiki>"
    external = "<mediawiki>" + page.format("&secret;") + "</mediawiki>"
    good = {name: sample / "wikipedia" / name for name in ["enwiki-sample-pages-articles.xml.bz2"]}
    hostile = {
        "xxwiki-laughs-pages-articles.xml": Hostile((LAUGHS + body).encode(), {"malformed_xml": 1}),
        "xywiki-external-pages-articles.xml": Hostile(
            (EXTERNAL + external).encode(), {"malformed_xml": 1}
        ),
        "xzwiki-corrupt-pages-articles.xml.bz2": Hostile(
            bz2.compress(b"<mediawiki><page>" * 100)[:-30], {"malformed_xml": 1}
        ),
        "xwwiki-empty-pages-articles.xml": Hostile(b"", {"malformed_xml": 1}),
    }
    return HostileSet("wikipedia", good, hostile)


def stackexchange_set(sample: Path) -> HostileSet:
    site = "debian.stackexchange.com"
    row = '<row Id="1" PostTypeId="1" Score="5" Body="{}" />'
    good = {f"{site}/Posts.xml": sample / "stackexchange" / site / "Posts.xml"}
    hostile = {
        "laughs.stackexchange.com/Posts.xml": Hostile(
            (LAUGHS + "<posts>" + row.format("&h;") + "</posts>").encode(), {"malformed_xml": 1}
        ),
        "external.stackexchange.com/Posts.xml": Hostile(
            (EXTERNAL + "<posts>" + row.format("&secret;") + "</posts>").encode(),
            {"malformed_xml": 1},
        ),
        "cut.stackexchange.com/Posts.xml": Hostile(b"<posts><row Id='1' Bo", {"malformed_xml": 1}),
        "empty.stackexchange.com/Posts.xml": Hostile(b"", {"malformed_xml": 1}),
    }
    return HostileSet("stackexchange", good, hostile, ("--top-sites", "8"))


# --- ArXiv tarballs and LaTeX ---------------------------------------------------------------

PREAMBLE = "\\documentclass{article}\n\\begin{document}\n"


def arxiv_set(sample: Path) -> HostileSet:
    good_tex = (PREAMBLE + "\\section{Intro}\nGood paper.\n\\end{document}\n").encode()
    main = tar_member("main.tex", good_tex)
    recursive = (PREAMBLE + "\\def\\a{\\a}\n\\section{Loop}\n\\a\n\\end{document}\n").encode()
    unbalanced = (PREAMBLE + "\\section{Open}\n\\textbf{never closed " * 50).encode()
    good = {name: sample / "arxiv" / name for name in ["2301.00001.tar.gz", "2301.00002.tar.gz"]}
    hostile = {
        "9901.00001.tar.gz": Hostile(
            tar_gz(main, tar_member("../evil.tex", b"x")), {"unsafe_member": 1}
        ),
        "9901.00002.tar.gz": Hostile(
            tar_gz(main, tar_member("/etc/evil.tex", b"x")), {"unsafe_member": 1}
        ),
        "9901.00003.tar.gz": Hostile(
            tar_gz(main, tar_member("l.tex", kind=tarfile.SYMTYPE, link="../../etc/passwd")),
            {"unsafe_member": 1},
        ),
        "9901.00004.tar.gz": Hostile(
            tar_gz(main, tar_member("h.tex", kind=tarfile.LNKTYPE, link="/etc/passwd")),
            {"unsafe_member": 1},
        ),
        # 200 MB of zeros in a 200 KB archive: stops at the unpacked-size limit.
        "9901.00005.gz": Hostile(
            gzip.compress(b"\0" * 200_000_000, 9, mtime=0), {"archive_too_large": 1}
        ),
        "9901.00006.tar.gz": Hostile(
            tar_gz(tar_member("main.tex", recursive)), {"macro_expansion_limit": 1}
        ),
        "9901.00007.tar.gz": Hostile(tar_gz(tar_member("main.tex", unbalanced)), {}, kept=1),
        "9901.00008.tar.gz": Hostile(tar_gz(main)[:50], {"corrupt_gzip": 1}),
        "9901.00009.tar.gz": Hostile(b"", {"not_gzip": 1}),
    }
    return HostileSet("arxiv", good, hostile)


# --- GitHub JSON lines and books ------------------------------------------------------------


def github_set(sample: Path) -> HostileSet:
    code = "def parse(value):\n    return value.strip().split(',')\n"
    ok = {"repo_name": "o/r", "path": "a.py", "content": code, "license": "mit", "size": 1}
    rows = [json.dumps(dict(ok, path=f"m{i}.py", content=f"# {i}\n{code}")) for i in range(50)]
    nul = dict(ok, path="nul.py", content=code.replace("(value)", "(value\x00\x00)"))
    good = {"github-00000.jsonl.gz": sample / "github" / "github-00000.jsonl.gz"}
    hostile = {
        # Cut mid-stream: the rows before the cut are kept, the torn one quarantined.
        "cut.jsonl.gz": Hostile(
            gzip.compress("\n".join(rows).encode(), mtime=0)[:-20], {"malformed_row": 1}, kept=47
        ),
        "garbage.jsonl": Hostile(b"{not json\n[1, 2]\n\xff\xfe\n", {"malformed_row": 3}),
        "nul.jsonl": Hostile((json.dumps(nul) + "\n").encode(), {}, kept=1),
        "empty.jsonl": Hostile(b"", {}),
    }
    return HostileSet("github", good, hostile)


def books_set(sample: Path) -> HostileSet:
    """Gutenberg and Books3 text files: encodings, binary, empty, one endless line."""
    good = {
        f"gutenberg/{name}": sample / "books" / "gutenberg" / name
        for name in ["pg14832.txt", "pg16214.txt"]
    }
    words = (GOOD_TEXT + " ") * 400
    hostile = {
        "gutenberg/pg99001.txt": Hostile(b"\xff\xfe\x00\xd8" * 5000, {"invalid_encoding": 1}),
        "books3/binary.txt": Hostile(bytes(range(256)) * 200, {"invalid_encoding": 1}),
        "books3/empty.txt": Hostile(b"", {"empty_book": 1}),
        "books3/one-line.txt": Hostile(words.encode(), {}, kept=1),
        "books3/nul.txt": Hostile(((FRENCH + "\x00 ") * 400).encode(), {}, kept=1),
    }
    return HostileSet("books", good, hostile)


# --- Parquet inputs of the later stages -----------------------------------------------------


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def parquet_set(stage: str, good: dict[str, Path], options: tuple[str, ...] = ()) -> HostileSet:
    """A stage over contract Parquet: wrong schemas, a truncated file, an empty file."""
    wrong = _parquet(pa.table({"foo": [1, 2, 3]}))
    typed = _parquet(
        pa.table({"id": [1], "source": ["s"], "text": ["t"], "url": ["u"], "meta": ["{}"]})
    )
    whole = next(iter(good.values())).read_bytes()
    hostile = {
        "zz-wrong-schema.parquet": Hostile(wrong, {"wrong_schema": 1}),
        "zz-wrong-type.parquet": Hostile(typed, {"wrong_schema": 1}),
        "zz-truncated.parquet": Hostile(whole[: len(whole) // 2], {"unreadable_parquet": 1}),
        "zz-empty.parquet": Hostile(b"", {"unreadable_parquet": 1}),
        "zz-no-rows.parquet": Hostile(_parquet(pq.read_table(io.BytesIO(whole)).slice(0, 0)), {}),
    }
    return HostileSet(stage, good, hostile, options)
