"""HTTP responses to text: split the HTTP head, decode honestly, extract the main text.

Decoding follows the page's own declaration (HTTP header, then `<meta charset>`); bytes that
contradict a declared charset are a quarantine reason, not something to paper over with
replacement characters. Undeclared pages that are not valid UTF-8 get windows-1252, the
WHATWG default for legacy pages.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import trafilatura

HTML_TYPES = ("text/html", "application/xhtml+xml")

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_HEAD_SCAN = 4096


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("\"'").lower()
        return None


class DecodeError(ValueError):
    """The bytes are not valid in the charset the page declares."""


def parse_http(block: bytes) -> HttpResponse:
    """Split a WARC response block into status, headers (lower-cased keys) and body."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    if not sep:
        raise ValueError("no end of HTTP headers")
    lines = head.decode("iso-8859-1").splitlines()
    status_line = lines[0].split()
    if (
        len(status_line) < 2
        or not status_line[0].startswith("HTTP/")
        or not status_line[1].isdigit()
    ):
        raise ValueError(f"bad HTTP status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon:
            headers[key.strip().lower()] = value.strip()
    return HttpResponse(int(status_line[1]), headers, body)


def decode_html(response: HttpResponse) -> str:
    declared = response.charset or _meta_charset(response.body)
    if declared:
        try:
            return response.body.decode(declared)
        except LookupError:
            pass  # unknown charset name: fall through to the undeclared rules
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not valid {declared}: {exc.reason} at byte {exc.start}") from exc
    try:
        return response.body.decode("utf-8")
    except UnicodeDecodeError:
        return response.body.decode("windows-1252", errors="replace")


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:_HEAD_SCAN])
    return match.group(1).decode("ascii").lower() if match else None


def html_title(page: str) -> str:
    match = _TITLE.search(page[:65536])
    return " ".join(html.unescape(match.group(1)).split()) if match else ""


# trafilatura's options for the main text (bench/ times the bare call with these very ones).
EXTRACT_OPTIONS = {
    "include_comments": False,
    "include_tables": True,
    "deduplicate": False,
    "with_metadata": False,
}


def main_text(page: str, url: str | None, fast: bool) -> str:
    """The page's main content as plain text with one paragraph per line ("" if none)."""
    return trafilatura.extract(page, url=url, fast=fast, **EXTRACT_OPTIONS) or ""
