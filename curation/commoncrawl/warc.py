"""Reading WARC and WET archives record by record, without letting one bad byte sink a file.

FastWARC parses the records (it beat warcio by a wide margin in `bench/bench_warc_readers.py`),
but neither library reports a truncated or corrupt gzip member reliably: depending on where
the cut falls they yield a record with an empty body, stop early without a word, or raise
and lose the rest of the file. So the gzip layer is handled here, one member at a time
(Common Crawl writes one record per member): a bad member becomes a `Problem` naming its
offset, and reading continues at the next member.

Headers are always looked up by key. Positional parsing broke when Common Crawl changed the
WET header order in 2020.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecordType

GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1 << 16
_HEADER_SCAN = 1 << 16


@dataclass(frozen=True)
class Record:
    """A WARC record whose block was read completely."""

    offset: int
    headers: dict[str, str]
    block: bytes

    @property
    def type(self) -> str:
        return self.headers.get("WARC-Type", "")


@dataclass(frozen=True)
class Problem:
    """Something in the archive that could not be read as a record, and why."""

    offset: int
    reason: str
    detail: str
    headers: dict[str, str] | None = None


def iter_records(stream: BinaryIO, max_record_bytes: int) -> Iterator[Record | Problem]:
    """Every record of a `.warc[.wet].gz` or uncompressed WARC file, plus its problems.

    `stream` must be seekable (a local file or a pyarrow random-access file)."""
    head = stream.read(2)
    stream.seek(0)
    if head != GZIP_MAGIC:
        yield from _parse(stream, 0, max_record_bytes)
        return
    for member in _gzip_members(stream, max_record_bytes):
        if isinstance(member, Problem):
            yield member
        else:
            offset, payload = member
            yield from _parse(io.BytesIO(payload), offset, max_record_bytes)


def _parse(stream: object, base: int, max_record_bytes: int) -> Iterator[Record | Problem]:
    """Records in an uncompressed stream: a gzip member's bytes, or a whole plain WARC."""
    found = False
    offset = base
    try:
        for rec in ArchiveIterator(stream, record_types=WarcRecordType.any_type, parse_http=False):
            found = True
            offset = base + rec.stream_pos
            headers = {k: v for k, v in rec.headers.items()}
            yield _check_block(rec, offset, headers, max_record_bytes)
    except BaseException as exc:  # noqa: BLE001 - FastWARC panics (BaseException) on bad input
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        yield Problem(offset, "malformed_record", f"{type(exc).__name__}: {exc}")
        return
    if not found:
        yield Problem(base, "no_records", "no WARC record in the input")


def _check_block(rec, offset: int, headers: dict[str, str], limit: int) -> Record | Problem:
    declared = headers.get("Content-Length", "").strip()
    if not declared.isdigit():
        return Problem(offset, "malformed_header", "no valid Content-Length", headers)
    if int(declared) > limit:
        return Problem(offset, "record_too_large", f"{declared} bytes, limit {limit}", headers)
    block = rec.reader.read()
    if len(block) != int(declared):
        detail = f"Content-Length {declared} but {len(block)} bytes present"
        return Problem(offset, "truncated_record", detail, headers)
    return Record(offset, headers, block)


def _gzip_members(data: BinaryIO, limit: int) -> Iterator[tuple[int, bytes] | Problem]:
    """Decompress member by member; bounded memory even for a bomb (output capped at `limit`)."""
    offset = 0
    pending = b""
    while True:
        if not pending:
            pending = data.read(_READ_CHUNK)
            if not pending:
                return
        start = offset
        inflater = zlib.decompressobj(wbits=31)
        out = bytearray()
        head = b""  # the start of an oversized member, kept to name it in the Problem
        try:
            while not inflater.eof:
                if not pending:
                    pending = data.read(_READ_CHUNK)
                    if not pending:
                        detail = f"gzip member at {start} cut short"
                        yield Problem(start, "truncated_gzip_member", detail)
                        return
                room = _READ_CHUNK if head else limit + 1 - len(out)
                piece = inflater.decompress(pending, room)
                # At the end of a member the leftover input is in unused_data (and, when
                # max_length was hit, also in unconsumed_tail: never add the two).
                rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                offset += len(pending) - len(rest)
                pending = rest
                if not head:
                    out += piece
                    if len(out) > limit:
                        head, out = bytes(out[:_HEADER_SCAN]), bytearray()
        except zlib.error as exc:
            yield Problem(start, "corrupt_gzip_member", f"gzip member at {start}: {exc}")
            offset, pending = _resync(data, offset, pending)
            continue
        if head:
            detail = f"member at {start} inflates past {limit} bytes"
            yield Problem(start, "record_too_large", detail, _warc_headers(head))
        else:
            yield start, bytes(out)


def _warc_headers(head: bytes) -> dict[str, str] | None:
    """Headers of a record too large to parse, so its quarantine row still names the URL."""
    block, sep, _ = head.partition(b"\r\n\r\n")
    lines = block.decode("utf-8", "replace").split("\r\n")
    if not sep or not lines[0].startswith("WARC/"):
        return None
    pairs = (line.partition(":") for line in lines[1:])
    return {k.strip(): v.strip() for k, colon, v in pairs if colon}


def _resync(data: BinaryIO, offset: int, pending: bytes) -> tuple[int, bytes]:
    """Skip to the next gzip magic after a corrupt member, so later records are still read."""
    pending = pending[1:]
    offset += 1
    while True:
        at = pending.find(GZIP_MAGIC)
        if at >= 0:
            return offset + at, pending[at:]
        keep = pending[-1:]
        offset += len(pending) - len(keep)
        more = data.read(_READ_CHUNK)
        if not more:
            return offset + len(keep), b""
        pending = keep + more
