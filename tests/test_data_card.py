"""The data card is read from manifests: its numbers are the stages' numbers."""

import struct

from test_mixture import corpus_shard

from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.corpus.data_card import StageOutput, build_card
from curation.corpus.mixture import Mixture


def test_the_card_reports_funnel_mixture_and_warnings_from_the_manifests(storage, tmp_path):
    shards = [corpus_shard(tmp_path, "commoncrawl", 200), corpus_shard(tmp_path, "arxiv", 3)]
    stage = Mixture(shares=(("commoncrawl", 0.5), ("arxiv", 0.5)), max_epochs=2.0)
    manifest = run_stage(stage, shards, str(tmp_path / "mix"), storage, LocalExecutor(1))
    outputs = [StageOutput("mixture", "all", manifest)]

    card = build_card(outputs, mixture=manifest, tokens={"train": {"arxiv": 7, "commoncrawl": 9}})

    text = card.markdown
    dropped = sum(manifest.dropped.values())
    assert f"| mixture[all] | {manifest.n_in} | {manifest.kept} | {dropped} |" in text
    assert "arxiv: too small for its 50.0% share" in text
    assert "| total | 16 |" in text
    for name, data in card.images.items():
        assert f"]({name})" in text
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", data[16:20])[0] > 100


def test_the_card_shows_the_projected_cost_of_a_real_crawl_or_says_it_has_none():
    def branches(scale: float) -> dict:
        return {"CCNet": 1273.4 * scale, "C4": 927.1 * scale, "tokenization": 315.5 * scale}

    def crawl(name: str, scale: float) -> dict:
        hours = branches(scale)
        return {
            "crawl": {"name": name},
            "branches_core_hours": hours,
            "total_core_hours": sum(hours.values()),
        }

    projection = {
        "crawls": {"one_crawl": crawl("CC-MAIN-2019-09", 1), "five_dumps": crawl("5 dumps", 5)},
        "measured": ["# bench/throughput.py", "# 2026-12-06, x86_64 2 CPUs (shared), load 3.0"],
    }
    card = build_card([], projection=projection).markdown
    assert "| branch | core-hours, CC-MAIN-2019-09 | core-hours, five dumps |" in card
    assert "| CCNet | 1,273 | 6,367 |" in card and "| total | 2,516 | 12,580 |" in card
    assert "(2026-12-06, x86_64 2 CPUs (shared), load 3.0)" in card
    assert "Not projected yet: `make bench` writes the projection." in build_card([]).markdown
