"""WARC records written by hand, byte for byte, the way Common Crawl lays them out.

warcio would do, but its headers come in its own order and with fresh UUIDs and dates; the
sample needs fixed ids and dates (deterministic builds) and two WET header layouts, so records
are assembled here and each is compressed as its own gzip member (mtime 0), as in CC's files.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import uuid
from datetime import datetime

_NAMESPACE = uuid.UUID("6f1c3e2a-4b7d-5e8f-9a0b-1c2d3e4f5a6b")


def record_id(*parts: str) -> str:
    """``<urn:uuid:...>`` from a uuid5 of a hash of ``parts``: stable across builds."""
    key = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"<urn:uuid:{uuid.uuid5(_NAMESPACE, key)}>"


def sha1_digest(data: bytes) -> str:
    """WARC digest format: ``sha1:`` and the base32 of the SHA-1."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def warc_date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(dt: datetime) -> str:
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    """One WARC record; ``Content-Length`` must already be among ``headers``."""
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8") + block + b"\r\n\r\n"


def member(data: bytes) -> bytes:
    """A gzip member with no timestamp and no file name (reproducible bytes)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def warc_fields(fields: list[tuple[str, str]]) -> bytes:
    """An ``application/warc-fields`` block."""
    return "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8")


def warcinfo(filename: str, dt: datetime, rid: str, fields: list[tuple[str, str]]) -> bytes:
    block = warc_fields(fields)
    return record(
        [
            ("WARC-Type", "warcinfo"),
            ("WARC-Date", warc_date(dt)),
            ("WARC-Filename", filename),
            ("WARC-Record-ID", rid),
            ("Content-Type", "application/warc-fields"),
            ("Content-Length", str(len(block))),
        ],
        block,
    )


def request(url: str, dt: datetime, rid: str, info_id: str, ip: str, block: bytes) -> bytes:
    return record(
        [
            ("WARC-Type", "request"),
            ("WARC-Date", warc_date(dt)),
            ("WARC-Record-ID", rid),
            ("Content-Length", str(len(block))),
            ("Content-Type", "application/http; msgtype=request"),
            ("WARC-Warcinfo-ID", info_id),
            ("WARC-IP-Address", ip),
            ("WARC-Target-URI", url),
            ("WARC-Block-Digest", sha1_digest(block)),
        ],
        block,
    )


def response(
    url: str,
    dt: datetime,
    rid: str,
    info_id: str,
    request_id: str,
    ip: str,
    http_head: bytes,
    payload: bytes,
    payload_type: str,
) -> bytes:
    block = http_head + payload
    return record(
        [
            ("WARC-Type", "response"),
            ("WARC-Date", warc_date(dt)),
            ("WARC-Record-ID", rid),
            ("Content-Length", str(len(block))),
            ("Content-Type", "application/http; msgtype=response"),
            ("WARC-Warcinfo-ID", info_id),
            ("WARC-Concurrent-To", request_id),
            ("WARC-IP-Address", ip),
            ("WARC-Target-URI", url),
            ("WARC-Payload-Digest", sha1_digest(payload)),
            ("WARC-Block-Digest", sha1_digest(block)),
            ("WARC-Identified-Payload-Type", payload_type),
        ],
        block,
    )


def metadata(
    url: str, dt: datetime, rid: str, info_id: str, response_id: str, fields: list[tuple[str, str]]
) -> bytes:
    block = warc_fields(fields)
    return record(
        [
            ("WARC-Type", "metadata"),
            ("WARC-Date", warc_date(dt)),
            ("WARC-Record-ID", rid),
            ("Content-Length", str(len(block))),
            ("Content-Type", "application/warc-fields"),
            ("WARC-Warcinfo-ID", info_id),
            ("WARC-Concurrent-To", response_id),
            ("WARC-Target-URI", url),
            ("WARC-Block-Digest", sha1_digest(block)),
        ],
        block,
    )


def conversion(
    url: str,
    dt: datetime,
    rid: str,
    refers_to: str,
    text: bytes,
    layout: str,
    languages: str,
) -> bytes:
    """A WET ``conversion`` record in the ``"2019"`` or the ``"2021"`` header layout.

    The newer layout reorders the headers and adds ``WARC-Identified-Content-Language``: a
    reader that takes headers by position breaks on one of the two, one that reads them by key
    does not. That is the point of shipping both.
    """
    common = {
        "WARC-Type": "conversion",
        "WARC-Target-URI": url,
        "WARC-Date": warc_date(dt),
        "WARC-Record-ID": rid,
        "WARC-Refers-To": refers_to,
        "WARC-Block-Digest": sha1_digest(text),
        "Content-Type": "text/plain",
        "Content-Length": str(len(text)),
    }
    if layout == "2019":
        order = [
            "WARC-Type",
            "WARC-Target-URI",
            "WARC-Date",
            "WARC-Record-ID",
            "WARC-Refers-To",
            "WARC-Block-Digest",
            "Content-Type",
            "Content-Length",
        ]
        headers = [(k, common[k]) for k in order]
    elif layout == "2021":
        order = [
            "WARC-Type",
            "WARC-Target-URI",
            "WARC-Date",
            "WARC-Record-ID",
            "WARC-Refers-To",
            "Content-Type",
            "WARC-Identified-Content-Language",
            "WARC-Block-Digest",
            "Content-Length",
        ]
        common["WARC-Identified-Content-Language"] = languages
        headers = [(k, common[k]) for k in order]
    else:
        raise ValueError(f"unknown WET layout {layout!r}")
    return record(headers, text)
