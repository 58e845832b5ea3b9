"""Pages -> captures -> WARC and WET files, plus the ``planted.jsonl`` ground truth.

Captures are shuffled (seeded) and dealt over the files so every file mixes sites, languages
and planted kinds. Each capture is a request, a response and a metadata record, every record
its own gzip member; the WET file of the same captures holds one ``conversion`` record per HTML
response. Half the WET files use the pre-2020 header layout, half the newer one. The last
capture of one file is cut inside its gzip member, in the WARC and in the WET file alike.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sample_world import planted, warc
from sample_world.lang import ISO3
from sample_world.planted import Capture
from sample_world.sites import html_to_text
from sample_world.text import Doc

CRAWL = "CC-SAMPLE"
N_FILES = 8
TRUNCATED_FILE = 5  # index of the file whose last capture is cut
# How many of each planted kind (``page`` is whatever is left of the documents).
N_EXACT, N_NEAR, N_SPAM, N_LOREM, N_SHORT, N_NON_HTML, N_INVALID = 40, 40, 30, 20, 30, 20, 5
FILE_START = {  # the pre-2020 WET layout goes with 2019 captures, the newer with 2021 ones
    "2019": datetime(2019, 8, 17, 9, 0, 0),
    "2021": datetime(2021, 4, 10, 9, 0, 0),
}


@dataclass(frozen=True)
class CrawlFiles:
    """Names of one WARC file and its WET conversion."""

    index: int

    @property
    def warc(self) -> str:
        return f"{CRAWL}-{self.index:05d}.warc.gz"

    @property
    def wet(self) -> str:
        return f"{CRAWL}-{self.index:05d}.warc.wet.gz"

    @property
    def layout(self) -> str:
        return "2019" if self.index % 2 == 0 else "2021"


def plan_captures(
    docs: list[Doc],
    images: list[tuple[str, bytes]],
    rng: random.Random,
    max_pages: int | None = None,
) -> tuple[list[Capture], Capture]:
    """All captures of the crawl, and separately the one that will be truncated."""
    order = list(docs)
    rng.shuffle(order)
    if max_pages is not None:
        order = order[:max_pages]
    truncated_doc = next(d for d in order if d.lang == "en")
    order.remove(truncated_doc)
    truncated = planted.page(truncated_doc, kind="truncated")

    captures: list[Capture] = []
    invalid = 0
    remaining: list[Doc] = []
    for d in order:
        wanted = invalid < N_INVALID and d.lang in {"fr", "de", "es"}
        cap = planted.invalid_utf8(d) if wanted else None
        if cap is not None:
            captures.append(cap)
            invalid += 1
        else:
            remaining.append(d)

    pages = [(d, planted.page(d)) for d in remaining]
    captures += [c for _, c in pages]
    rich = [(d, c) for d, c in pages if len(d.paragraphs) >= 4]
    n_exact = min(N_EXACT, len(rich) // 4)
    n_near = min(N_NEAR, len(rich) // 4)
    chosen = rng.sample(rich, n_exact + n_near)
    captures += [planted.exact_duplicate(c) for _, c in chosen[:n_exact]]
    captures += [planted.near_duplicate(d, c.url, rng) for d, c in chosen[n_exact:]]

    hosts = sorted(planted.SPAM_TOPICS)
    captures += [planted.spam_page(hosts[i % len(hosts)], i, rng) for i in range(N_SPAM)]
    captures += [
        planted.lorem_page(planted.LOREM_HOSTS[i % len(planted.LOREM_HOSTS)], i, rng)
        for i in range(N_LOREM)
    ]
    captures += [planted.short_page(i, rng) for i in range(N_SHORT)]
    captures += planted.non_html(images, N_NON_HTML, rng)
    rng.shuffle(captures)
    return captures, truncated


_TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737: documentation addresses


def _ip(host: str) -> str:
    h = hashlib.sha1(host.encode()).digest()
    return f"{_TEST_NETS[h[0] % 3]}.{h[1] % 253 + 1}"


def _server(host: str) -> str:
    h = hashlib.sha1(host.encode()).digest()
    return ("Apache", "nginx", "cloudflare", "Apache/2.4.57 (Debian)")[h[2] % 4]


def _http_request(url: str) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return (
        f"GET {target} HTTP/1.1\r\n"
        f"User-Agent: CCBot/2.0 (https://commoncrawl.org/faq/)\r\n"
        f"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        f"Accept-Language: en-US,en;q=0.5\r\n"
        f"If-Modified-Since: Mon, 01 Jul 2019 00:00:00 GMT\r\n"
        f"Accept-Encoding: br,gzip\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Connection: Keep-Alive\r\n\r\n"
    ).encode("ascii")


def _http_response_head(cap: Capture, dt: datetime) -> bytes:
    host = urlsplit(cap.url).netloc
    return (
        "HTTP/1.1 200 OK\r\n"
        f"Date: {warc.http_date(dt)}\r\n"
        f"Server: {_server(host)}\r\n"
        f"Last-Modified: {warc.http_date(dt - timedelta(days=37, hours=5))}\r\n"
        f"Content-Type: {cap.content_type}\r\n"
        f"Content-Length: {len(cap.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


def _languages(cap: Capture) -> str:
    primary = ISO3.get(cap.language or "", "unk")
    # Man pages and the handbook quote English command output: CLD2 reports it second.
    if cap.language != "en" and cap.source != "synthetic":
        return f"{primary},eng"
    return primary


def _info_fields(filename: str, description: str) -> list[tuple[str, str]]:
    return [
        ("isPartOf", CRAWL),
        ("publisher", "llama-pipeline sample world (synthetic Common Crawl layout)"),
        ("description", description),
        # The label the files have carried since the builder lived in curation/sample: a new
        # one changes every archive's bytes, so it waits for a BUILDER_VERSION bump.
        ("operator", "llama-pipeline curation.sample"),
        ("hostname", "sample-builder"),
        ("software", "llama-pipeline curation.sample"),
        ("robots", "checked via crawler-commons 1.1 (https://github.com/crawler-commons)"),
        ("format", "WARC File Format 1.0"),
        (
            "conformsTo",
            "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/",
        ),
        ("filename", filename),
    ]


def write_file_pair(
    files: CrawlFiles,
    captures: list[Capture],
    truncated: Capture | None,
    out_dir: Path,
    seed: int,
    rng: random.Random,
) -> list[dict]:
    """Write one WARC file and its WET file; return the planted.jsonl rows of its captures."""
    start = FILE_START[files.layout] + timedelta(hours=3 * files.index)
    info_id = warc.record_id(str(seed), "warcinfo", files.warc)
    wet_info_id = warc.record_id(str(seed), "warcinfo", files.wet)
    warc_out = [
        warc.member(
            warc.warcinfo(
                files.warc,
                start,
                info_id,
                _info_fields(files.warc, "Sample crawl: real text, planted cases; see README.md"),
            )
        )
    ]
    wet_out = [
        warc.member(
            warc.warcinfo(
                files.wet,
                start,
                wet_info_id,
                [
                    ("Software-Info", "llama-pipeline curation.sample WET conversion"),
                    ("Extracted-Date", warc.http_date(start)),
                    *_info_fields(
                        files.wet, "Text extracted from the sample crawl's HTML captures"
                    )[:4],
                ],
            )
        )
    ]
    rows = []
    dt = start
    all_caps = [*captures, *([truncated] if truncated else [])]
    for cap in all_caps:
        dt = dt + timedelta(seconds=rng.randint(5, 90))
        last_cut = cap is truncated
        ip = _ip(urlsplit(cap.url).netloc)
        req_id = warc.record_id(str(seed), "request", files.warc, cap.url)
        resp_id = warc.record_id(str(seed), "response", files.warc, cap.url)
        meta_id = warc.record_id(str(seed), "metadata", files.warc, cap.url)
        req_block = _http_request(cap.url)
        warc_out.append(warc.member(warc.request(cap.url, dt, req_id, info_id, ip, req_block)))
        payload_type = cap.content_type.split(";")[0]
        resp = warc.member(
            warc.response(
                cap.url,
                dt,
                resp_id,
                info_id,
                req_id,
                ip,
                _http_response_head(cap, dt),
                cap.body,
                payload_type,
            )
        )
        if last_cut:
            warc_out.append(resp[: len(resp) // 2])  # the crawler died mid-write
        else:
            warc_out.append(resp)
            fields = [("fetchTimeMs", str(rng.randint(60, 2400)))]
            if cap.is_html:
                fields.append(("charset-detected", "UTF-8"))
            warc_out.append(
                warc.member(warc.metadata(cap.url, dt, meta_id, info_id, resp_id, fields))
            )
        if cap.is_html:
            text = html_to_text(cap.body)
            conv_id = warc.record_id(str(seed), "conversion", files.wet, cap.url)
            conv = warc.member(
                warc.conversion(cap.url, dt, conv_id, resp_id, text, files.layout, _languages(cap))
            )
            wet_out.append(conv[: len(conv) // 2] if last_cut else conv)
        rows.append(
            {
                "url": cap.url,
                "warc_file": files.warc,
                "wet_file": files.wet if cap.is_html else None,
                "response_record_id": resp_id,
                "kind": cap.kind,
                "language": cap.language,
                "source": cap.source,
                "duplicate_of": cap.duplicate_of,
            }
        )
    warc_dir = out_dir / "warc"
    wet_dir = out_dir / "wet"
    (warc_dir / files.warc).write_bytes(b"".join(warc_out))
    (wet_dir / files.wet).write_bytes(b"".join(wet_out))
    return rows


def write_crawl(
    captures: list[Capture], truncated: Capture, out_dir: Path, seed: int, rng: random.Random
) -> list[dict]:
    """Deal captures over ``N_FILES`` file pairs; write them and ``planted.jsonl``."""
    (out_dir / "warc").mkdir(parents=True, exist_ok=True)
    (out_dir / "wet").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for i in range(N_FILES):
        rows += write_file_pair(
            CrawlFiles(i),
            captures[i::N_FILES],
            truncated if i == TRUNCATED_FILE else None,
            out_dir,
            seed,
            rng,
        )
    write_jsonl(out_dir / "planted.jsonl", rows)
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
