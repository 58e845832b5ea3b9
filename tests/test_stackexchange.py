import json
import random
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, tostring

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.core.documents import DOCUMENT_SCHEMA
from curation.core.runner import run_stage
from curation.sources.stackexchange import (
    StackExchangeClean,
    html_to_text,
    parse_tags,
    site_shards,
    top_sites,
    verify_stackexchange,
)
from sample_world.stackexchange import BILLION_LAUGHS, build_stackexchange

REPO = Path(__file__).resolve().parents[1]


def question(post_id, title="How?", accepted="", score="1", body="<p>How do I?</p>"):
    return {
        "Id": str(post_id),
        "PostTypeId": "1",
        "AcceptedAnswerId": accepted,
        "Score": score,
        "Body": body,
        "Title": title,
        "Tags": "<python><faq>",
    }


def answer(post_id, parent, score, body=None):
    return {
        "Id": str(post_id),
        "PostTypeId": "2",
        "ParentId": str(parent),
        "Score": str(score),
        "Body": body or f"<p>answer {post_id}</p>",
    }


def write_site(root: Path, site: str, rows: list[dict]) -> None:
    posts = Element("posts")
    for row in rows:
        SubElement(posts, "row", {k: v for k, v in row.items() if v != ""})
    (root / site).mkdir(parents=True)
    (root / site / "Posts.xml").write_bytes(tostring(posts, encoding="utf-8"))


def run(storage, root: Path, top: int = 28, out: str = "out", **settings):
    """Run the stage over every site under `root`; kept and dropped rows as dicts."""
    manifest = run_stage(
        StackExchangeClean(top_sites=top, **settings),
        site_shards(storage, str(root)),
        str(root / out),
        storage,
    )
    kept = pq.read_table(root / out, schema=DOCUMENT_SCHEMA).to_pylist()
    dropped = pq.read_table(root / out / "_dropped").to_pylist()
    for shard in manifest.shards:
        assert shard.n_in == shard.kept + sum(shard.dropped.values())
    return kept, dropped


def meta(row: dict) -> dict:
    return json.loads(row["meta"])


def test_answers_sorted_by_integer_score_not_string(storage, tmp_path):
    rows = [question(1, accepted="2")] + [
        answer(2 + i, 1, s) for i, s in enumerate((9, 10, 100, -2, 0))
    ]
    write_site(tmp_path, "a.stackexchange.com", rows)
    [doc], _ = run(storage, tmp_path)
    assert meta(doc)["answer_scores"] == [100, 10, 9, 0, -2]
    assert meta(doc)["answer_ids"] == [4, 3, 2, 6, 5]
    assert doc["text"].index("answer 4") < doc["text"].index("answer 3")


def test_score_ties_put_the_accepted_answer_first_then_the_older(storage, tmp_path):
    rows = [question(1, accepted="4"), answer(2, 1, 5), answer(3, 1, 5), answer(4, 1, 5)]
    write_site(tmp_path, "a.stackexchange.com", rows)
    [doc], _ = run(storage, tmp_path)
    assert meta(doc)["answer_ids"] == [4, 2, 3]


def test_document_layout_and_meta(storage, tmp_path):
    write_site(tmp_path, "a.stackexchange.com", [question(7, title="Why?"), answer(8, 7, 2)])
    [doc], _ = run(storage, tmp_path)
    assert doc["text"] == "Q: Why?\n\nHow do I?\n\nA: answer 8"
    assert doc["url"] == "https://a.stackexchange.com/questions/7"
    assert meta(doc)["tags"] == ["python", "faq"]
    assert parse_tags("|python|faq|") == ["python", "faq"]


