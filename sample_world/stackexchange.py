"""A small Stack Exchange data dump: one `<site>/Posts.xml` per site, in the real dump schema.

Posts are real text: each question of the Python FAQ pages (python3.11-doc) and each section of
the Debian Reference (debian-reference-en) is a question, its heading the title; the paragraphs
and code blocks that answer it are split into one to four answers. Bodies are the HTML the
dump carries (`<p>`, `<pre><code>`, links, inline code, escaped entities). Ids follow creation
time, as in the dump, so answers of one question are interleaved with other questions.

Planted for the cleaner, in the largest site: a question whose answer scores 9, 10, 100, -2, 0
sort differently as strings and as integers, with the 9 accepted; a score tie broken by the
accepted answer; a question without answers; an answer whose question is missing; a row without
an Id and a row with a non-integer Score; in another site a tag-wiki post (PostTypeId 4). For
decontamination, an answer of the largest site's next richest question ends with a HumanEval
prompt as its code (`contamination.py`): the question keeps its other answers when the prompt
is cut out. One more site's file is a "billion laughs" entity-expansion attack. There are more
sites than the sample keeps, so the "largest sites" rule drops some. `stackexchange.jsonl` is
the ground truth.
"""

from __future__ import annotations

import html
import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

from sample_world.contamination import ANSWER_PLANT
from sample_world.debian import PACKAGES, fetch_package

SCORE_SORT_SCORES = (9, 10, 100, -2, 0)  # string order 9 > 100 > 10 > 0 > -2
TIE_SCORES = (5, 5)
PY_FAQ = "usr/share/doc/python3.11/html/faq"
PY_BASE = "https://docs.python.org/3.11/faq/"
REF_DIR = "usr/share/debian-reference"
REF_BASE = "https://www.debian.org/doc/manuals/debian-reference/"
# (site, package, file names): sizes differ because the sources do.
SITES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("python-programming", "python3.11-doc", ("programming.html",)),
    ("python-library", "python3.11-doc", ("library.html",)),
    ("python-design", "python3.11-doc", ("design.html",)),
    ("python-general", "python3.11-doc", ("general.html",)),
    ("python-extending", "python3.11-doc", ("extending.html",)),
    ("python-windows", "python3.11-doc", ("windows.html",)),
    ("debian", "debian-reference-en", ("ch03.en.html", "ch04.en.html", "ch08.en.html")),
)
PLANTED_SITE = "python-programming"
TAG_WIKI_SITE = "debian"
ATTACK_SITE = "python-gui"
EPOCH = datetime(2014, 3, 1, 9, 0, 0)

