import json

import pyarrow.parquet as pq
import pytest
from archives import ENGLISH, FRENCH, Page, html_page, warc_bytes, wet_bytes, write

from curation.commoncrawl.documents import CCDocuments
from curation.core.inputs import MissingInput, archive_shards, file_shard
from curation.core.runner import run_stage

GOOD = [html_page(f"https://docs.example/{i}", f"Title {i}", [ENGLISH, FRENCH]) for i in range(3)]


def run(storage, tmp_path, fmt, name, data, **config):
    path = write(tmp_path / "in" / name, data)
    stage = CCDocuments(crawl="test", input_format=fmt, **config)
    out = str(tmp_path / "out" / name)
    manifest = run_stage(stage, [file_shard(storage, str(path))], out, storage)
    kept = pq.read_table(f"{out}/part-00000.parquet").to_pylist()
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet").to_pylist()
    assert manifest.n_in == len(kept) + len(dropped)
    return manifest, kept, dropped


def wet_text(page: Page) -> bytes:
    return f"Title of {page.url}\n{ENGLISH}\n{FRENCH}\n".encode()


@pytest.mark.parametrize("new_layout", [False, True])
def test_wet_title_is_line_zero_and_headers_are_read_by_key(storage, tmp_path, new_layout):
    data = wet_bytes([(p, wet_text(p)) for p in GOOD], new_layout=new_layout)
    _, kept, _ = run(storage, tmp_path, "wet", "a.warc.wet.gz", data)
    assert [d["url"] for d in kept] == [p.url for p in GOOD]
    meta = json.loads(kept[0]["meta"])
    assert meta["title"] == f"Title of {GOOD[0].url}"
    assert kept[0]["text"].startswith(ENGLISH)
    assert meta["date"] == "2023-01-31T12:00:00Z"
    assert ("cc_languages" in meta) == new_layout


def test_warc_and_wet_give_the_same_id_for_the_same_capture(storage, tmp_path):
    _, from_warc, _ = run(storage, tmp_path, "warc", "a.warc.gz", warc_bytes(GOOD))
    wet = wet_bytes([(p, wet_text(p)) for p in GOOD])
    _, from_wet, _ = run(storage, tmp_path, "wet", "a.warc.wet.gz", wet)
    assert [d["id"] for d in from_warc] == [d["id"] for d in from_wet]
    assert len({d["id"] for d in from_warc}) == 3
    assert "package manager" in from_warc[0]["text"]
    assert json.loads(from_warc[0]["meta"])["title"] == "Title 0"


def test_bad_records_are_quarantined_and_the_rest_of_the_shard_is_kept(storage, tmp_path):
    latin1 = ("<html><body><p>" + FRENCH + "</p></body></html>").encode("latin-1")
    huge = b"<html><body><p>" + b"x" * (10 << 20) + b"</p></body></html>"
    pages = [
        GOOD[0],
        Page("https://docs.example/img.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 400, "image/png"),
        Page("https://docs.example/bad-utf8", latin1),
        Page("https://docs.example/empty", b""),
        Page("https://docs.example/huge", huge),
        html_page("https://docs.example/short", "Short", ["Too short."]),
        GOOD[1],
    ]
    data = warc_bytes(pages)
    truncated = data + warc_bytes([GOOD[2]])[:-40]
    _, kept, dropped = run(storage, tmp_path, "warc", "a.warc.gz", truncated)
    assert [d["url"] for d in kept] == [GOOD[0].url, GOOD[1].url]
    reasons = {d["url"]: d["reason"] for d in dropped}
    assert reasons == {
        "https://docs.example/img.png": "non_html",
        "https://docs.example/bad-utf8": "invalid_encoding",
        "https://docs.example/empty": "empty_record",
        "https://docs.example/huge": "record_too_large",
        "https://docs.example/short": "too_short",
        None: "truncated_gzip_member",
    }
    assert all(d["stage"] == "cc_documents" for d in dropped)
    bad = next(d for d in dropped if d["reason"] == "invalid_encoding")
    assert "utf-8" in json.loads(bad["meta"])["detail"]


def test_invalid_utf8_in_a_wet_record_is_quarantined(storage, tmp_path):
    latin1 = b"Title\n" + FRENCH.encode("latin-1")
    data = wet_bytes([(GOOD[0], wet_text(GOOD[0])), (GOOD[1], latin1)])
    _, kept, dropped = run(storage, tmp_path, "wet", "a.warc.wet.gz", data)
    assert len(kept) == 1
    assert [d["reason"] for d in dropped] == ["invalid_utf8"]
    assert "\ufffd" in dropped[0]["text"]


def test_a_missing_input_path_is_a_clear_error(storage, tmp_path):
    with pytest.raises(MissingInput, match="does not exist: .*/nowhere"):
        archive_shards(storage, str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInput, match="no input files"):
        archive_shards(storage, str(tmp_path / "empty"))