def test_only_the_largest_sites_are_kept(storage, tmp_path):
    write_site(tmp_path, "big.stackexchange.com", [question(1), answer(2, 1, 0), question(3)])
    write_site(tmp_path, "mid.stackexchange.com", [question(1), answer(2, 1, 0)])
    write_site(tmp_path, "small.stackexchange.com", [question(1)])
    kept, dropped = run(storage, tmp_path, top=2)
    assert {meta(d)["site"] for d in kept} == {"big.stackexchange.com", "mid.stackexchange.com"}
    assert [(meta(d)["site"], d["reason"]) for d in dropped] == [
        ("small.stackexchange.com", "not_in_top_sites")
    ]
    assert top_sites({"b": 2, "a": 2, "c": 1}, 1) == ["a"]  # ties: by name


def test_html_to_text_keeps_code_and_unescapes_entities():
    body = (
        '<p>Use <code>a &lt; b</code> &amp; see <a href="https://x.org">the docs</a>.</p>\n'
        "<pre><code>def f():\n    return 1 &gt; 0\n</code></pre>"
        "<ul><li>one&#39;s</li><li><strong>two</strong></li></ul><script>x()</script>"
    )
    assert html_to_text(body) == (
        "Use a < b & see the docs.\n\ndef f():\n    return 1 > 0\n\none's\n\ntwo"
    )


def test_orphan_answers_and_malformed_rows_are_dropped_with_reasons(storage, tmp_path):
    no_id = answer(5, 1, 1) | {"Id": ""}
    rows = [question(1), answer(2, 1, 3), answer(3, 99, 1), answer(4, 1, "ten"), no_id]
    write_site(tmp_path, "a.stackexchange.com", rows)
    [doc], dropped = run(storage, tmp_path)
    assert meta(doc)["answer_ids"] == [2]
    assert sorted(d["reason"] for d in dropped) == [
        "malformed_row",
        "malformed_row",
        "orphan_answer",
    ]


def test_billion_laughs_is_quarantined_and_other_sites_go_on(storage, tmp_path):
    write_site(tmp_path, "good.stackexchange.com", [question(1)])
    (tmp_path / "evil.stackexchange.com").mkdir()
    (tmp_path / "evil.stackexchange.com" / "Posts.xml").write_text(BILLION_LAUGHS)
    kept, dropped = run(storage, tmp_path, top=1)  # the unreadable file ranks last
    assert [meta(d)["site"] for d in kept] == ["good.stackexchange.com"]
    [quarantined] = dropped
    assert quarantined["reason"] == "malformed_xml"
    assert "DTDForbidden" in meta(quarantined)["error"]
    # named as the data root sees it, so two roots (a disk, a bucket) write the same row
    assert meta(quarantined)["file"] == "evil.stackexchange.com/Posts.xml"


def test_verify_flags_answers_out_of_integer_order():
    def table(scores):
        meta = {"answer_scores": scores, "answer_count": len(scores)}
        row = {"id": "x", "source": "stackexchange", "text": "", "url": None}
        return pa.Table.from_pylist([row | {"meta": json.dumps(meta)}], schema=DOCUMENT_SCHEMA)

    assert verify_stackexchange(table([100, 10, 9, 0, -2])) == []
    assert verify_stackexchange(table([9, 100, 10, 0, -2]))  # the string sort
    assert verify_stackexchange(table(["9", "10"]))


def test_sample_dump_through_the_stage(storage, tmp_path):
    root = tmp_path / "stackexchange"
    summary = build_stackexchange(root, REPO / ".cache" / "debian", seed=0)
    truth = {
        t["site"]: t
        for t in map(json.loads, (root / "stackexchange.jsonl").read_text().splitlines())
    }
    assert summary["sites"] == len(truth) > 4
    kept, dropped = run(storage, root, top=4)
    assert verify_stackexchange(pq.read_table(root / "out")) == []
    readable = [t for t in truth.values() if not t["malformed_xml"]]
    selected = sorted(readable, key=lambda t: -t["posts"])[:4]
    assert len(kept) == sum(t["questions"] for t in selected)
    reasons = [d["reason"] for d in dropped]
    assert reasons.count("not_in_top_sites") == sum(t["questions"] for t in readable) - len(kept)
    assert reasons.count("malformed_xml") == 1
    assert reasons.count("orphan_answer") == sum(t["orphan_answers"] for t in readable)
    assert reasons.count("malformed_row") == sum(t["malformed_rows"] for t in readable)

    [planted] = [t for t in truth.values() if "score_sort_question" in t]
    by_question = {(meta(d)["site"], meta(d)["question_id"]): meta(d) for d in kept}
    score_sort = by_question[(planted["site"], planted["score_sort_question"])]
    assert score_sort["answer_scores"] == planted["score_sort_expected"]
    assert score_sort["accepted_answer_id"] != score_sort["answer_ids"][0]
    tie = by_question[(planted["site"], planted["tie_question"])]
    assert tie["answer_ids"][0] == planted["tie_expected_first"]
    for question_id in planted["unanswered_questions"]:
        assert by_question[(planted["site"], question_id)]["answer_count"] == 0


