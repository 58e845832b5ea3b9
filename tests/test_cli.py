"""`llamapipe` runs the stages without Dagster, and says clearly what is wrong."""

import json
import os
import subprocess
import sys
from pathlib import Path

from archives import ENGLISH, FRENCH, GERMAN, html_page, warc_bytes, write

LLAMAPIPE = Path(sys.executable).parent / "llamapipe"


def llamapipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LLAMAPIPE, *args], capture_output=True, text=True, timeout=300)


def test_documents_then_language_from_the_command_line(tmp_path):
    texts = [ENGLISH, FRENCH, GERMAN]
    pages = [html_page(f"https://x.example/{i}", f"T{i}", [t, t]) for i, t in enumerate(texts)]
    archive = write(tmp_path / "crawl.warc.gz", warc_bytes(pages))
    docs, lang = tmp_path / "docs", tmp_path / "lang"

    first = llamapipe(
        "stage",
        "cc_documents",
        "--input-format",
        "warc",
        "--crawl",
        "test",
        "--input",
        str(archive),
        "--output",
        str(docs),
        "--workers",
        "1",
    )
    assert first.returncode == 0, first.stderr
    assert "cc_documents: in 3, kept 3, dropped 0" in first.stdout

    second = llamapipe("stage", "cc_language", "--input", str(docs), "--output", str(lang))
    assert second.returncode == 0, second.stderr
    manifest = json.loads((lang / "_manifest.json").read_text())
    assert manifest["histograms"]["language"] == {"en": 1}
    assert "dropped language_not_selected: 2" in second.stdout

    every = tmp_path / "every"
    third = llamapipe(
        "stage", "cc_language", "--input", str(docs), "--output", str(every), "--languages", "[]"
    )
    assert third.returncode == 0, third.stderr
    shown = llamapipe("show", str(every))
    assert "cc_language: in 3, kept 3, dropped 0" in shown.stdout


def test_a_missing_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = llamapipe(
        "stage", "cc_language", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"no Parquet parts in {tmp_path / 'nope'}" in result.stderr


def test_dedup_tokenizer_and_shards_on_plain_parquet_directories(tmp_path):
    """A user's own Parquet (no manifests): dedup across two directories, then a tokenizer
    and token shards, each one command."""
    import pyarrow.parquet as pq
    from token_corpus import documents, write_parts

    rows = documents(140)
    copy = {**rows[3], "id": "copy-of-3", "source": "mine"}  # the same text in the other dir
    write_parts(tmp_path / "a", rows, 50)
    write_parts(tmp_path / "b", [copy], 50)

    dedup = llamapipe(
        "stage", "deduplicated", "--input", str(tmp_path / "a"), str(tmp_path / "b"),
        "--output", str(tmp_path / "dedup"), "--workers", "1",
    )  # fmt: skip
    assert dedup.returncode == 0, dedup.stderr
    kept = set(pq.read_table(tmp_path / "dedup", columns=["id"]).column("id").to_pylist())
    assert len(kept & {rows[3]["id"], "copy-of-3"}) == 1

    tokenizer = llamapipe(
        "stage", "tokenizer", "--input", str(tmp_path / "dedup"), "--output",
        str(tmp_path / "tok"), "--vocab-size", "600", "--workers", "1",
    )  # fmt: skip
    assert tokenizer.returncode == 0, tokenizer.stderr
    shards = llamapipe(
        "stage", "tokenized_shards", "--input", str(tmp_path / "dedup"), "--tokenizer",
        str(tmp_path / "tok" / "tokenizer.model"), "--output", str(tmp_path / "shards"),
        "--workers", "1",
    )  # fmt: skip
    assert shards.returncode == 0, shards.stderr
    assert f"train: {len(kept)} documents" in shards.stdout


def test_an_unsafe_crawl_id_is_refused_before_the_instance_is_touched(tmp_path):
    """A crawl id becomes `stages/<asset>/<crawl>/`: `../x` must never become a partition."""
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [LLAMAPIPE, "crawls", "add", "CC-MAIN-2024-10", "../etc"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    assert result.returncode == 2
    assert "unsafe crawl id '../etc'" in result.stderr
    assert list(home.iterdir()) == []  # no instance storage was created
