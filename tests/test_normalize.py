"""Text normalization: CCNet's two normalizers, checked against vectors CCNet's own code made
(tests/data/ccnet_text_normalizer_vectors.jsonl, from `cc_net/text_normalizer.py`), and this
project's broader dedup key, a named option tested as the project's own choice."""

import json
from pathlib import Path

import pytest

from curation.commoncrawl.normalize import broad_dedup_key, normalize, normalize_for_dedup

VECTORS_FILE = Path(__file__).parent / "data" / "ccnet_text_normalizer_vectors.jsonl"
# One object per "\n"-terminated line; `splitlines` would also cut at the raw U+0085 and
# U+2028 some inputs hold.
VECTORS = [json.loads(line) for line in VECTORS_FILE.read_text("utf-8").split("\n") if line]


def test_the_vectors_cover_what_the_normalizers_disagree_on():
    assert len(VECTORS) >= 20
    assert any(v["normalize"] != v["normalize_for_dedup"] for v in VECTORS)
    assert any("\n" in v["input"] for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["input"])[:40])
def test_normalize_is_ccnets(vector):
    assert normalize(vector["input"]) == vector["normalize"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["input"])[:40])
def test_normalize_for_dedup_is_ccnets(vector):
    assert normalize_for_dedup(vector["input"]) == vector["normalize_for_dedup"]


def test_ccnet_keeps_ascii_punctuation_in_the_dedup_key():
    assert normalize_for_dedup("Accept all cookies!") != normalize_for_dedup("Accept all cookies")


def test_project_broad_key_also_folds_ascii_punctuation_and_whitespace():
    """This project's option `normalization: broad`, not CCNet's behaviour."""
    assert broad_dedup_key("  Accept ALL cookies! ") == broad_dedup_key("accept all cookies")
    assert broad_dedup_key("© 2021 Example, Inc.") == broad_dedup_key("© 1999 Example Inc")
    assert broad_dedup_key("tab\there\x00") == "tab here"
    assert broad_dedup_key("été") != broad_dedup_key("ete")