def test_sample_dump_is_deterministic(tmp_path):
    cache = REPO / ".cache" / "debian"
    build_stackexchange(tmp_path / "a", cache, seed=3)
    build_stackexchange(tmp_path / "b", cache, seed=3)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


@pytest.mark.parametrize("score", ["", "1.5"])
def test_a_question_without_an_integer_score_is_a_malformed_row(storage, tmp_path, score):
    write_site(tmp_path, "a.stackexchange.com", [question(1, score=score)])
    kept, [dropped] = run(storage, tmp_path)
    assert kept == [] and dropped["reason"] == "malformed_row"


def shuffled_site(questions: int) -> list[dict]:
    """Questions with answers, orphan answers, a tag wiki, malformed rows and a repeated
    question Id, in random row order: answers before their question, far from it."""
    rng = random.Random(5)
    rows = [question(100_000, title="first copy")]
    for q in range(1, questions + 1):
        rows.append(question(q * 10, title=f"q{q}", accepted=str(q * 10 + 1) * (q % 2)))
        rows += [answer(q * 10 + a, q * 10, rng.randint(-5, 30)) for a in range(1, q % 4 + 1)]
    rows += [answer(90_000 + i, 77_777 + i % 3, i) for i in range(12)]
    rows += [{"Id": str(50_000 + i), "PostTypeId": "5", "Score": "0"} for i in range(5)]
    rows += [question(3, score="1.5"), answer(7, 10, "ten")]
    rng.shuffle(rows)
    return rows + [question(100_000, title="second copy")]  # a repeated Id: the later row wins


def test_a_memory_bound_leaves_the_site_byte_identical(storage, tmp_path):
    write_site(tmp_path, "a.stackexchange.com", shuffled_site(1200))
    outputs, rows = {}, {}
    for out, bound in {"one": None, "runs": 20_000, "rows": 1}.items():
        settings = {} if bound is None else {"bytes_per_run": bound}
        rows[out] = run(storage, tmp_path, out=out, **settings)
        files = (tmp_path / out).rglob("*.parquet")
        outputs[out] = {str(p.relative_to(tmp_path / out)): p.read_bytes() for p in files}
    assert outputs["one"] == outputs["runs"] == outputs["rows"]
    kept, dropped = rows["rows"]
    ids = [meta(doc)["question_id"] for doc in kept]
    assert ids == sorted(ids) and len(ids) == 1201
    assert meta(kept[-1])["title"] == "second copy"
    reasons = [d["reason"] for d in dropped]
    assert reasons == ["malformed_row"] * 2 + ["orphan_answer"] * 12 + ["other_post_type"] * 5
    orphans = [meta(d)["post_id"] for d in dropped if d["reason"] == "orphan_answer"]
    assert orphans == sorted(orphans)


def test_a_site_read_through_runs_and_then_broken_is_one_malformed_xml(storage, tmp_path):
    write_site(tmp_path, "a.stackexchange.com", shuffled_site(50))
    path = tmp_path / "a.stackexchange.com" / "Posts.xml"
    path.write_bytes(path.read_bytes()[:-20])  # truncated after most rows
    kept, [dropped] = run(storage, tmp_path, bytes_per_run=1)
    assert kept == [] and dropped["reason"] == "malformed_xml"
