"""Gopher quality and repetition rules: the paper's defaults, the documented order, and for
every rule a document that fails that rule alone and is dropped with its reason."""

from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from archives import annotated_shard

from curation.commoncrawl.gopher import (
    GopherQuality,
    duplicate_ngram_fraction,
    split_lines,
    split_words,
    top_ngram_fraction,
)
from curation.core.runner import run_stage

# Ordinary prose: five paragraphs of six lines, one sentence a line. Kept by every rule.
PARAGRAPHS = [
    [
        "The town library reopened last spring after almost two years of renovation work.",
        "Most of the money came from a local bond, approved by voters in a close election.",
        "Builders replaced the leaking roof, widened the entrance, and added a small elevator.",
        "The children's room moved downstairs, where large windows face the river.",
        "Staff members spent the closing period sorting donations and repairing old books.",
        "Many regular visitors say the building finally feels bright and welcoming.",
    ],
    [
        "On weekday mornings, retirees gather near the newspaper racks to read and talk.",
        "By early afternoon, students arrive with laptops and claim every table by the outlets.",
        "A volunteer runs a tax help desk each February, which draws long lines.",
        "Librarians also teach short classes on spreadsheets, résumés, and online banking.",
        "Attendance at those sessions has doubled since the doors opened again.",
        "Nobody expected such demand for practical lessons about everyday software.",
    ],
    [
        "The collection itself changed less than the walls around it.",
        "Popular novels still circulate fastest, followed by cookbooks and travel guides.",
        "Audiobooks, however, now account for nearly a third of all loans.",
        "Patrons can borrow them through an app without visiting in person.",
        "Some longtime readers worry that printed books will slowly lose their shelf space.",
        "The director insists that paper remains central to the mission.",
    ],
    [
        "Funding is the constant question behind every decision.",
        "The annual budget covers salaries, utilities, and a modest amount for new purchases.",
        "Grants pay for special projects, such as a seed library for gardeners.",
        "Last year, residents borrowed packets of beans and squash, then returned seeds in autumn.",
        "Small programs like this cost little but build loyalty among families.",
        "Council members cite them whenever someone proposes cutting hours.",
    ],
    [
        "Looking ahead, the board hopes to extend evening hours during exam season.",
        "It is also studying whether a mobile branch could serve distant farms.",
        "A used van, fitted with shelves, might visit three villages each week.",
        "Critics argue that the money would be better spent on the main building.",
        "Supporters reply that rural readers pay taxes too and deserve access.",
        "A final vote is expected before the end of the year.",
    ],
]
LINES = [line for paragraph in PARAGRAPHS for line in paragraph]
PROSE = "\n\n".join("\n".join(paragraph) for paragraph in PARAGRAPHS)

# Prose without any of the eight stop words.
RECIPE = """Preheat your oven before anything else.
Chop two onions, three carrots, one celery stalk.
Warm olive oil in a heavy pot over medium heat.
Add vegetables, stirring often until soft, roughly ten minutes.
Pour in stock, bring everything up for a simmer, then lower heat.
Season generously: salt, pepper, thyme, bay leaves.
Cook another forty minutes.
Serve hot alongside crusty bread.
Leftovers keep three days in a sealed container; freeze extra portions for busy weeknights."""

# The paper's thresholds (Rae et al. 2021, A.1.1), datatrove's defaults.
PAPER_DEFAULTS = {
    "min_words": 50,
    "max_words": 100_000,
    "min_mean_word_length": 3,
    "max_mean_word_length": 10,
    "max_hash_ratio": 0.1,
    "max_ellipsis_ratio": 0.1,
    "max_bullet_lines": 0.9,
    "max_ellipsis_lines": 0.3,
    "min_alpha_words": 0.8,
    "min_stop_words": 2,
    "stop_words": ("the", "be", "to", "of", "and", "that", "have", "with"),
    "max_duplicate_lines": 0.30,
    "max_duplicate_paragraphs": 0.30,
    "max_duplicate_line_chars": 0.20,
    "max_duplicate_paragraph_chars": 0.20,
    "top_ngram_fractions": ((2, 0.20), (3, 0.18), (4, 0.16)),
    "duplicate_ngram_fractions": (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    ),
}

ORDER = [
    "gopher_too_few_words",
    "gopher_too_many_words",
    "gopher_short_words",
    "gopher_long_words",
    "gopher_hash_ratio",
    "gopher_ellipsis_ratio",
    "gopher_bullet_lines",
    "gopher_ellipsis_lines",
    "gopher_non_alpha_words",
    "gopher_few_stop_words",
    "gopher_duplicate_line_fraction",
    "gopher_duplicate_paragraph_fraction",
    "gopher_duplicate_line_chars",
    "gopher_duplicate_paragraph_chars",
    "gopher_top_2gram",
    "gopher_top_3gram",
    "gopher_top_4gram",
    *(f"gopher_duplicate_{n}gram" for n in range(5, 11)),
]


