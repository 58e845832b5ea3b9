"""The scale world (`llamapipe sample scale`): the sample world N times, in the sample's layout
and formats, with new names, ids and URLs per copy, exact and near copies, and the planted
ground truth extended to the copies without merging planted groups."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.commoncrawl.warc import Record, iter_records
from curation.dedup.minhash import signatures
from pipelines.cli import main
from sample_world.scale import STAMP, TRUTH, scale_world

FACTOR = 2
CRAWL = Path("crawls", "sample")
METADATA = {"README.md", "_sample.json", STAMP, TRUTH}


@pytest.fixture(scope="module")
def scaled(sample_world: Path, tmp_path_factory) -> Path:
    return scale_world(sample_world, tmp_path_factory.mktemp("scale") / "world", FACTOR, workers=2)


@pytest.fixture(scope="module")
def truth(scaled: Path) -> list[dict]:
    return [json.loads(line) for line in (scaled / TRUTH).read_text().splitlines()]


@pytest.fixture(scope="module")
def documents(scaled: Path, tmp_path_factory) -> dict[str, dict]:
    """`cc_documents` of the scaled crawl through the CLI (the runner), by URL."""
    out = tmp_path_factory.mktemp("scaled_documents") / "docs"
    wet = scaled / CRAWL / "wet"
    argv = ["stage", "cc_documents", "--crawl", "sample", "--input", str(wet), "--workers", "2"]
    assert main([*argv, "--output", str(out)]) == 0
    rows = [r for p in sorted(out.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["url"]: r for r in rows}


def _data_files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.is_file() and p.name not in METADATA and not p.name.endswith(".jsonl")
    }


def _kind(rel: str) -> tuple[str, str]:
    """A data file's directory (a Stack Exchange site folder counts as one) and suffix."""
    parts = rel.split("/")
    if parts[0] == "stackexchange":
        parts[1] = "<site>"
    suffixes = [s for s in Path(parts[-1]).suffixes if not s[1:].isdigit()]
    return "/".join(parts[:-1]), "".join(suffixes)


def test_layout_is_the_samples_with_every_data_file_n_times(sample_world, scaled):
    sample, copies = _data_files(sample_world), _data_files(scaled)
    assert {
        k: v * FACTOR for k, v in Counter(map(_kind, sample)).items() if "licenses" not in k[0]
    } == {k: v for k, v in Counter(map(_kind, copies)).items() if "licenses" not in k[0]}
    for rel, path in sample.items():  # copy 0 is the sample, byte for byte
        assert copies[rel].read_bytes() == path.read_bytes(), rel
    truth_files = {p.relative_to(sample_world) for p in sample_world.rglob("*.jsonl")}
    assert truth_files == {p.relative_to(scaled) for p in scaled.rglob("*.jsonl")} - {Path(TRUTH)}
    assert not list(scaled.parent.glob(".world.*")), "the temporary build directory is left"


def test_sizes_are_n_times_the_samples(sample_world, scaled):
    def size(root: Path) -> int:
        return sum(
            p.stat().st_size for rel, p in _data_files(root).items() if "licenses" not in rel
        )

    assert 0.95 * FACTOR < size(scaled) / size(sample_world) < 1.05 * FACTOR


