"""Writing small WARC and WET archives inside tests, with warcio (an independent writer)."""

from __future__ import annotations

import gzip
import io
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curation.core.stage import ShardInput

DATE = "2023-01-31T12:00:00Z"


@dataclass(frozen=True)
class Page:
    url: str
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: str = "200 OK"

    @property
    def record_id(self) -> str:
        return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self.url)}>"


def html_page(url: str, title: str, paragraphs: list[str]) -> Page:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    return Page(url, html.encode())


def warc_bytes(pages: list[Page]) -> bytes:
    """Response records, one gzip member each, as Common Crawl writes them."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    for page in pages:
        http = StatusAndHeaders(
            page.status, [("Content-Type", page.content_type)], protocol="HTTP/1.1"
        )
        record = writer.create_warc_record(
            page.url,
            "response",
            payload=io.BytesIO(page.body),
            http_headers=http,
            warc_headers_dict={"WARC-Record-ID": page.record_id, "WARC-Date": DATE},
        )
        writer.write_record(record)
    return out.getvalue()


def wet_bytes(docs: list[tuple[Page, bytes]], new_layout: bool = False) -> bytes:
    """Conversion records referring to the pages' response records.

    `new_layout` writes the post-2020 header order (with the language header) by hand, since
    a reader that parses headers by position must not be fooled by it.
    """
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    for page, text in docs:
        if new_layout:
            headers = {
                "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, page.url)}>",
                "Content-Type": "text/plain",
                "WARC-Refers-To": page.record_id,
                "WARC-Date": DATE,
                "WARC-Identified-Content-Language": "eng,fra",
            }
        else:
            headers = {
                "WARC-Date": DATE,
                "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, page.url)}>",
                "WARC-Refers-To": page.record_id,
            }
        record = writer.create_warc_record(
            page.url, "conversion", payload=io.BytesIO(text), warc_headers_dict=headers
        )
        writer.write_record(record)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


ENGLISH = (
    "The package manager resolves dependencies before it installs anything, and it refuses "
    "to continue when two packages claim the same file. This behaviour protects the system "
    "from a half-finished upgrade that would leave it in a state nobody can reason about."
)
FRENCH = (
    "Le gestionnaire de paquets résout les dépendances avant d'installer quoi que ce soit, "
    "et il refuse de continuer lorsque deux paquets revendiquent le même fichier. Ce "
    "comportement protège le système contre une mise à jour inachevée."
)
GERMAN = (
    "Die Paketverwaltung löst die Abhängigkeiten auf, bevor sie irgendetwas installiert, und "
    "sie bricht ab, wenn zwei Pakete dieselbe Datei beanspruchen. Dieses Verhalten schützt "
    "das System vor einer halb fertigen Aktualisierung."
)


def annotated_shard(path: Path, texts: list[str], schema: pa.Schema) -> ShardInput:
    """A part file with `schema`'s columns: the texts given, plausible stage annotations for
    the rest (English, head bucket, ...), for testing stages that sit late in the graph."""
    defaults = {
        "source": "t",
        "url": None,
        "meta": "{}",
        "language": "en",
        "language_score": 0.9,
        "perplexity": 300.0,
        "bucket": "head",
        "wiki_prob": 0.5,
    }
    n = len(texts)
    columns = {
        name: [f"{path.stem}-{i}" for i in range(n)]
        if name == "id"
        else texts
        if name == "text"
        else [defaults[name]] * n
        for name in schema.names
    }
    pq.write_table(pa.table(columns, schema=schema), path)
    return ShardInput(path.stem, str(path), f"fp-{path.stem}", path.stat().st_size)


def tar_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
    """A tar member (any type, any name: `../x`, links out of the tree) and its bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mtime = kind, link, len(data), 0
    return info, data


def tar_gz(*members) -> bytes:
    """A gzipped tarball of `tar_member`s, written as given (no path checks)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return gzip.compress(out.getvalue(), mtime=0)
