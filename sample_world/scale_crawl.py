"""Copies of the sample crawl's segments for the scale world, record by record.

Copy ``k`` of segment ``i`` (of ``n``) is the WARC/WET pair numbered ``k * n + i``: names keep
their pattern and their parity (even numbers carry the 2019 WET header layout, as in the
sample), and every copy of the truncated capture's segment ends in a truncated copy of it.
Copy 0 is the sample's bytes. In copy ``k > 0`` every record changes what the stages key on:

- ``WARC-Target-URI``: ``https://host/copy-000k/path``. The host is kept, so the per-host ground
  truth (``boilerplate.jsonl``) still holds; the request block's request line follows.
- every record id (``WARC-Record-ID`` and the ids pointing at one: ``WARC-Warcinfo-ID``,
  ``WARC-Concurrent-To``, ``WARC-Refers-To``): a uuid5 of (k, the original id). ``cc_documents``
  takes a document's id from the WET record's ``WARC-Refers-To``, so every copy is a new
  document.
- file names (``WARC-Filename`` and the warcinfo's ``filename`` field).
- a near copy's text (``scale_edit``): the same edits in the response's HTML payload and in the
  WET text, with ``Content-Length`` (WARC and HTTP) and digests recomputed. An exact copy keeps
  its payload, so its ``WARC-Payload-Digest`` too: the key Common Crawl itself dedups on.

Dates, IP addresses, HTTP headers other than ``Content-Length``, and metadata blocks are kept.

Line dedup (CCNet's) removes a line found in two documents of one group of shards, so exact
copies in one group lose every line there; with ``group_size`` = n, each group is one copy.
"""

from __future__ import annotations

import re
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sample_world import warc
from sample_world.scale_edit import (
    Copies,
    Edit,
    apply_bytes,
    copy_tag,
    edit_kind,
    numbered_name,
)

SOURCE = "commoncrawl"
_CHUNK = 1 << 16
_ID_KEYS = ("WARC-Record-ID", "WARC-Warcinfo-ID", "WARC-Concurrent-To", "WARC-Refers-To")
_CONTENT_LENGTH = re.compile(rb"(?im)^Content-Length: \d+$")


def copy_url(url: str, copy: int) -> str:
    """The URL of copy ``copy``: the same host, the path under ``/copy-000k``."""
    if copy == 0:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{copy_tag(copy)}{parts.path or '/'}"))


def copy_id(record_id: str, copy: int) -> str:
    return record_id if copy == 0 else warc.record_id("scale", str(copy), record_id)


@dataclass
class Record:
    """One WARC record of a gzip member; ``complete`` is False for the planted cut member."""

    headers: list[tuple[str, str]]
    block: bytes
    complete: bool

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.headers if k == key), None)


def _members(blob: bytes) -> Iterator[tuple[bytes, bool]]:
    """Each gzip member's bytes and whether it ended (the last one may be cut mid-stream).

    Fed in chunks, so a member never costs a copy of the rest of the file."""
    view = memoryview(blob)
    pos = 0
    while pos < len(blob):
        d = zlib.decompressobj(31)
        out = []
        while not d.eof and pos < len(blob):
            chunk = view[pos : pos + _CHUNK]
            out.append(d.decompress(chunk))
            pos += len(chunk) - len(d.unused_data)
        yield b"".join(out), d.eof


def _record(data: bytes, complete: bool) -> Record:
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = [
        (k, v) for k, _, v in (line.partition(": ") for line in head.decode().split("\r\n")[1:])
    ]
    if complete:
        rest = rest[: int(dict(headers)["Content-Length"])]
    return Record(headers, rest, complete)


def read_records(path: Path) -> list[Record]:
    return [_record(data, complete) for data, complete in _members(path.read_bytes())]


