"""End to end: the real `dagster job execute` over the sample crawl, then what was planted.

The run is the session fixture `materialized` (tests/conftest.py, tests/sample_graph.py),
shared with the object-store run's comparison. Slow (minutes on 2 cores); marked, and run in
CI all the same.
"""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from curation.decontamination.benchmarks import BenchmarkIndex
from curation.decontamination.matcher import find_overlap
from curation.decontamination.ngrams import tokens, window_hashes
from sample_world.contamination import Plant

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STAGES = [
    "cc_documents",
    "cc_line_dedup",
    "cc_language",
    "cc_perplexity",
    "cc_wikiref",
    "commoncrawl",
]
SOURCES = ["wikipedia", "github", "books", "arxiv", "stackexchange"]
EXTRA_CHECKS = {
    ("cc_line_dedup", "planted_boilerplate_removed"),
    ("cc_perplexity", "perplexity_buckets_ordered"),
    ("cc_perplexity", "planted_spam_removed"),
    ("commoncrawl", "planted_spam_removed"),
    ("c4", "planted_lorem_removed"),
    ("wikiref_classifier", "heldout_auc_above_floor"),
    *((source, "rules_hold_on_output") for source in SOURCES[1:]),
    ("deduplicated", "removals_are_near_copies"),
    ("deduplicated", "planted_duplicates_collapsed"),
    ("decontaminated", "benchmarks_indexed"),
    ("decontaminated", "planted_benchmarks_caught"),
    ("mixture", "shares_on_plan"),
    ("tokenizer", "digits_split"),
    ("tokenizer", "unicode_round_trips"),
    ("tokenizer", "special_ids"),
    ("tokenized_shards", "counts_conserve"),
    ("tokenized_shards", "shards_intact"),
    ("tokenized_shards", "decodes_to_the_mixture"),
    ("data_card", "every_stage_conserves"),
}


