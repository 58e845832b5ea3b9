"""The asset checks re-count the files, so they fail when the files and manifest disagree."""

import json
import tracemalloc

import pyarrow.parquet as pq
from test_runner import Recording, make_shards

from assets.checks import counts_conserve, output_schema
from assets.ground_truth import BOILERPLATE_FILE, boilerplate_removed
from assets.resources import DataRoot
from curation.core.documents import DOCUMENT_SCHEMA, Document, documents_table
from curation.core.runner import run_stage


def materialized(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 2)
    out = str(tmp_path / "out")
    return out, run_stage(Recording(log=str(tmp_path / "log")), shards, out, storage)


def test_conservation_passes_on_an_honest_partition(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    assert counts_conserve(storage, out, manifest, upstream_kept=10).passed
    assert output_schema(storage, out, manifest, DOCUMENT_SCHEMA).passed


def test_conservation_fails_when_a_row_goes_missing_from_the_files(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    part = f"{out}/part-00000.parquet"
    pq.write_table(pq.read_table(part).slice(1), part)
    result = counts_conserve(storage, out, manifest, upstream_kept=None)
    assert not result.passed
    assert "differ" in result.metadata["problems"].value


def test_conservation_fails_when_rows_are_lost_between_stages(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    result = counts_conserve(storage, out, manifest, upstream_kept=11)
    assert not result.passed
    assert "upstream kept 11" in result.metadata["problems"].value


def test_schema_check_fails_on_a_foreign_part_file(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    part = f"{out}/part-00001.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["meta"]), part)
    assert not output_schema(storage, out, manifest, DOCUMENT_SCHEMA).passed


def test_perplexity_order_check_fails_when_buckets_are_not_ordered():
    import pyarrow as pa

    from assets.checks import perplexity_ordered

    def table(values):
        languages, buckets, scores = zip(*values, strict=True)
        return pa.table({"language": languages, "bucket": buckets, "perplexity": scores})

    good = table([("en", "head", 100.0), ("en", "middle", 200.0), ("en", "tail", 400.0)])
    bad = table([("en", "head", 300.0), ("en", "middle", 200.0), ("en", "tail", 400.0)])
    assert perplexity_ordered(good).passed
    assert not perplexity_ordered(bad).passed
    assert not perplexity_ordered(table([("en", "all", 1.0)])).passed  # nothing to compare


def test_planted_checks_fail_when_the_planted_pages_survive(tmp_path):
    import json

    from assets.ground_truth import (
        BOILERPLATE_FILE,
        LOREM_REMOVED,
        PLANTED_FILE,
        SPAM_REMOVED,
        boilerplate_removed,
        planted_removed,
    )
    from assets.resources import DataRoot

    root = DataRoot(root=str(tmp_path))
    crawl_dir = tmp_path / "sample" / "crawls" / "sample"
    crawl_dir.mkdir(parents=True)
    planted = [{"url": "https://spam.example/1", "kind": "spam"}]
    (crawl_dir / PLANTED_FILE).write_text("\n".join(json.dumps(p) for p in planted))
    (crawl_dir / BOILERPLATE_FILE).write_text(json.dumps({"line": "Accept all cookies"}))

    def partition(name, texts):
        docs = [Document(f"d{i}", "t", t, url) for i, (url, t) in enumerate(texts)]
        (tmp_path / name).mkdir()
        pq.write_table(documents_table(docs), tmp_path / name / "part-00000.parquet")
        return str(tmp_path / name)

    spam = "https://spam.example/1"
    ham = "https://ham.example/1"
    before = partition(
        "before", [(spam, "Accept all cookies\nBuy loans now!"), (ham, "Accept all cookies\nHi.")]
    )
    after = partition("after", [(spam, "Buy loans now!"), (ham, "Hi.")])
    assert not planted_removed(root, "sample", after, SPAM_REMOVED).passed
    assert planted_removed(root, "sample", after, LOREM_REMOVED).passed  # spam is not lorem
    assert not boilerplate_removed(root, "sample", before, before, "ccnet").passed
    assert boilerplate_removed(root, "sample", after, before, "ccnet").passed
    assert (
        planted_removed(root, "CC-MAIN-2020-05", after, SPAM_REMOVED).metadata["ground_truth"].value
        == "none"
    )


def test_boilerplate_check_reads_one_part_at_a_time(tmp_path):
    """On a partition of many parts, the check holds a pair of parts, not the crawl's text:
    its Python allocations peak far below one partition's text, and a unique line lost in
    one part is still found against the upstream part of the same name."""
    root = DataRoot(root=str(tmp_path))
    crawl_dir = tmp_path / "sample" / "crawls" / "sample"
    crawl_dir.mkdir(parents=True)
    (crawl_dir / BOILERPLATE_FILE).write_text(json.dumps({"line": "Accept all cookies"}))
    pool = [f"shared line {n} " + "of a template repeated on many pages " * 2 for n in range(50)]
    parts, docs = 16, 40

    def doc_lines(part: int, doc: int) -> list[str]:
        shared = [pool[(part * docs + doc + k) % len(pool)] for k in range(40)]
        page = "".join(chr(ord("a") + int(c)) for c in f"{part:02d}{doc:03d}")  # digits -> 0
        return ["Accept all cookies", *shared, f"the unique line of page {page}"]

    def partition(name: str, keep) -> int:
        (tmp_path / name).mkdir()
        size = 0
        for part in range(parts):
            texts = ["\n".join(keep(part, d, doc_lines(part, d))) for d in range(docs)]
            size += sum(map(len, texts))
            rows = [Document(f"{part}-{d}", "t", t, None) for d, t in enumerate(texts)]
            pq.write_table(documents_table(rows), tmp_path / name / f"part-{part:05d}.parquet")
        return size

    text_bytes = partition("before", lambda part, doc, lines: lines)
    partition("after", lambda part, doc, lines: lines[1:])
    partition("lost", lambda part, doc, lines: lines[1:-1] if (part, doc) == (11, 3) else lines[1:])
    before, after, lost = (str(tmp_path / n) for n in ("before", "after", "lost"))

    boilerplate_removed(root, "sample", after, before, "ccnet")  # imports and caches, untraced
    tracemalloc.start()
    result = boilerplate_removed(root, "sample", after, before, "ccnet")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.passed
    assert result.metadata["unique_lines_checked"].value == parts * docs
    assert peak < text_bytes / 2, (peak, text_bytes)  # both partitions whole: > 2x text_bytes

    missed = boilerplate_removed(root, "sample", lost, before, "ccnet")
    assert not missed.passed
    assert missed.metadata["unique_lines_lost"].value == 1
