"""C4 heuristics: every rule with a case that fails without it, and the span dedup's order."""

import pyarrow as pa
import pyarrow.parquet as pq

from curation.commoncrawl.c4 import C4Filter, split_sentences
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput


def page(topic: str) -> list[str]:
    """Three lines, six sentences, all naming `topic`: passes every rule, shares no span."""
    return [
        f"The {topic} module reads its input carefully. It checks every {topic} record twice.",
        f"Each {topic} record holds one event. The {topic} writer appends them in order.",
        f"Old {topic} files are compressed nightly. Nobody edits a {topic} file by hand.",
    ]


def shard(tmp_path, name: str, pages: list[list[str]], language: str = "en") -> ShardInput:
    rows = [
        {
            "id": f"{name}-{i}",
            "source": "t",
            "text": "\n".join(lines),
            "url": None,
            "meta": "{}",
            "language": language,
            "language_score": 0.9,
        }
        for i, lines in enumerate(pages)
    ]
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=C4Filter.output_schema), path)
    return ShardInput(name, str(path), f"fp-{name}-{len(rows)}", path.stat().st_size)


def run(storage, tmp_path, shards, stage=None, workers=1, out="out"):
    out_dir = tmp_path / out
    stage = stage or C4Filter()
    manifest = run_stage(stage, shards, str(out_dir), storage, LocalExecutor(workers))
    kept = {d["id"]: d["text"].split("\n") for d in pq.read_table(out_dir).to_pylist()}
    dropped = {d["id"]: d["reason"] for d in pq.read_table(out_dir / "_dropped").to_pylist()}
    assert manifest.n_in == manifest.kept + sum(manifest.dropped.values())
    return manifest, kept, dropped


def kept_lines(storage, tmp_path, extra: list[str], out="out", **config) -> list[str]:
    """The lines C4 keeps of a good page followed by `extra`."""
    shards = [shard(tmp_path, "s0", [page("cache") + extra])]
    _, kept, dropped = run(storage, tmp_path, shards, C4Filter(**config), out=out)
    assert not dropped
    return kept["s0-0"]


def test_lines_need_terminal_punctuation_a_closing_quote_counts_an_ellipsis_does_not(
    storage, tmp_path
):
    lines = kept_lines(
        storage,
        tmp_path,
        [
            "Home About Contact Download",
            'The sign on the door said "keep out"',
            "And then the cache filled up...",
        ],
    )
    assert lines == [*page("cache"), 'The sign on the door said "keep out"']


def test_lines_with_fewer_than_three_words_are_removed(storage, tmp_path):
    assert kept_lines(storage, tmp_path, ["Read more.", "Read more here."]) == [
        *page("cache"),
        "Read more here.",
    ]


def test_lines_with_a_word_over_1000_characters_are_removed(storage, tmp_path):
    long_line = f"This line hides {'x' * 1001} inside."
    fine_line = f"This line hides {'x' * 1000} inside."
    assert kept_lines(storage, tmp_path, [long_line, fine_line]) == [*page("cache"), fine_line]


def test_lines_mentioning_javascript_are_removed(storage, tmp_path):
    javascript = "Please enable JavaScript to view this page."
    assert kept_lines(storage, tmp_path, [javascript]) == page("cache")


def test_policy_phrases_remove_lines_and_are_configurable(storage, tmp_path):
    policy = "Read our Privacy Policy for the details."
    newsletter = "Subscribe to our newsletter for weekly news."
    assert kept_lines(storage, tmp_path, [policy, newsletter]) == [*page("cache"), newsletter]
    custom = kept_lines(
        storage, tmp_path, [policy, newsletter], out="custom", policy_phrases=("newsletter",)
    )
    assert custom == [*page("cache"), policy]


def test_citation_markers_are_deleted_before_the_punctuation_check(storage, tmp_path):
    assert kept_lines(storage, tmp_path, ["The cache was added in version two.[3]"]) == [
        *page("cache"),
        "The cache was added in version two.",
    ]


