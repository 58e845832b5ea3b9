"""The mixture: Table 1 shares become copies per document; validation is held out first."""

import dataclasses
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.core.documents import DOCUMENT_SCHEMA
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput
from curation.corpus.mixture import (
    TRAIN,
    VALIDATION,
    Mixture,
    is_validation,
    plan_mixture,
    realised_shares,
    shares_off_plan,
)


def corpus_shard(tmp_path, corpus: str, n: int, size: int = 400) -> ShardInput:
    """`n` documents of one corpus, lengths varying so bytes and counts differ."""
    rows = [
        {
            "id": f"{corpus}-{i}",
            "source": corpus,
            "text": "w" * (size + 37 * (i % 11)),
            "url": None,
            "meta": "{}",
        }
        for i in range(n)
    ]
    path = tmp_path / f"{corpus}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), path)
    return ShardInput(corpus, str(path), f"fp-{corpus}", path.stat().st_size)


def run(storage, tmp_path, stage, shards, out="mix", workers=1):
    output = str(tmp_path / out)
    manifest = run_stage(stage, shards, output, storage, LocalExecutor(workers))
    kept = pq.read_table(output).to_pylist()
    dropped = pq.read_table(f"{output}/_dropped").to_pylist()
    assert manifest.n_in == len(kept) + len(dropped)
    return manifest, kept, dropped


def test_the_validation_split_depends_on_the_id_alone():
    ids = [f"doc-{i}" for i in range(20000)]
    held = [i for i in ids if is_validation(i, 0.05)]
    assert 0.04 < len(held) / len(ids) < 0.06
    assert held == [i for i in ids if is_validation(i, 0.05)]
    assert not any(is_validation(i, 0.0) for i in ids)


def test_the_anchored_plan_gives_the_anchor_its_paper_epochs_and_warns_on_small_corpora():
    shares = {"commoncrawl": 0.67, "wikipedia": 0.045, "github": 0.045}
    shares = {c: s / sum(shares.values()) for c, s in shares.items()}
    target, plans = plan_mixture(
        {"commoncrawl": 1000.0, "wikipedia": 10.0, "github": 500.0}, shares, 0, "commoncrawl", 4.0
    )
    by = {p.corpus: p for p in plans}
    assert by["commoncrawl"].epochs == pytest.approx(1.10)
    assert target == pytest.approx(1000 * 1.10 / shares["commoncrawl"])
    assert by["wikipedia"].achievable_epochs == 4.0 and by["wikipedia"].epochs > 4.0
    assert "too small" in by["wikipedia"].warning
    assert by["github"].warning == ""
    assert sum(p.achievable_share for p in plans) == pytest.approx(1.0)


def test_an_absent_corpus_is_reported_not_ignored():
    _, plans = plan_mixture({"commoncrawl": 10.0}, {"commoncrawl": 0.9, "arxiv": 0.1}, 100, "x", 4)
    arxiv = next(p for p in plans if p.corpus == "arxiv")
    assert math.isinf(arxiv.epochs) and "no documents" in arxiv.warning


def test_copies_follow_the_plan_and_realised_shares_match_it(storage, tmp_path):
    stage = Mixture(
        shares=(("commoncrawl", 0.6), ("wikipedia", 0.3), ("github", 0.1)),
        validation_fraction=0.05,
    )
    shards = [
        corpus_shard(tmp_path, "commoncrawl", 600),
        corpus_shard(tmp_path, "wikipedia", 100),
        corpus_shard(tmp_path, "github", 400),
        corpus_shard(tmp_path, "other", 10),
    ]
    manifest, kept, dropped = run(storage, tmp_path, stage, shards)
    plan = {p["corpus"]: p for p in manifest.summary["plan"]}
    assert plan["commoncrawl"]["achievable_epochs"] == pytest.approx(1.10)
    copies = {}
    for row in kept:
        copies.setdefault((row["source"], row["split"]), set()).add(row["repeats"])
    wiki_epochs = plan["wikipedia"]["achievable_epochs"]
    assert copies[("wikipedia", TRAIN)] <= {math.floor(wiki_epochs), math.floor(wiki_epochs) + 1}
    assert copies[("github", VALIDATION)] == {1}
    assert {r["reason"] for r in dropped} == {"not_sampled", "not_in_mixture"}
    assert {r["source"] for r in dropped if r["reason"] == "not_in_mixture"} == {"other"}
    assert all(r["source"] == "github" for r in dropped if r["reason"] == "not_sampled")
    assert shares_off_plan(manifest.summary, manifest.histograms, tolerance=0.005) == []
    assert realised_shares(manifest.histograms)["commoncrawl"] == pytest.approx(
        plan["commoncrawl"]["achievable_share"], abs=0.01
    )


def test_the_share_check_fails_when_sampling_ignores_the_plan(storage, tmp_path):
    """Every training document once, whatever the plan: the check must notice."""

    class Flat(Mixture):
        def copies(self, doc_id, corpus, split):
            return 1

    shares = (("commoncrawl", 0.5), ("wikipedia", 0.5))
    shards = [corpus_shard(tmp_path, "commoncrawl", 300), corpus_shard(tmp_path, "wikipedia", 100)]
    manifest, _, _ = run(storage, tmp_path, Flat(shares=shares), shards)
    problems = shares_off_plan(manifest.summary, manifest.histograms, 0.01)
    assert any("wikipedia" in p for p in problems)


def test_the_output_does_not_depend_on_workers_and_moves_with_the_seed(storage, tmp_path):
    stage = Mixture(shares=(("commoncrawl", 0.7), ("github", 0.3)), validation_fraction=0.1)
    shards = [corpus_shard(tmp_path, "commoncrawl", 300), corpus_shard(tmp_path, "github", 300)]
    one = run(storage, tmp_path, stage, shards, "one", workers=1)[0]
    two = run(storage, tmp_path, stage, shards, "two", workers=2)[0]
    assert one.to_json() == two.to_json()
    other = run(storage, tmp_path, dataclasses.replace(stage, seed=1), shards, "seed")[0]
    assert [s.part_sha256 for s in other.shards] != [s.part_sha256 for s in one.shards]


def test_an_empty_part_passes_through(storage, tmp_path):
    empty = corpus_shard(tmp_path, "github", 0)
    manifest, kept, dropped = run(
        storage, tmp_path, Mixture(shares=(("github", 1.0),), target_tokens=10), [empty]
    )
    assert manifest.n_in == 0 and kept == [] and dropped == []


def test_one_corpus_a_bin_over_its_share_shrinks_the_others_within_the_allowance():
    """Sampling whole documents: a corpus of large files may land a bin (100 tokens here) over
    its share, and the others are then smaller in proportion; more than that is off plan."""
    plan = [
        {"corpus": "commoncrawl", "achievable_share": 0.8, "granularity_tokens": 1},
        {"corpus": "books", "achievable_share": 0.2, "granularity_tokens": 100},
    ]
    summary = {"plan": [{**p, "sampled_tokens": 1000 * p["achievable_share"]} for p in plan]}

    def off_plan(commoncrawl: int, books: int) -> list[str]:
        stream = {"train_stream_bytes": {"commoncrawl": commoncrawl, "books": books}}
        return [p.split(":")[0] for p in shares_off_plan(summary, stream, 0.01)]

    assert off_plan(800, 300) == []  # books a bin over: commoncrawl 72.7% for a plan of 80%
    assert off_plan(700, 300) == ["commoncrawl"]  # 70%: more than the bin explains
