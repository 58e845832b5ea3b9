"""`llamapipe` runs the stages without Dagster, and says clearly what is wrong."""

import json
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
    assert manifest["histograms"]["language"] == {"de": 1, "en": 1, "fr": 1}

    shown = llamapipe("show", str(lang))
    assert "cc_language: in 3, kept 3, dropped 0" in shown.stdout


def test_a_missing_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = llamapipe(
        "stage", "cc_language", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"no _manifest.json in {tmp_path / 'nope'}" in result.stderr