def _member(rec: Record) -> bytes:
    """The record as one gzip member; a cut record is cut again, at half its member."""
    if rec.complete:
        return warc.member(warc.record(rec.headers, rec.block))
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in rec.headers) + "\r\n"
    whole = warc.member(head.encode("utf-8") + rec.block)
    return whole[: len(whole) // 2]


def _payload(block: bytes) -> bytes:
    return block.partition(b"\r\n\r\n")[2]


@dataclass
class SegmentCopy:
    """Copy ``copy`` of one segment: the renames and each URL's planned edits."""

    copy: int
    names: dict[str, str]
    edits: dict[str, list[Edit]] = field(default_factory=dict)

    def block(self, rec: Record) -> bytes:
        kind, url = rec.get("WARC-Type"), rec.get("WARC-Target-URI") or ""
        if kind == "warcinfo":
            old = rec.get("WARC-Filename") or ""
            line = b"filename: %s\r\n"
            return rec.block.replace(line % old.encode(), line % self.names[old].encode())
        if kind == "request":
            parts = urlsplit(copy_url(url, self.copy))
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            first, _, rest = rec.block.partition(b"\r\n")
            method, _, version = first.decode().split(" ")
            return f"{method} {target} {version}\r\n".encode() + rest
        edits = self.edits.get(url, []) if rec.complete else []
        if kind == "response" and edits:
            head, _, payload = rec.block.partition(b"\r\n\r\n")
            payload = apply_bytes(payload, edits)
            head = _CONTENT_LENGTH.sub(b"Content-Length: %d" % len(payload), head, count=1)
            return head + b"\r\n\r\n" + payload
        if kind == "conversion":
            return apply_bytes(rec.block, edits)
        return rec.block

    def record(self, rec: Record) -> Record:
        block = self.block(rec)
        headers = []
        for key, value in rec.headers:
            if key in _ID_KEYS:
                value = copy_id(value, self.copy)
            elif key == "WARC-Target-URI":
                value = copy_url(value, self.copy)
            elif key == "WARC-Filename":
                value = self.names[value]
            elif rec.complete and key == "Content-Length":
                value = str(len(block))
            elif rec.complete and key == "WARC-Block-Digest":
                value = warc.sha1_digest(block)
            elif rec.complete and key == "WARC-Payload-Digest":
                value = warc.sha1_digest(_payload(block))
            headers.append((key, value))
        return Record(headers, block, rec.complete)


@dataclass(frozen=True)
class CrawlPlan:
    """What every segment job shares: how copies are drawn, the protected lines (planted
    boilerplate) and each sample URL's duplicate group."""

    copies: Copies
    protected: frozenset[str]
    groups: dict[str, str]
    segments: int


def _plan_edits(
    plan: CrawlPlan, copy: int, wet: list[Record], payloads: dict[str, bytes]
) -> dict[str, list[Edit]]:
    edits = {}
    for rec in wet:
        url = rec.get("WARC-Target-URI")
        if rec.get("WARC-Type") != "conversion" or not rec.complete or url not in payloads:
            continue
        try:
            text = rec.block.decode("utf-8")
        except UnicodeDecodeError:
            continue  # the planted invalid UTF-8 pages stay exact copies
        page = text.partition("\n")[2]  # line 0 is the title, which cc_documents sets apart
        edits[url] = plan.copies.edits(
            SOURCE, url, copy, page, plan.protected, (text, payloads[url])
        )
    return edits


def _truth(plan: CrawlPlan, seg: SegmentCopy, warc_records: list[Record]) -> Iterator[dict]:
    for rec in warc_records:
        if rec.get("WARC-Type") == "response":
            url = rec.get("WARC-Target-URI") or ""
            yield {
                "source": SOURCE,
                "item": copy_id(rec.get("WARC-Record-ID") or "", seg.copy),
                "url": copy_url(url, seg.copy),
                "copy": seg.copy,
                "original": rec.get("WARC-Record-ID"),
                "group": plan.groups[url],
                "edit": edit_kind(seg.edits.get(url, []), seg.copy),
            }


def copy_segment(
    plan: CrawlPlan, sample_dir: Path, out_dir: Path, warc_name: str, wet_name: str, copies: range
) -> list[dict]:
    """Write copies ``copies`` of one WARC/WET pair; return their ground-truth rows."""
    warc_records = read_records(sample_dir / "warc" / warc_name)
    wet_records = read_records(sample_dir / "wet" / wet_name)
    payloads = {
        rec.get("WARC-Target-URI"): _payload(rec.block)
        for rec in warc_records
        if rec.get("WARC-Type") == "response" and rec.complete
    }
    rows = []
    for k in copies:
        names = {n: numbered_name(n, k, plan.segments) for n in (warc_name, wet_name)}
        seg = SegmentCopy(k, names, _plan_edits(plan, k, wet_records, payloads))
        for sub, name, records in (
            ("warc", warc_name, warc_records),
            ("wet", wet_name, wet_records),
        ):
            target = out_dir / sub / names[name]
            if k == 0:
                shutil.copyfile(sample_dir / sub / name, target)
                continue
            with target.open("wb") as f:
                for rec in records:
                    f.write(_member(seg.record(rec)))
        rows += _truth(plan, seg, warc_records)
    return rows


def planted_rows(rows: list[dict], copy: int, segments: int) -> Iterator[dict]:
    """``planted.jsonl``'s rows for copy ``copy``: same kinds, the copy's URLs, files and ids."""
    for row in rows:
        yield {
            **row,
            "url": copy_url(row["url"], copy),
            "warc_file": numbered_name(row["warc_file"], copy, segments),
            "wet_file": row["wet_file"] and numbered_name(row["wet_file"], copy, segments),
            "response_record_id": copy_id(row["response_record_id"], copy),
            "duplicate_of": row["duplicate_of"] and copy_url(row["duplicate_of"], copy),
        }
