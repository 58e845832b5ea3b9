"""Benchmark items planted in the sample's sources, for the `decontaminated` stage to find.

The evaluation sets are the fixtures in `sample_world/benchmarks/` (small items in each lm-eval
task's own schema), copied into the world as `benchmarks/`. A few of their items are planted
where contamination comes from in a real corpus: three crawl pages that quote a BoolQ passage,
a RACE reading passage and a GSM8k word problem; the first French Wikipedia article, which
quotes a BoolQ passage (BoolQ's passages are Wikipedia paragraphs; not an English article,
whose text trains the sample's perplexity models, so planting there would move every crawl
page's perplexity and which pages the crawl keeps); and a StackExchange answer
whose code is a HumanEval prompt (`stackexchange.py` plants it). One more crawl page carries
only the first 12 words of a BoolQ passage: no 13-gram in common, so it must not be caught.

The crawl pages are English pages the earlier stages keep with a margin (head perplexity bucket
far from its cutoff, P(wiki) well above 0.5) and that the Wikipedia-reference classifier does
not train on (they are not cited, and not among its seeded negatives): a planted paragraph
changes no other page's fate. Text is inserted after the world's random draws (at the end of
a page, after an article's lead), so nothing else in the world moves. A page missing from a
smaller world (`max_pages`) is simply not planted; `contamination.jsonl` lists what was.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from curation.core.manifest import fingerprint
from curation.decontamination.benchmarks import query_text
from curation.sources.wikipedia import article_url
from sample_world.planted import Capture
from sample_world.wiki import WikiPage

FIXTURES = Path(__file__).with_name("benchmarks")
TRUTH_FILE = "contamination.jsonl"
BENCHMARKS_DIR = "benchmarks"
NEAR_MISS_WORDS = 12  # one word short of an n-gram


@dataclass(frozen=True)
class Plant:
    """One planted case: the fixture item (`task/split/line`) and whether it is a real
    copy (`contaminated`) or shares only its first `NEAR_MISS_WORDS` words (`near_miss`)."""

    item: str
    kind: str = "contaminated"

    def text(self) -> str:
        task, split, line = self.item.split("/")
        rows = (FIXTURES / task / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        query = query_text(task, json.loads(rows[int(line)]))
        if self.kind == "near_miss":
            return " ".join(query.split()[:NEAR_MISS_WORDS]) + ", as the next section explains."
        return query

    def truth(self, corpus: str, url: str) -> dict[str, str]:
        return {"corpus": corpus, "url": url, "item": self.item, "kind": self.kind}


CRAWL_PLANTS: dict[str, Plant] = {
    "https://debian-handbook.info/browse/en-US/stable/sect.regular-upgrades.html": Plant(
        "boolq/validation/3"
    ),
    "https://debian-handbook.info/browse/en-US/stable/sect.package-authentication.html": Plant(
        "race/test/2"
    ),
    "https://docs.python.org/3.11/library/email.html": Plant("gsm8k/test/1"),
    "https://debian-handbook.info/browse/en-US/stable/sect.creating-accounts.html": Plant(
        "boolq/validation/2", "near_miss"
    ),
}
ARTICLE_PLANT = Plant("boolq/validation/0")
ANSWER_PLANT = Plant("humaneval/test/2")
WIKI_LANGUAGE = "fr"


def plant_pages(captures: list[Capture]) -> list[dict[str, str]]:
    """Each planted item as the last paragraph of its page (in place); their truth rows."""
    truth = []
    for capture in captures:
        plant = CRAWL_PLANTS.get(capture.url)
        if plant is None or capture.kind != "page":
            continue
        paragraph = f"<p>{html.escape(plant.text(), quote=False)}</p>\n</article>"
        capture.body = capture.body.replace(b"</article>", paragraph.encode(), 1)
        truth.append(plant.truth("crawl", capture.url))
    return truth


def plant_article(lang: str, pages: list[WikiPage]) -> list[dict[str, str]]:
    """The first article of the `WIKI_LANGUAGE` Wikipedia gets the planted passage as a
    paragraph after its lead (in place); its truth row."""
    if lang != WIKI_LANGUAGE:
        return []
    article = next(p for p in pages if p.ns == 0 and not p.redirect)
    head, sep, tail = article.text.partition("\n== ")
    article.text = f"{head}\n{ARTICLE_PLANT.text()}\n{sep}{tail}"
    return [ARTICLE_PLANT.truth("wikipedia", article_url(lang, article.title))]


def fixtures_fingerprint() -> str:
    """The fixtures' content: a changed fixture rebuilds the world."""
    files = sorted(FIXTURES.glob("*/*.jsonl"))
    return fingerprint([[p.relative_to(FIXTURES).as_posix(), p.read_text()] for p in files])


def write_benchmarks(root: Path, truth: list[dict[str, str]]) -> None:
    """The evaluation sets under `root/benchmarks/` and the planted cases' ground truth."""
    shutil.copytree(FIXTURES, root / BENCHMARKS_DIR, ignore=shutil.ignore_patterns("__*", ".*"))
    rows = sorted(truth, key=lambda row: (row["corpus"], row["url"]))
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    (root / TRUTH_FILE).write_text(lines, encoding="utf-8")