def planted(sample: Path) -> list[dict]:
    lines = (sample / "crawls" / "sample" / "planted.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def rows(partition: Path, dropped: bool = False) -> list[dict]:
    directory = partition / "_dropped" if dropped else partition
    return pq.read_table(directory).to_pylist()


def test_every_stage_conserves_counts_and_its_checks_pass(materialized):
    home, stages = materialized
    upstream_kept = None
    for stage in STAGES:
        manifest = json.loads((stages / stage / "sample" / "_manifest.json").read_text())
        counts = manifest["counts"]
        kept, dropped = rows(stages / stage / "sample"), rows(stages / stage / "sample", True)
        assert counts["in"] == len(kept) + len(dropped)
        assert counts["in"] == counts["kept"] + sum(counts["dropped"].values())
        assert upstream_kept in (None, counts["in"])
        upstream_kept = counts["kept"]

    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        results = {}
        for run in instance.get_runs():
            for event in instance.all_logs(
                run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
            ):
                check = event.dagster_event.event_specific_data
                results[(check.asset_key.path[0], check.check_name)] = check.passed
        stage_checks = {
            (stage, check)
            for stage in [
                *STAGES,
                "c4_language",
                "c4",
                *SOURCES,
                "deduplicated",
                "decontaminated",
                "mixture",
            ]
            for check in ["counts_conserve", "output_schema"]
        }
        assert results == {key: True for key in stage_checks | EXTRA_CHECKS}
        event = instance.get_latest_materialization_event(AssetKey("cc_language"))
        metadata = event.asset_materialization.metadata
        assert "| en |" in metadata["language"].value
        assert "data:image/png;base64," in metadata["funnel"].value


def test_no_manifest_says_where_the_data_root_is(materialized):
    """Stage configs hold paths relative to the root (models, the classifier): the same
    inputs give byte-identical manifests on every machine."""
    _, stages = materialized
    manifests = sorted(stages.glob("*/*/_manifest.json"))
    assert len(manifests) >= 15
    for path in manifests:
        assert str(stages.parent) not in path.read_text(), path


def test_language_id_matches_what_was_planted_and_keeps_english(materialized, sample_world):
    _, stages = materialized
    truth = {p["url"]: p["language"] for p in planted(sample_world) if p["kind"] == "page"}
    kept = rows(stages / "cc_language" / "sample")
    dropped = rows(stages / "cc_language" / "sample", dropped=True)
    predicted = {d["url"]: d["language"] for d in kept + dropped if d["url"] in truth}
    agree = sum(predicted[u] == truth[u] for u in predicted)
    assert agree >= 0.95 * len(predicted)
    assert {d["language"] for d in kept} == {"en"}
    planted_languages = Counter(truth.values())
    not_selected = Counter(d["language"] for d in dropped if d["reason"] == "language_not_selected")
    assert len(planted_languages) >= 5
    for language, n in planted_languages.items():
        found = Counter(d["language"] for d in kept)[language] or not_selected[language]
        assert found >= 0.8 * n, (language, found, n)


def test_the_commoncrawl_source_and_its_share_of_the_mixture_are_english(materialized):
    """The paper's CommonCrawl is English: other languages are dropped rows with a reason,
    shown in the data card, and never reach the mixture through the CommonCrawl source."""
    _, stages = materialized
    commoncrawl = rows(stages / "commoncrawl" / "sample")
    assert commoncrawl and {d["language"] for d in commoncrawl} == {"en"}
    mixed = [r for r in rows(stages / "mixture" / "all") if r["source"] == "commoncrawl"]
    assert mixed and {r["language"] for r in mixed} == {"en"}
    card = (stages.parent / "card" / "DATA_CARD.md").read_text()
    assert re.search(r"\| cc_language\[sample\] \| language_not_selected \| [1-9]", card)


def test_planted_damage_is_dropped_with_its_reason(materialized, sample_world):
    _, stages = materialized
    dropped = rows(stages / "cc_documents" / "sample", dropped=True)
    by_url = {d["url"]: d["reason"] for d in dropped}
    kinds = {p["url"]: p["kind"] for p in planted(sample_world)}
    for url, kind in kinds.items():
        if kind == "invalid_utf8":
            assert by_url.get(url) == "invalid_utf8", url
    reasons = Counter(d["reason"] for d in dropped)
    assert reasons["truncated_gzip_member"] >= 1
    kept_urls = {d["url"] for d in rows(stages / "cc_documents" / "sample")}
    assert not {u for u, k in kinds.items() if k == "non_html"} & kept_urls


def test_warc_reader_gives_the_same_ids_as_wet_via_the_cli(materialized, sample_world, tmp_path):
    _, stages = materialized
    out = tmp_path / "warc_documents"
    result = subprocess.run(
        [
            BIN / "llamapipe",
            "stage",
            "cc_documents",
            "--input-format",
            "warc",
            "--crawl",
            "sample",
            "--workers",
            "2",
            "--input",
            str(sample_world / "crawls" / "sample" / "warc"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cc_documents: in " in result.stdout
    from_warc = {d["url"]: d["id"] for d in rows(out)}
    from_wet = {d["url"]: d["id"] for d in rows(stages / "cc_documents" / "sample")}
    common = from_warc.keys() & from_wet.keys()
    assert len(common) >= 0.8 * len(from_wet)
    assert all(from_warc[u] == from_wet[u] for u in common)

    reasons = {d["url"]: d["reason"] for d in rows(out, dropped=True)}
    kinds = {p["url"]: p["kind"] for p in planted(sample_world)}
    assert all(reasons.get(u) == "non_html" for u, k in kinds.items() if k == "non_html")
    bad_utf8 = [u for u, k in kinds.items() if k == "invalid_utf8"]
    assert all(reasons.get(u) == "invalid_encoding" for u in bad_utf8)
    short = [u for u, k in kinds.items() if k == "short"]
    assert sum(reasons.get(u) == "too_short" for u in short) >= 0.9 * len(short)


def test_every_hostile_source_input_is_a_quarantine_row(materialized, sample_world):
    _, stages = materialized
    arxiv = rows(stages / "arxiv" / "all", dropped=True)
    hostile = [
        json.loads(line)
        for line in (sample_world / "arxiv" / "arxiv.jsonl").read_text().splitlines()
        if not json.loads(line)["kind"].endswith(("paper", "single_tex"))
    ]
    dropped_files = {json.loads(r["meta"])["file"]: r["reason"] for r in arxiv}
    assert hostile and all(h["file"] in dropped_files for h in hostile)
    stackexchange = Counter(r["reason"] for r in rows(stages / "stackexchange" / "all", True))
    assert stackexchange["malformed_xml"] == 1  # the billion-laughs site, refused
    books = Counter(r["reason"] for r in rows(stages / "books" / "all", dropped=True))
    assert books["empty_book"] == 1 and books["invalid_encoding"] == 1


def test_the_corpus_is_deduplicated_mixed_tokenized_and_described(materialized):
    _, stages = materialized
    dedup = json.loads((stages / "deduplicated" / "all" / "_manifest.json").read_text())
    sources = {r["source"] for r in rows(stages / "deduplicated" / "all")}
    assert sources == {"commoncrawl", "c4", *SOURCES}
    assert dedup["counts"]["dropped"].get("near_duplicate", 0) > 0

    mixture = rows(stages / "mixture" / "all")
    assert {r["split"] for r in mixture} == {"train", "validation"}
    shards = json.loads((stages / "tokenized_shards" / "all" / "_manifest.json").read_text())
    held_out = sum(r["split"] == "validation" for r in mixture)
    assert shards["counts"]["written"]["validation"] == held_out
    assert shards["splits"]["train"]["documents"] == sum(
        r["repeats"] for r in mixture if r["split"] == "train"
    )

    card = (stages.parent / "card" / "DATA_CARD.md").read_text()
    for section in ["## Funnel", "## Deduplication", "## Mixture", "## Tokens per corpus"]:
        assert section in card
    assert "| deduplicated[all] |" in card and (stages.parent / "card" / "funnel.png").exists()


def test_stages_log_their_progress_and_status_reports_the_counts(materialized):
    """Each stage's shard progress reaches the run log; `llamapipe status` lists every crawl
    stage's partition with the counts of its manifest."""
    home, stages = materialized
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        messages = [
            event.user_message
            for run in instance.get_runs()
            for event in instance.all_logs(run.run_id)
        ]
    for stage in STAGES:
        assert any(re.match(rf"{stage}: (\d+)/\1 shards .* ETA ", m) for m in messages), stage

    env = {**os.environ, "LLAMAPIPE_DATA_ROOT": str(stages.parent)}
    result = subprocess.run(
        [BIN / "llamapipe", "status"], env=env, capture_output=True, text=True, check=True
    )
    rows_by_key = {tuple(line.split()[:2]): line.split() for line in result.stdout.splitlines()}
    for stage in STAGES:
        counts = json.loads((stages / stage / "sample" / "_manifest.json").read_text())["counts"]
        row = rows_by_key[(stage, "sample")]
        assert row[2] == "materialized"
        assert [int(c.replace(",", "")) for c in row[3:6]] == [
            counts["in"],
            counts["kept"],
            sum(counts["dropped"].values()),
        ]
    assert "crawl partitions: 1 registered; without documents: -" in result.stdout


def test_no_planted_benchmark_item_reaches_the_mixture(materialized, sample_world):
    """The items planted in crawl pages, a Wikipedia article and a StackExchange answer are
    cut out before the mixture; lm-eval's overlap report lists them beside the partition."""
    _, stages = materialized
    lines = (sample_world / "contamination.jsonl").read_text().splitlines()
    planted = [row for row in map(json.loads, lines) if row["kind"] == "contaminated"]
    index = BenchmarkIndex.build(
        (code, window_hashes(tokens(Plant(row["item"]).text()))) for code, row in enumerate(planted)
    )
    mixed = rows(stages / "mixture" / "all")
    assert mixed and not [r["url"] for r in mixed if find_overlap(index, r["text"], 13)]
    report = stages / "decontaminated" / "all.overlaps"
    found = json.loads((report / "overlaps.json").read_text())
    for row in planted:
        task, split, line = row["item"].split("/")
        assert int(line) in found[f"{task}/{split}"]
        assert (report / "data" / task / f"{split}_13grams_limitNone.overlaps").exists()