_TOKEN = re.compile(
    r"<h([23])\b[^>]*>(?P<heading>.*?)</h\1>|<p\b[^>]*>(?P<p>.*?)</p>|<pre\b[^>]*>(?P<pre>.*?)</pre>",
    re.DOTALL,
)
_TAG = re.compile(r"<(/?)([a-zA-Z0-9]+)\b([^>]*?)/?>")
_HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""")
_KEPT_INLINE = frozenset({"a", "code", "em", "strong"})
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.\s+")


@dataclass
class Entry:
    """A question of the source text: its heading and the HTML blocks that answer it."""

    title: str
    blocks: list[str] = field(default_factory=list)


def _inline_html(raw: str, base: str) -> str:
    """Source HTML reduced to what a post body holds: links (made absolute), inline code,
    emphasis; other tags (spans, anchors without href) leave only their text."""

    def tag(m: re.Match[str]) -> str:
        closing, name, attrs = m.group(1), m.group(2).lower(), m.group(3)
        if name not in _KEPT_INLINE:
            return ""
        if name == "a" and not closing:
            href = _HREF.search(attrs)
            if href is None:
                return ""
            return f'<a href="{html.escape(urljoin(base, html.unescape(href.group(1))))}">'
        return f"<{closing}{name}>"

    return " ".join(_TAG.sub(tag, raw).split())


def _code_html(raw: str) -> str:
    """A source code listing as `<pre><code>`: highlighting spans go, escaping stays."""
    return "<pre><code>" + _TAG.sub("", raw).strip("\n") + "\n</code></pre>"


def _title(raw: str) -> str:
    text = html.unescape(_TAG.sub("", raw)).replace("\u00b6", "")
    return _SECTION_NUMBER.sub("", " ".join(text.split()))


def extract_entries(page: str, base: str) -> list[Entry]:
    """Every level-2/3 heading of a page with the paragraphs and code blocks under it;
    headings with nothing under them (group headings) are left out."""
    start = page.find('role="main"')
    entries: list[Entry] = []
    for m in _TOKEN.finditer(page, max(start, 0)):
        if m.group("heading") is not None:
            entries.append(Entry(_title(m.group("heading"))))
        elif entries and m.group("pre") is not None:
            entries[-1].blocks.append(_code_html(m.group("pre")))
        elif entries:
            inline = _inline_html(m.group("p"), base)
            if inline:
                entries[-1].blocks.append(f"<p>{inline}</p>")
    return [e for e in entries if e.title and e.blocks]


@dataclass(eq=False)  # identity: rows refer to each other
class Row:
    """One post before Ids are given out (Ids follow creation time)."""

    kind: int  # 1 question, 2 answer, 4 tag wiki
    created: datetime
    body: str
    score: int
    title: str = ""
    tags: tuple[str, ...] = ()
    question: Row | None = None
    answers: list[Row] = field(default_factory=list)
    accepted: Row | None = None
    post_id: int = 0
    attrs: dict[str, str] = field(default_factory=dict)  # overrides, for the malformed rows


def _score(rng: random.Random) -> int:
    """Heavy-tailed like real votes: mostly small, a few in the hundreds, some negative."""
    return int(rng.paretovariate(1.1)) - 2 + rng.randint(0, 3)


def _split(blocks: list[str], n: int) -> list[list[str]]:
    """`blocks` cut into `n` contiguous, non-empty answers."""
    cuts = [round(i * len(blocks) / n) for i in range(n + 1)]
    return [blocks[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _question(entry: Entry, tags: tuple[str, ...], rng: random.Random, i: int) -> Row:
    created = EPOCH + timedelta(days=3 * i, minutes=rng.randint(0, 1440))
    q = Row(1, created, f"<p>{html.escape(entry.title)}</p>", _score(rng), entry.title, tags)
    n = min(len(entry.blocks), rng.choice((1, 1, 2, 2, 3, 4)))
    for j, chunk in enumerate(_split(entry.blocks, n)):
        delay = timedelta(hours=rng.randint(1, 24 * 20), minutes=j)
        q.answers.append(Row(2, created + delay, "\n".join(chunk), _score(rng), question=q))
    if q.answers and rng.random() < 0.6:
        q.accepted = rng.choice(q.answers)
    return q


def _plant_scores(q: Row, scores: tuple[int, ...], accepted_index: int) -> None:
    """Give `q`'s answers exactly `scores`, in Id order, and accept one of them."""
    blocks = [a.body for a in q.answers]
    q.answers = [
        Row(2, q.created + timedelta(hours=1 + j), blocks[j % len(blocks)], s, question=q)
        for j, s in enumerate(scores)
    ]
    q.accepted = q.answers[accepted_index]


def _site_rows(site: str, entries: list[Entry], tags: tuple[str, ...], seed: int) -> list[Row]:
    rng = random.Random(f"{seed}/{site}")
    questions = [_question(e, tags, rng, i) for i, e in enumerate(entries)]
    extra = _plant(questions) if site == PLANTED_SITE else []
    if site == TAG_WIKI_SITE:
        extra.append(Row(4, EPOCH, f"<p>Questions about {html.escape(tags[0])}.</p>", 0))
    rows = [*questions, *(a for q in questions for a in q.answers), *extra]
    rows.sort(key=lambda r: (r.created, r.kind, r.body))
    for post_id, row in enumerate(rows, start=1):
        row.post_id = post_id
    return rows


