"""`cc_documents`: Common Crawl archives to documents, one input archive per shard.

Two readers, one output: WET `conversion` records (Common Crawl's own text, line 0 is the
title, as CCNet reads them) or WARC `response` records through trafilatura. Both give a
document the id of the *response* record (WET names it in `WARC-Refers-To`), so the same
capture has the same id whichever reader produced it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Literal

import pyarrow as pa

from curation.commoncrawl.extract import (
    HTML_TYPES,
    DecodeError,
    decode_html,
    html_title,
    main_text,
    parse_http,
)
from curation.commoncrawl.warc import Problem, Record, iter_records
from curation.core.documents import (
    DOCUMENT_SCHEMA,
    Document,
    document_id,
    documents_table,
    drop_rows,
)
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

SOURCE = "commoncrawl"
DOCUMENT_TYPES = {"wet": "conversion", "warc": "response"}


class Drop(Exception):
    """A record that becomes a dropped row; `reason` is its machine-readable cause."""

    def __init__(self, reason: str, detail: str = "", text: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail
        self.text = text


@dataclass(frozen=True)
class CCDocuments(Stage):
    """Archive records to documents; drops what is not a usable page, with a reason."""

    name: ClassVar[str] = "cc_documents"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    crawl: str
    input_format: Literal["wet", "warc"] = "wet"
    min_chars: int = 300
    max_record_bytes: int = 8 << 20
    fast_extraction: bool = False

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        kept: list[Document] = []
        dropped: list[tuple[Document, str]] = []
        record_types: Counter[str] = Counter()
        with storage.fs.open_input_file(shard.path) as stream:
            for item in iter_records(stream, self.max_record_bytes):
                if isinstance(item, Record):
                    record_types[item.type or "(none)"] += 1
                    if item.type != DOCUMENT_TYPES[self.input_format]:
                        continue  # warcinfo, request, metadata: not documents
                try:
                    kept.append(self._document(item, shard.name))
                except Drop as drop:
                    dropped.append((self._quarantined(item, shard.name, drop), drop.reason))
        drops = [d for d, _ in dropped]
        return ShardOutput(
            n_in=len(kept) + len(dropped),
            kept=documents_table(kept),
            dropped=drop_rows(documents_table(drops), self.name, [r for _, r in dropped]),
            histograms={"warc_types": record_types},
        )

    def _document(self, item: Record | Problem, file: str) -> Document:
        if isinstance(item, Problem):
            raise Drop(item.reason, item.detail)
        if self.input_format == "wet":
            title, text, extra = self._from_wet(item)
        else:
            title, text, extra = self._from_warc(item)
        if not text.strip():
            raise Drop("empty_record", "no text in the record")
        if len(text) < self.min_chars:
            raise Drop("too_short", f"{len(text)} characters < {self.min_chars}", text)
        return Document(
            id=self._id(item, file),
            source=SOURCE,
            text=text,
            url=item.headers.get("WARC-Target-URI"),
            meta={**self._meta(item, file), "title": title, **extra},
        )

    def _from_wet(self, record: Record) -> tuple[str, str, dict]:
        try:
            content = record.block.decode("utf-8")
        except UnicodeDecodeError as exc:
            detail = f"{exc.reason} at byte {exc.start}"
            raise Drop("invalid_utf8", detail, record.block.decode("utf-8", "replace")) from exc
        title, _, text = content.partition("\n")
        languages = record.headers.get("WARC-Identified-Content-Language")
        extra = {"cc_languages": languages.split(",")} if languages else {}
        return title.strip(), text.strip("\n"), extra

    def _from_warc(self, record: Record) -> tuple[str, str, dict]:
        try:
            response = parse_http(record.block)
        except ValueError as exc:
            raise Drop("malformed_http", str(exc)) from exc
        if response.status != 200:
            raise Drop("http_status", f"HTTP {response.status}")
        if response.content_type not in HTML_TYPES:
            raise Drop("non_html", response.content_type or "no Content-Type")
        try:
            page = decode_html(response)
        except DecodeError as exc:
            text = response.body.decode("utf-8", "replace")
            raise Drop("invalid_encoding", str(exc), text) from exc
        url = record.headers.get("WARC-Target-URI")
        text = main_text(page, url, fast=self.fast_extraction)
        return html_title(page), text, {"content_type": response.content_type}

    def _id(self, item: Record | Problem, file: str) -> str:
        headers = item.headers or {}
        native = headers.get("WARC-Refers-To") or headers.get("WARC-Record-ID")
        return document_id(SOURCE, native or f"{self.crawl}/{file}@{item.offset}")

    def _meta(self, item: Record | Problem, file: str) -> dict:
        headers = item.headers or {}
        meta = {"crawl": self.crawl, "file": file, "offset": item.offset}
        if "WARC-Date" in headers:
            meta["date"] = headers["WARC-Date"]
        if "WARC-Record-ID" in headers:
            meta["record_id"] = headers["WARC-Record-ID"]
        return meta

    def _quarantined(self, item: Record | Problem, file: str, drop: Drop) -> Document:
        headers = item.headers or {}
        meta = self._meta(item, file)
        if drop.detail:
            meta["detail"] = drop.detail
        return Document(
            id=self._id(item, file),
            source=SOURCE,
            text=drop.text[:100_000],
            url=headers.get("WARC-Target-URI"),
            meta=meta,
        )
