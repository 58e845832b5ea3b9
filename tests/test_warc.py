import gzip
import io
import zlib

from archives import ENGLISH, html_page, warc_bytes

from curation.commoncrawl.warc import Problem, Record, iter_records

LIMIT = 1 << 20


def pages(n: int):
    return [html_page(f"https://site.example/{i}", f"Page {i}", [ENGLISH]) for i in range(n)]


def read(data: bytes, limit: int = LIMIT):
    return list(iter_records(io.BytesIO(data), limit))


def member_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(data[pos:])
        pos = len(data) - len(inflater.unused_data)
    return offsets


def test_reads_every_record_with_headers_by_key():
    items = read(warc_bytes(pages(3)))
    assert all(isinstance(i, Record) for i in items)
    assert [i.headers["WARC-Target-URI"] for i in items] == [
        f"https://site.example/{i}" for i in range(3)
    ]
    assert all(i.type == "response" and i.block.startswith(b"HTTP/1.1 200") for i in items)


def test_every_cut_of_the_last_member_is_reported_and_earlier_records_kept():
    data = warc_bytes(pages(3))
    last = member_offsets(data)[-1]
    for cut in range(last + 1, len(data) - 8, 5):  # the last 8 bytes are the gzip trailer
        items = read(data[:cut])
        records = [i for i in items if isinstance(i, Record)]
        problems = [i for i in items if isinstance(i, Problem)]
        assert len(records) == 2, cut
        assert [p.reason for p in problems] == ["truncated_gzip_member"], cut
        assert problems[0].offset == last


def test_corrupt_member_in_the_middle_is_skipped_and_reading_resumes():
    data = warc_bytes(pages(3))
    second = member_offsets(data)[1]
    broken = data[:second] + b"\x1f\x8b\x08\x00garbage!" + data[second:]
    items = read(broken)
    assert [type(i).__name__ for i in items] == ["Record", "Problem", "Record", "Record"]
    assert items[1].reason == "corrupt_gzip_member"
    assert items[1].offset == second


def test_non_gzip_bytes_between_members_are_reported():
    data = warc_bytes(pages(2))
    second = member_offsets(data)[1]
    items = read(data[:second] + b"this is not gzip\r\n" + data[second:])
    assert [getattr(i, "reason", "ok") for i in items] == ["ok", "corrupt_gzip_member", "ok"]


def test_member_inflating_past_the_limit_is_refused_with_bounded_memory():
    bomb = gzip.compress(b"WARC/1.0\r\n" + b"a" * (20 << 20))
    items = read(bomb + warc_bytes(pages(1)), limit=1 << 20)
    assert items[0].reason == "record_too_large"
    assert isinstance(items[1], Record)


def test_lying_content_length_is_a_truncated_record():
    raw = gzip.decompress(warc_bytes(pages(1)))
    lying = raw.replace(b"Content-Length: ", b"Content-Length: 9", 1)
    items = read(gzip.compress(lying))
    assert [i.reason for i in items] == ["truncated_record"]


def test_uncompressed_warc_and_empty_input():
    raw = b"".join(gzip.decompress(warc_bytes([p])) for p in pages(2))
    assert [type(i).__name__ for i in read(raw)] == ["Record", "Record"]
    assert [i.reason for i in read(b"")] == ["no_records"]