def test_copies_have_new_unique_ids_urls_and_record_ids(sample_world, scaled, truth):
    by_source = defaultdict(list)
    for row in truth:
        by_source[row["source"]].append(row)
    for source, rows in by_source.items():
        assert len({r["item"] for r in rows}) == len(rows), source
        assert Counter(r["copy"] for r in rows) == {k: len(rows) // FACTOR for k in range(FACTOR)}
    planted = [json.loads(x) for x in (scaled / CRAWL / "planted.jsonl").read_text().splitlines()]
    sample = [
        json.loads(x) for x in (sample_world / CRAWL / "planted.jsonl").read_text().splitlines()
    ]
    assert len({r["url"] for r in planted}) == len(planted) == FACTOR * len(sample)
    assert Counter(r["kind"] for r in planted) == {
        k: FACTOR * n for k, n in Counter(r["kind"] for r in sample).items()
    }
    urls = {r["url"] for r in planted}
    assert {r["duplicate_of"] for r in planted} - {None} <= urls  # copy k's duplicates: in copy k
    ids = Counter()
    for path in sorted((scaled / CRAWL / "warc").iterdir()):
        with path.open("rb") as f:
            ids.update(
                r.headers["WARC-Record-ID"]
                for r in iter_records(f, 8 << 20)
                if isinstance(r, Record)
            )
    assert ids and max(ids.values()) == 1
    readable = {r["response_record_id"] for r in planted if r["kind"] != "truncated"}
    assert readable <= set(ids)  # the truncated captures' records are cut, in every copy
    cited = (scaled / "wikipedia/cited_urls.jsonl").read_text().splitlines()
    sample_cited = (sample_world / "wikipedia/cited_urls.jsonl").read_text().splitlines()
    assert {json.loads(x)["url"] for x in cited} <= urls  # copy k's wiki cites copy k's crawl
    assert len(cited) == FACTOR * len(sample_cited)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_builds_are_byte_identical_and_a_matching_stamp_skips(sample_world, scaled, tmp_path):
    again = tmp_path / "again"
    argv = ["sample", "scale", "--factor", str(FACTOR), "--sample", str(sample_world)]
    assert main([*argv, "--out", str(again), "--workers", "1"]) == 0
    first, second = _tree(scaled), _tree(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    stamp = os.stat(again / STAMP).st_mtime_ns
    assert scale_world(sample_world, again, FACTOR) == again
    assert os.stat(again / STAMP).st_mtime_ns == stamp


def test_copies_are_exact_or_near_and_readable_by_cc_documents(truth, documents):
    crawl = [r for r in truth if r["source"] == "commoncrawl" and r["url"] in documents]
    url_of = {r["item"]: r["url"] for r in crawl}
    edits = Counter()
    for row in crawl:
        text, original = (documents[u]["text"] for u in (row["url"], url_of[row["original"]]))
        edits[row["edit"], text == original] += 1
    assert edits[("original", True)] > 2000 and edits[("exact", True)] > 1000
    assert edits[("near", False)] > 300
    assert edits[("exact", False)] == edits[("near", True)] == 0
    assert len({d["id"] for d in documents.values()}) == len(documents)


def test_planted_groups_do_not_merge(truth, documents):
    """No copy's text is another group's: an exact text is shared across groups only where the
    sample already shares it, and every near copy is closer to its own original than to any
    document of another group."""
    rows = [(r, documents[r["url"]]["text"]) for r in truth if r.get("url") in documents]
    groups_of = defaultdict(set)
    sample_groups_of = defaultdict(set)
    for row, text in rows:
        key = " ".join(text.split())
        groups_of[key].add(row["group"])
        if row["copy"] == 0:
            sample_groups_of[key].add(row["group"])
    assert all(len(g) == 1 or g <= sample_groups_of[key] for key, g in groups_of.items())

    originals = [(r, t) for r, t in rows if r["copy"] == 0]
    near = [(r, t) for r, t in rows if r["edit"] == "near"]
    sig_o, _ = signatures([t for _, t in originals], 256, 11)
    sig_n, _ = signatures([t for _, t in near], 256, 11)
    group = np.array([r["group"] for r, _ in originals])
    item = np.array([r["item"] for r, _ in originals])
    for i, (row, _) in enumerate(near):
        similarity = (sig_o == sig_n[i]).mean(axis=1)
        own = similarity[item == row["original"]][0]
        assert own >= 0.6, row
        assert similarity[group != row["group"]].max() < own, row


def test_boilerplate_lines_are_never_edited(sample_world, scaled, truth, documents):
    assert (scaled / CRAWL / "boilerplate.jsonl").read_bytes() == (
        sample_world / CRAWL / "boilerplate.jsonl"
    ).read_bytes()
    lines = {
        json.loads(x)["line"]
        for x in (scaled / CRAWL / "boilerplate.jsonl").read_text().splitlines()
    }
    url_of = {r["item"]: r["url"] for r in truth if r["source"] == "commoncrawl"}
    checked = 0
    for row in truth:
        if row["source"] == "commoncrawl" and row["copy"] and row["url"] in documents:
            copy = set(documents[row["url"]]["text"].split("\n")) & lines
            original = set(documents[url_of[row["original"]]]["text"].split("\n")) & lines
            assert copy == original, row["url"]
            checked += bool(copy) and row["edit"] == "near"
    assert checked > 300