def pseudo_words(count: int, start: int = 0) -> list[str]:
    """`count` distinct made-up five-letter words (consonant, vowel, consonant, vowel,
    consonant), none a stop word: text whose n-grams never repeat by accident."""
    consonants, vowels = "bcdfghjklmnpqrstvwxyz", "aeiou"
    words = []
    for i in range(start, start + count):
        c1, i = consonants[i % 21], i // 21
        v1, i = vowels[i % 5], i // 5
        c2, i = consonants[i % 21], i // 21
        v2, i = vowels[i % 5], i // 5
        words.append(c1 + v1 + c2 + v2 + consonants[i % 21])
    return words


def as_lines(words: list[str], per_line: int = 12) -> str:
    return "\n".join(" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line))


def planted(n: int, copies: int, share: float) -> str:
    """Made-up words with one n-word phrase planted `copies` times between distinct words, so
    that no other n-gram repeats; every word has five letters (but the two stop words, four),
    so the phrase holds about `share` of the word characters."""
    base = ["have", "with", *pseudo_words(round(copies * n * (1 - share) / share) - 2, 1000)]
    phrase = pseudo_words(n)
    words: list[str] = []
    cuts = [(k + 1) * len(base) // (copies + 1) for k in range(copies)]
    for i, word in enumerate(base):
        words.append(word)
        if i in cuts:
            words.extend(phrase)
    return as_lines(words)


def line_chars(text: str) -> int:
    return sum(map(len, split_lines(text)))


def separator_in_two_paragraphs() -> str:
    """One separator line, long enough to hold over 0.2 of the line characters, at the end of
    two different paragraphs: duplicate lines, no duplicate paragraph, no words."""
    separator = "=" * (line_chars(PROSE) // 8 + 20)
    paragraphs = [list(p) for p in PARAGRAPHS]
    paragraphs[0].append(separator)
    paragraphs[2].append(separator)
    return "\n\n".join("\n".join(p) for p in paragraphs)


def banner_paragraph_twice() -> str:
    """One line per paragraph, and a six-line banner paragraph twice. Its twelve lines are
    under 0.3 of the lines and, at `width` = T/48 characters each (T: the prose's line
    characters), hold at most 0.2 of the line characters; the banner's newlines tip its
    paragraphs over 0.2 of the paragraph characters."""
    width = line_chars(PROSE) // 48
    banner = "\n".join(["=" * width] * 6)
    paragraphs = [*LINES[:10], banner, *LINES[10:20], banner, *LINES[20:]]
    return "\n\n".join(paragraphs)


def with_lines(transform) -> str:
    """The prose, each line replaced by `transform(index, line)` (a string or list of lines)."""
    out, index = [], 0
    for paragraph in PARAGRAPHS:
        lines = []
        for line in paragraph:
            new = transform(index, line)
            lines.extend([new] if isinstance(new, str) else new)
            index += 1
        out.append("\n".join(lines))
    return "\n\n".join(out)


def advertisement_paragraphs() -> str:
    """Three one-word paragraphs among the five of prose: 3/8 of paragraphs, 3/33 of lines."""
    blocks = ["\n".join(p) for p in PARAGRAPHS]
    return "\n\n".join(
        [
            blocks[0],
            "Advertisement",
            blocks[1],
            "Advertisement",
            blocks[2],
            "Advertisement",
            *blocks[3:],
        ]
    )


def numbers_table() -> str:
    """The prose followed by a table of 100 distinct readings: numbers are words without a
    letter, a quarter of all words."""
    return PROSE + "\n\n" + as_lines([str(1000 + 37 * i) for i in range(100)], 10)


CASES = {
    "gopher_too_few_words": "\n".join(LINES[:3]),
    "gopher_too_many_words": as_lines(["have", "with", *pseudo_words(99_999)], 20),
    "gopher_short_words": as_lines(
        ["the", "of", *(c + v for c in "bcdfghjklmnpqrstvwxyz" for v in "aeiou")][:64]
    ),
    "gopher_long_words": as_lines(
        ["have", "with", *("".join(pseudo_words(3, 3 * i)) for i in range(60))]
    ),
    "gopher_hash_ratio": PROSE + "\n" + " ".join("#" + w for w in pseudo_words(45)),
    "gopher_ellipsis_ratio": PROSE + "\n" + " ".join(w + "..." for w in pseudo_words(45)),
    "gopher_bullet_lines": with_lines(lambda i, line: "• " + line),
    "gopher_ellipsis_lines": with_lines(lambda i, line: line[:-1] + "…" if i % 3 == 0 else line),
    "gopher_non_alpha_words": numbers_table(),
    "gopher_few_stop_words": RECIPE,
    "gopher_duplicate_line_fraction": with_lines(lambda i, line: [line, "Reply"]),
    "gopher_duplicate_paragraph_fraction": advertisement_paragraphs(),
    "gopher_duplicate_line_chars": separator_in_two_paragraphs(),
    "gopher_duplicate_paragraph_chars": banner_paragraph_twice(),
    # Shares just over the limit: an n-gram's own repeats are also repeats of its shorter
    # n-grams (top) and its longer n-grams cover no more than it (duplicate).
    **{
        f"gopher_top_{n}gram": planted(n, 8, limit + 0.03)
        for n, limit in GopherQuality.top_ngram_fractions
    },
    **{
        f"gopher_duplicate_{n}gram": planted(n, 2, limit + 0.005)
        for n, limit in GopherQuality.duplicate_ngram_fractions
    },
}


def test_defaults_are_the_papers_thresholds():
    stage = GopherQuality()
    assert {name: getattr(stage, name) for name in PAPER_DEFAULTS} == PAPER_DEFAULTS
    assert set(stage.config()) == {*PAPER_DEFAULTS, "bullets"}
    assert {"•", "-", "*"} <= set(stage.bullets)


def test_rules_are_checked_in_the_documented_order():
    assert [rule.reason for rule in GopherQuality().rules()] == ORDER
    assert set(CASES) == set(ORDER)  # every rule has its case below


def test_real_prose_passes_every_rule():
    assert GopherQuality().failures(PROSE) == []
    assert GopherQuality().failures(RECIPE + "\nThe end of the recipe.") == []


@pytest.mark.parametrize("reason", ORDER)
def test_each_case_fails_its_rule_and_no_other(reason):
    assert GopherQuality().failures(CASES[reason]) == [reason]


def test_the_first_failing_rule_is_the_reason():
    short_list = "\n".join("• " + line for line in LINES[:3])
    stage = GopherQuality()
    assert stage.failures(short_list) == ["gopher_too_few_words", "gopher_bullet_lines"]
    assert stage.reason(short_list) == "gopher_too_few_words"


def test_process_keeps_the_prose_and_drops_every_case_with_its_reason(storage, tmp_path):
    texts = [PROSE, *CASES.values()]
    shard = annotated_shard(tmp_path / "docs.parquet", texts, GopherQuality.input_schema)
    out = GopherQuality().process(shard, storage)
    assert out.n_in == out.kept.num_rows + out.dropped.num_rows == len(texts)
    assert out.kept.column("id").to_pylist() == ["docs-0"]
    assert out.kept.schema == GopherQuality.output_schema
    ids, reasons = out.dropped["id"].to_pylist(), out.dropped["reason"].to_pylist()
    dropped = dict(zip(ids, reasons, strict=True))
    assert dropped == {f"docs-{i}": reason for i, reason in enumerate(CASES, 1)}
    assert set(out.dropped.column("stage").to_pylist()) == {"cc_gopher"}


def test_the_runner_counts_every_document_once(storage, tmp_path):
    texts = [PROSE, PROSE.replace("town", "county"), *CASES.values()]
    shard = annotated_shard(tmp_path / "docs.parquet", texts, GopherQuality.input_schema)
    manifest = run_stage(GopherQuality(), [shard], str(tmp_path / "gopher"), storage)
    assert manifest.n_in == manifest.kept + sum(manifest.dropped.values()) == len(texts)
    assert manifest.kept == 2
    assert manifest.dropped == Counter(list(CASES))
    assert pq.read_table(tmp_path / "gopher").num_rows == 2


def test_words_are_trimmed_of_punctuation_and_symbols():
    text = "“Don't” (see e-mail), 3.14... — # ## ok. नमस्ते"
    assert split_words(text) == ["Don't", "see", "e-mail", "3.14", "ok", "नमस्ते"]


def test_overlapping_repeats_count_each_character_once():
    words = ["la"] * 4
    lengths = np.array([2] * 4)
    # "la la" occurs three times, overlapping: the four words, not six, are covered.
    assert top_ngram_fraction(words, lengths, 2) == 1.0
    words = ["aa", *"bcdef", "x", *"bcdef", "yy"]
    lengths = np.array(list(map(len, words)))
    # Both occurrences of "b c d e f" count, the first too: 10 of 15 characters.
    assert duplicate_ngram_fraction(words, lengths, 5) == 10 / 15
    assert duplicate_ngram_fraction(words, lengths, 6) == 0.0
