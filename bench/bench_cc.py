"""Common Crawl ingest throughput on the sample crawl, as ratios to the bare libraries.

Every number is measured in this process on the same input, one worker, so the ratios are
meaningful on a noisy shared machine even when the absolute docs/s are not:

  warc readers   FastWARC vs warcio iterating the same WARC files (why we read with FastWARC)
  cc_documents   our stage (WET and WARC readers) vs bare trafilatura.extract on the same pages
  cc_language    our stage vs bare fastText predict on the same texts (the floor)

    python bench/bench_cc.py --sample data/sample [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile

import pyarrow.parquet as pq
from report import best_of, print_rows

from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.extract import parse_http
from curation.commoncrawl.langid import LanguageId, load_model, resolve_model_path
from curation.commoncrawl.warc import Record, iter_records
from curation.core.inputs import archive_shards, partition_shards
from curation.core.runner import run_stage
from curation.core.storage import Storage


def fastwarc_count(paths: list[str]) -> int:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            try:
                records = ArchiveIterator(f, record_types=WarcRecordType.any_type, parse_http=False)
                for record in records:
                    record.reader.read()
                    n += 1
            except Exception:  # noqa: BLE001 - the planted truncated member ends this file
                pass
    return n


def warcio_count(paths: list[str]) -> int:
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            try:
                for record in ArchiveIterator(f):
                    record.content_stream().read()
                    n += 1
            except Exception:  # noqa: BLE001
                pass
    return n


def our_reader_count(paths: list[str]) -> int:
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            n += sum(isinstance(r, Record) for r in iter_records(f, 8 << 20))
    return n


def html_pages(paths: list[str]) -> list[tuple[str, str]]:
    pages = []
    for path in paths:
        with open(path, "rb") as f:
            for record in iter_records(f, 8 << 20):
                if isinstance(record, Record) and record.type == "response":
                    try:
                        response = parse_http(record.block)
                    except ValueError:
                        continue
                    if response.content_type == "text/html":
                        html = response.body.decode("utf-8", "replace")
                        pages.append((record.headers.get("WARC-Target-URI", ""), html))
    return pages


def bare_trafilatura(pages: list[tuple[str, str]]) -> int:
    import trafilatura

    for url, html in pages:
        trafilatura.extract(html, url=url, include_comments=False)
    return len(pages)


def stage_run(stage, inputs, storage) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return run_stage(stage, inputs, os.path.join(tmp, "out"), storage).n_in


def warc_to_language(inputs, storage) -> int:
    """WARC -> extraction -> language id, the chain DESIGN.md section 6 sets a target for."""
    with tempfile.TemporaryDirectory() as tmp:
        documents = os.path.join(tmp, "documents")
        stage = CCDocuments(crawl="bench", input_format="warc")
        n = run_stage(stage, inputs, documents, storage).n_in
        run_stage(
            LanguageId(), partition_shards(storage, documents), os.path.join(tmp, "l"), storage
        )
        return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sample", default="data/sample")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warc-files", type=int, default=2, help="WARC files for trafilatura runs")
    args = parser.parse_args()

    crawl = os.path.join(os.path.abspath(args.sample), "crawls", "sample")
    warcs = sorted(glob.glob(os.path.join(crawl, "warc", "*.warc.gz")))
    storage = Storage("/")
    rows: list[tuple[str, float, int, str]] = []

    def record(name: str, seconds: float, n: int, note: str = "") -> float:
        rate = n / seconds
        rows.append((name, rate, n, note))
        return rate

    t, n = best_of(args.repeat, lambda: warcio_count(warcs))
    warcio_rate = record("warcio: iterate WARC records", t, n)
    t, n = best_of(args.repeat, lambda: fastwarc_count(warcs))
    record("fastwarc: iterate WARC records", t, n, f"{n / t / warcio_rate:.1f}x warcio")
    t, n = best_of(args.repeat, lambda: our_reader_count(warcs))
    record(
        "curation.commoncrawl.warc (fastwarc + member checks)",
        t,
        n,
        f"{n / t / warcio_rate:.1f}x warcio",
    )

    wet_inputs = archive_shards(storage, os.path.join(crawl, "wet"))
    t, n = best_of(args.repeat, lambda: stage_run(CCDocuments(crawl="bench"), wet_inputs, storage))
    record("cc_documents (WET)", t, n)

    subset = warcs[: args.warc_files]
    pages = html_pages(subset)
    t, n = best_of(1, lambda: bare_trafilatura(pages))
    bare_rate = record("bare trafilatura.extract (HTML pages)", t, n)
    all_warcs = archive_shards(storage, os.path.join(crawl, "warc"))
    warc_inputs = [i for i in all_warcs if i.path in subset]
    warc_stage = CCDocuments(crawl="bench", input_format="warc")
    t, n = best_of(1, lambda: stage_run(warc_stage, warc_inputs, storage))
    record("cc_documents (WARC, trafilatura)", t, n, f"{n / t / bare_rate:.2f}x bare trafilatura")
    t, n = best_of(1, lambda: warc_to_language(warc_inputs, storage))
    record(
        "WARC -> cc_documents -> cc_language", t, n, f"{n / t / bare_rate:.2f}x bare trafilatura"
    )

    with tempfile.TemporaryDirectory() as tmp:
        documents = os.path.join(tmp, "documents")
        run_stage(CCDocuments(crawl="bench"), wet_inputs, documents, storage)
        lang_inputs = partition_shards(storage, documents)
        texts = pq.read_table(documents).column("text").to_pylist()
        model = load_model(resolve_model_path(LanguageId.model))
        lines = [t.replace("\n", " ") for t in texts]  # fastText's input format
        t, n = best_of(args.repeat, lambda: len(model.predict(lines, k=1)[0]))
        floor = record("bare fastText predict (same texts)", t, n)
        t, n = best_of(args.repeat, lambda: stage_run(LanguageId(), lang_inputs, storage))
        record("cc_language", t, n, f"{n / t / floor:.2f}x bare fastText")

    print_rows(rows, "measure", "items/s")


if __name__ == "__main__":
    main()
