"""The benchmark harness and the cost projection, fast: no stage runs, no datatrove.

The harness is what makes bench/'s ratios trustworthy on a shared machine (rounds interleaved
and rotated, warm-up not counted, the minimum kept), and the projection is arithmetic the
data card will show, so both are checked on made-up numbers whose answers are known."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import cost  # noqa: E402
import report  # noqa: E402


def test_rounds_rotate_so_no_contender_always_goes_first():
    orders = [report.rotation(3, r) for r in range(3)]
    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert {order[0] for order in orders} == {0, 1, 2}


def test_interleaved_runs_a_warm_up_then_rounds_in_rotated_order():
    calls: list[str] = []

    def contender(name: str) -> report.Contender:
        return report.Contender(name, lambda: calls.append(name) or 10)

    timings = report.interleaved([contender("a"), contender("b")], rounds=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then 3 rounds
    assert all(len(t.seconds) == 3 for t in timings.values())  # warm-up not counted
    assert timings["a"].items == 10


def test_groups_share_rounds_and_keep_their_contenders_together():
    calls: list[str] = []

    def contender(name: str) -> report.Contender:
        return report.Contender(name, lambda: calls.append(name) or 1)

    groups = {"g": [contender("a"), contender("b")], "h": [contender("c")]}
    timings = report.interleaved_groups(groups, rounds=3)
    rounds = calls[3:]  # after one warm-up each
    assert rounds == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert set(timings) == {"g", "h"} and set(timings["g"]) == {"a", "b"}


def test_the_minimum_is_kept_and_ratios_come_from_minima():
    slow = report.Timing("slow", [4.0, 2.0, 3.0], items=100)
    fast = report.Timing("fast", [1.0, 1.5, 5.0], items=100)
    assert slow.best == 2.0 and slow.rate == 50.0
    assert report.speed_ratio(fast, slow) == 2.0
    assert fast.spread == pytest.approx(4.0)
    assert report.ratio_note(fast, [(slow, "slow"), (None, "absent")]) == "2.00x slow"


def test_parts_keep_their_own_minimum():
    outcomes = iter([(5, {"x": 9.0}), (5, {"x": 3.0}), (5, {"x": 4.0}), (5, {"x": 6.0})])
    timing = report.interleaved([report.Contender("c", lambda: next(outcomes))], rounds=3)["c"]
    assert timing.part("x") == 3.0  # the warm-up's 9.0 is not among the rounds


def test_fewer_than_three_rounds_or_repeated_names_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        report.interleaved([report.Contender("a", lambda: 1)], rounds=2)
    with pytest.raises(ValueError, match="repeat"):
        report.interleaved([report.Contender("a", lambda: 1)] * 2)


def throughput() -> dict:
    """Made-up rates: every stage at 1 MB/s per core (documents: 1000/s), flows of 1."""
    stages = [
        ("cc_documents (WET)", "CCNet", "wet_bytes", 1e6),
        ("cc_language", "CCNet", "text_bytes", 1e6),
        ("c4", "C4", "text_bytes", 1e6),
        ("dedup_signatures", "signatures", "text_bytes", 1e6),
        ("deduplicated", "dedup", "documents", 1000.0),
        ("tokenized_shards", "tokenization", "text_bytes", 1e6),
        (cost.WARC_EXTRACTION, "WARC alternative", "warc_bytes", 1e6),
        ("cc_gopher", "", "text_bytes", 1e6),
    ]
    per_wet_byte = {name: 1.0 for name, *_ in stages if name != "cc_gopher"}
    per_wet_byte["deduplicated"] = 1e-3  # one document per KB of WET
    return {
        "header": ["# cmd", "# 2026-01-01, x86_64 2 CPUs", "# world"],
        "stages": [
            {
                "stage": name,
                "branch": branch,
                "unit": unit,
                "ours_per_core_s": rate,
                "docs_per_core_s": 100.0,
                "datatrove_per_core_s": rate / 2 if name == "c4" else None,
            }
            for name, branch, unit, rate in stages
        ],
        "flows": {
            "world": "sample",
            "wet_bytes": 1e6,
            "warc_bytes": 2e6,
            "wet_documents": 300,
            "english_share": 0.3,
            "per_wet_byte": per_wet_byte,
        },
    }


def test_core_hours_are_the_crawls_input_over_the_rate():
    result = cost.projection(throughput())
    one = result["crawls"]["one_crawl"]
    wet_hours = cost.ONE_CRAWL.wet_bytes / 1e6 / 3600
    by_stage = {s["stage"]: s for s in one["stages"]}
    assert by_stage["cc_language"]["core_hours"] == pytest.approx(wet_hours)
    assert by_stage["deduplicated"]["core_hours"] == pytest.approx(wet_hours)
    assert by_stage["c4"]["datatrove_core_hours"] == pytest.approx(2 * wet_hours)
    assert by_stage[cost.WARC_EXTRACTION]["core_hours"] == pytest.approx(
        cost.ONE_CRAWL.warc_bytes / 1e6 / 3600
    )
    assert "cc_gopher" not in by_stage  # measured, not in the recipe
    assert one["branches_core_hours"]["CCNet"] == pytest.approx(2 * wet_hours)
    assert one["total_core_hours"] == pytest.approx(6 * wet_hours)  # WARC not in the totals
    assert one["warc_extraction_by_pages_core_hours"] == pytest.approx(
        cost.ONE_CRAWL.pages / 100 / 3600
    )


def test_five_dumps_are_five_mean_published_crawls():
    five = cost.paper_dumps()
    mean_wet = sum(c.wet_tib for c in cost.PUBLISHED) / len(cost.PUBLISHED)
    assert five.wet_tib == pytest.approx(5 * mean_wet)
    result = cost.projection(throughput())
    ratio = (
        result["crawls"]["five_dumps"]["total_core_hours"]
        / result["crawls"]["one_crawl"]["total_core_hours"]
    )
    assert ratio == pytest.approx(five.wet_tib / cost.ONE_CRAWL.wet_tib)


def test_the_card_table_has_every_branch_and_the_total():
    lines = cost.card_lines(cost.projection(throughput()))
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| ")]
    assert rows[1:] == [*cost.BRANCH_ORDER, "total"]