def _plant(questions: list[Row]) -> list[Row]:
    """The rows the cleaner must get right (see the module docstring); returns the extra rows."""
    richest = max(questions, key=lambda q: (len("".join(a.body for a in q.answers)), q.title))
    _plant_scores(richest, SCORE_SORT_SCORES, accepted_index=0)
    tie = next(q for q in questions if q is not richest and q.answers)
    _plant_scores(tie, TIE_SCORES, accepted_index=1)
    unanswered = next(q for q in reversed(questions) if q not in (richest, tie))
    unanswered.answers, unanswered.accepted = [], None
    others = [q for q in questions if q not in (richest, tie, unanswered) and q.answers]
    quoting = max(others, key=lambda q: (len("".join(a.body for a in q.answers)), q.title))
    quoting.answers[0].body += "\n" + _benchmark_code()
    last = max(q.created for q in questions)
    body = questions[0].answers[0].body if questions[0].answers else "<p>See the manual.</p>"
    orphan = Row(2, last + timedelta(days=1), body, 3, attrs={"ParentId": "999999"})
    no_id = Row(2, last + timedelta(days=2), body, 1, question=tie, attrs={"Id": ""})
    bad_score = Row(2, last + timedelta(days=3), body, 0, question=tie, attrs={"Score": "12a"})
    tie.answers += [no_id, bad_score]
    return [orphan]


def _benchmark_code() -> str:
    """The planted HumanEval prompt as an answer's code block."""
    return _code_html(html.escape(ANSWER_PLANT.text(), quote=False))


def _attrs(row: Row, seed_rng: random.Random) -> dict[str, str]:
    """The row's attributes in the dump's order; `attrs` overrides (an empty value: absent)."""
    a: dict[str, str] = {"Id": str(row.post_id), "PostTypeId": str(row.kind)}
    if row.kind == 2 and row.question is not None:
        a["ParentId"] = str(row.question.post_id)
    if row.kind == 1 and row.accepted is not None:
        a["AcceptedAnswerId"] = str(row.accepted.post_id)
    a["CreationDate"] = row.created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{row.post_id % 1000:03d}"
    a["Score"] = str(row.score)
    if row.kind == 1:
        a["ViewCount"] = str(seed_rng.randint(20, 90_000))
    a["Body"] = row.body
    a["OwnerUserId"] = str(seed_rng.randint(1, 5000))
    a["LastActivityDate"] = a["CreationDate"]
    if row.kind == 1:
        a["Title"] = row.title
        a["Tags"] = "".join(f"<{t}>" for t in row.tags)
        a["AnswerCount"] = str(len([r for r in row.answers if not r.attrs]))
    a["CommentCount"] = str(seed_rng.randint(0, 6))
    a["ContentLicense"] = "CC BY-SA 4.0"
    a.update(row.attrs)
    return {k: v for k, v in a.items() if v != ""}


def _attr(value: str) -> str:
    """Attribute escaping as the dump writes it (newlines as `&#xA;`)."""
    escaped = html.escape(value, quote=True).replace("&#x27;", "'")
    return escaped.replace("\r", "&#xD;").replace("\n", "&#xA;")


def posts_xml(rows: list[Row], seed: int, site: str) -> str:
    rng = random.Random(f"{seed}/{site}/attrs")
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<posts>"]
    for row in rows:
        attrs = " ".join(f'{k}="{_attr(v)}"' for k, v in _attrs(row, rng).items())
        lines.append(f"  <row {attrs} />")
    return "\n".join([*lines, "</posts>", ""])