def test_page_drop_rules_each_give_their_own_reason(storage, tmp_path):
    pages = {
        "lorem": [*page("a"), "Lorem ipsum dolor sit amet, consectetur adipiscing elit."],
        "brace": [*page("b"), "Pass the options as {timeout: 5} to the constructor."],
        "brace_in_removed_line": [*page("c"), "function main() {"],
        "empty": ["Home", "About us", "Contact"],
        "four_sentences": page("d")[:2],
        "two_lines": [page("e")[0] + " " + page("e")[1], page("e")[2]],
    }
    _, kept, dropped = run(storage, tmp_path, [shard(tmp_path, "s0", list(pages.values()))])
    assert dropped == {
        "s0-0": "c4_lorem_ipsum",
        "s0-1": "c4_curly_brace",
        "s0-3": "c4_empty_after_line_filter",
        "s0-4": "c4_too_few_sentences",
        "s0-5": "c4_too_few_lines",
    }
    assert kept["s0-2"] == page("c")


def test_only_configured_languages_are_kept(storage, tmp_path):
    german = [shard(tmp_path, "s0", [page("a")], language="de")]
    assert run(storage, tmp_path, german, out="en")[2] == {"s0-0": "c4_language"}
    assert run(storage, tmp_path, german, C4Filter(languages=()), out="all")[2] == {}


def test_bad_words_match_whole_words_case_insensitively_from_a_file(storage, tmp_path):
    words = tmp_path / "bad_words.txt"
    words.write_text("# one word or phrase per line\nfrobnicate\n\nglorp zork\n")
    pages = [
        [*page("a"), "Never FROBNICATE the cache by hand."],
        [*page("b"), "The frobnicated cache is never read again."],
        [*page("c"), "Somebody said Glorp \t zork in the channel."],
        [*page("d"), "Somebody said glorp zorked in the channel."],
    ]
    stage = C4Filter(bad_words_path=str(words))
    _, _, dropped = run(storage, tmp_path, [shard(tmp_path, "s0", pages)], stage)
    assert dropped == {"s0-0": "c4_bad_words", "s0-2": "c4_bad_words"}
    before = stage.config()["bad_words_sha256"]
    words.write_text("frobnicate\n")
    assert stage.config()["bad_words_sha256"] != before


def test_line_histogram_counts_removals_by_rule(storage, tmp_path):
    extra = ["Home", "Enable javascript to see more of this.", "Read our privacy policy now."]
    manifest, _, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [page("a") + extra])])
    assert manifest.histograms["lines"] == {
        "kept": 3,
        "no_terminal_punctuation": 1,
        "javascript": 1,
        "policy_phrase": 1,
    }


def test_sentences_split_after_terminal_punctuation_and_closing_quotes():
    assert split_sentences('He said "go." Then he left! Why? Version 3.11 is out.') == [
        'He said "go."',
        "Then he left!",
        "Why?",
        "Version 3.11 is out.",
    ]


def test_repeated_spans_lose_their_sentences_after_the_first_occurrence(storage, tmp_path):
    a = page("a")
    later = [a[0], a[1], *page("b")]  # a's first four sentences, then six of its own
    _, kept, dropped = run(
        storage, tmp_path, [shard(tmp_path, "s0", [a]), shard(tmp_path, "s1", [later])]
    )
    assert kept == {"s0-0": a, "s1-0": page("b")}
    assert not dropped


def test_a_span_repeated_inside_one_page_keeps_its_first_copy(storage, tmp_path):
    a = page("a")
    _, kept, _ = run(storage, tmp_path, [shard(tmp_path, "s0", [[*a, a[0] + " " + a[1]]])])
    assert kept["s0-0"] == a


def test_first_occurrence_is_by_shard_then_row_and_the_copy_is_dropped(storage, tmp_path):
    copies = [shard(tmp_path, "s0", [page("x"), page("a")]), shard(tmp_path, "s1", [page("a")])]
    _, kept, dropped = run(storage, tmp_path, copies, out="forward")
    assert set(kept) == {"s0-0", "s0-1"} and dropped == {"s1-0": "c4_duplicate_spans"}
    _, kept, dropped = run(storage, tmp_path, copies[::-1], out="reversed")
    assert set(kept) == {"s1-0", "s0-0"} and dropped == {"s0-1": "c4_duplicate_spans"}


def test_span_dedup_does_not_depend_on_the_worker_count(storage, tmp_path):
    a, b = page("a"), page("b")
    shards = [
        shard(tmp_path, "s0", [a, [a[2], *b]]),
        shard(tmp_path, "s1", [b, [*a, *page("c")]]),
        shard(tmp_path, "s2", [[b[1], a[1], *page("d")], a]),
    ]
    one = run(storage, tmp_path, shards, workers=1, out="one")
    two = run(storage, tmp_path, shards, workers=2, out="two")
    assert one[1:] == two[1:]
    assert one[0].histograms == two[0].histograms