BILLION_LAUGHS = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE posts [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<posts>
  <row Id="1" PostTypeId="1" Score="1" Body="&lol9;" Title="lol" Tags="&lt;lol&gt;" />
</posts>
"""


def _truth(site: str, rows: list[Row]) -> dict:
    """Ground truth for one site: what a correct cleaner keeps and drops."""
    valid = [r for r in rows if not r.attrs]
    questions = [r for r in valid if r.kind == 1]
    truth = {
        "site": f"{site}.stackexchange.com",
        "posts": len(rows),
        "questions": len(questions),
        "answers": sum(1 for r in valid if r.kind == 2 and r.question is not None),
        "orphan_answers": sum(1 for r in rows if r.attrs.get("ParentId")),
        "malformed_rows": sum(1 for r in rows if r.attrs and not r.attrs.get("ParentId")),
        "other_posts": sum(1 for r in rows if r.kind not in (1, 2)),
        "malformed_xml": False,
    }
    planted = [q for q in questions if tuple(a.score for a in q.answers) == SCORE_SORT_SCORES]
    if planted:
        truth["score_sort_question"] = planted[0].post_id
        truth["score_sort_expected"] = sorted(SCORE_SORT_SCORES, reverse=True)
        tie = next(q for q in questions if tuple(a.score for a in q.answers[:2]) == TIE_SCORES)
        truth["tie_question"] = tie.post_id
        truth["tie_expected_first"] = tie.accepted.post_id if tie.accepted else None
        truth["unanswered_questions"] = [q.post_id for q in questions if not q.answers]
        quoting = next(q for q in questions if any(_benchmark_code() in a.body for a in q.answers))
        url = f"https://{truth['site']}/questions/{quoting.post_id}"
        truth["benchmark_plants"] = [ANSWER_PLANT.truth("stackexchange", url)]
    return truth


def build_stackexchange(out_dir: Path, cache_dir: Path, seed: int) -> dict:
    """Write the sample dump under `out_dir` and its ground truth; return counts and provenance."""
    specs = {spec.name: spec for spec in PACKAGES}
    packages = {name: fetch_package(specs[name], cache_dir) for name in {p for _, p, _ in SITES}}
    truths = []
    for site, package, files in SITES:
        entries = _site_entries(packages[package].root, package, files)
        rows = _site_rows(site, entries, tuple(site.split("-")), seed)
        _write(out_dir, site, posts_xml(rows, seed, site))
        truths.append(_truth(site, rows))
    _write(out_dir, ATTACK_SITE, BILLION_LAUGHS)
    truths.append(
        {
            "site": f"{ATTACK_SITE}.stackexchange.com",
            "posts": 1,
            "questions": 0,
            "malformed_xml": True,
        }
    )
    truths.sort(key=lambda t: t["site"])
    lines = "".join(json.dumps(t, sort_keys=True) + "\n" for t in truths)
    (out_dir / "stackexchange.jsonl").write_text(lines, encoding="utf-8")
    return {
        "sites": len(truths),
        "posts": sum(t["posts"] for t in truths),
        "questions": sum(t["questions"] for t in truths),
        "posts_by_site": {t["site"]: t["posts"] for t in truths},
        "benchmark_plants": [plant for t in truths for plant in t.get("benchmark_plants", [])],
        "provenance": [
            {"package": p.name, "version": p.version, "license": p.license()}
            for p in sorted(packages.values(), key=lambda p: p.name)
        ],
    }


def _site_entries(root: Path, package: str, files: tuple[str, ...]) -> list[Entry]:
    folder, base = (PY_FAQ, PY_BASE) if package.startswith("python") else (REF_DIR, REF_BASE)
    entries: list[Entry] = []
    for name in files:
        page = (root / folder / name).read_text(encoding="utf-8")
        entries += extract_entries(page, base + name)
    return entries


def _write(out_dir: Path, site: str, text: str) -> None:
    path = out_dir / f"{site}.stackexchange.com" / "Posts.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
