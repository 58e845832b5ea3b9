"""`stackexchange`: Stack Exchange data dump `Posts.xml` files to question-and-answers documents.

The LLaMA recipe keeps the 28 largest sites, removes the HTML and sorts each question's answers
by score, highest first. Scores are compared as integers: an earlier reproduction sorted the
attribute strings, which puts "9" above "100" and "-2" above "0" (DESIGN.md section 5).

Units: a shard is one site's `Posts.xml`. Its `n_in` counts records: every question (kept with
its answers as one document, or dropped whole as `not_in_top_sites`), every answer that cannot
be attached to a question (`orphan_answer`), every row that is not a question or an answer
(`other_post_type`) and every unreadable row (`malformed_row`). Answers attached to a question
are part of that question's record, not records of their own. A file that is not well-formed,
safe XML (a DTD, entity declarations: "billion laughs") is one record, `malformed_xml`: nothing
of it is kept, because a truncated file would give questions without their answers.

Memory is bounded by configuration, not by the largest site: an answer can come anywhere after
its question, so the join sorts the posts by question Id (a question's own, an answer's
ParentId) in sorted runs of `bytes_per_run` of parsed posts on local disk (core/sorted_runs.py)
and merges them, meeting each question with its answers, one question at a time; documents
come out in batches. Parsing streams with defusedxml, clearing every row once read.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import groupby, islice
from operator import itemgetter
from typing import Any, BinaryIO, ClassVar
from xml.etree.ElementTree import ParseError

import pyarrow as pa
import pyarrow.fs as pafs
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from curation.core.documents import (
    DOCUMENT_SCHEMA,
    Document,
    document_id,
    documents_table,
    drop_rows,
)
from curation.core.sorted_runs import SortedRuns
from curation.core.stage import ShardInput, ShardOutput, Stage, run_setting, state_field
from curation.core.storage import Storage

SOURCE = "stackexchange"
POSTS_FILE = "Posts.xml"
QUESTION, ANSWER = 1, 2
TOP_SITES = 28
_SIZES_FILE = "site_sizes.json"
_XML_ERRORS = (ParseError, DefusedXmlException)


class MalformedDump(ValueError):
    """The file is not well-formed, safe XML (broken, truncated, or with a DTD/entities)."""


# --- reading ----------------------------------------------------------------------------------


def site_of(path: str) -> str:
    """`.../apple.stackexchange.com/Posts.xml` -> `apple.stackexchange.com`: the dump is one
    directory (one .7z archive) per site, and every site's file has the same name."""
    return posixpath.basename(posixpath.dirname(path))


def iter_rows(stream: BinaryIO) -> Iterator[dict[str, str]]:
    """The attributes of every `<row>` of a dump file, streamed, each element cleared once read.

    Raises MalformedDump on broken XML or on any DTD (forbid_dtd: a dump never has one, and
    refusing it refuses every entity-expansion trick), after the rows before the problem.
    """
    root = None
    try:
        for event, elem in iterparse(stream, events=("start", "end"), forbid_dtd=True):
            if root is None:
                root = elem
            if event == "end" and elem.tag == "row":
                yield dict(elem.attrib)
                root.clear()  # drop finished rows: memory is bounded by one row
    except _XML_ERRORS as exc:
        raise MalformedDump(f"{type(exc).__name__}: {exc}") from exc


def count_rows(stream: BinaryIO) -> int:
    """Posts of a site file, for the site ranking; 0 for a file that cannot be read, so a
    broken file never takes the place of a readable site."""
    try:
        return sum(1 for _ in iter_rows(stream))
    except MalformedDump:
        return 0


def top_sites(sizes: dict[str, int], n: int) -> list[str]:
    """The `n` sites with the most posts; ties go to the smaller name, so the choice never
    depends on listing order."""
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    return sorted(site for site, _ in ranked[:n])


def parse_tags(tags: str) -> list[str]:
    """`<python><faq>` (older dumps) or `|python|faq|` (2024 and later) -> ['python', 'faq']."""
    return [t for t in re.split(r"[<>|]+", tags) if t]


# --- HTML to text ------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {"p", "div", "pre", "blockquote", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}
    | {"table", "tr", "hr", "br", "dl", "dt", "dd"}
)
_SKIPPED_TAGS = frozenset({"script", "style"})


class _TextParser(HTMLParser):
    """Collects blocks of text: inline markup (links, emphasis, inline code) melts into its
    block; `<pre>` keeps its line breaks and indentation, since code is text the model reads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities (&lt; &amp; &#39;) become characters
        self.blocks: list[str] = []
        self._buffer: list[str] = []
        self._pre = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._pre = max(0, self._pre - (tag == "pre"))

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        text = raw.strip("\n").rstrip() if self._pre else " ".join(raw.split())
        if text.strip():
            self.blocks.append(text)


def html_to_text(body: str) -> str:
    """Plain text of a post body: one paragraph, list item or code block per block, blocks
    separated by a blank line; tags dropped, entities unescaped, code kept verbatim."""
    parser = _TextParser()
    parser.feed(body)
    parser.close()
    return "\n\n".join(parser.blocks)


# --- posts and documents -----------------------------------------------------------------------


class MalformedRow(ValueError):
    """A row without the integer fields every post has (Id, PostTypeId, Score)."""


@dataclass(frozen=True)
class Post:
    """One row of Posts.xml with its body already turned into text (what memory holds)."""

    post_id: int
    post_type: int
    score: int
    text: str
    parent_id: int | None = None
    accepted_answer_id: int | None = None
    title: str = ""
    tags: tuple[str, ...] = ()


def _int(row: dict[str, str], key: str) -> int:
    try:
        return int(row[key])
    except (KeyError, ValueError) as exc:
        raise MalformedRow(f"{key}={row.get(key)!r}") from exc


def _optional_int(row: dict[str, str], key: str) -> int | None:
    return _int(row, key) if row.get(key, "") != "" else None


def parse_post(row: dict[str, str]) -> Post:
    """A row as a Post; MalformedRow when a field the recipe relies on is not an integer."""
    post_type = _int(row, "PostTypeId")
    return Post(
        post_id=_int(row, "Id"),
        post_type=post_type,
        score=_int(row, "Score"),
        text=html_to_text(row.get("Body", "")),
        parent_id=_int(row, "ParentId") if post_type == ANSWER else None,
        accepted_answer_id=_optional_int(row, "AcceptedAnswerId"),
        title=" ".join(row.get("Title", "").split()),
        tags=tuple(parse_tags(row.get("Tags", ""))),
    )


def sorted_answers(question: Post, answers: list[Post]) -> list[Post]:
    """Highest integer score first; ties: the accepted answer, then the older (smaller) Id."""
    return sorted(
        answers, key=lambda a: (-a.score, a.post_id != question.accepted_answer_id, a.post_id)
    )


def question_text(question: Post, answers: list[Post]) -> str:
    """`Q: <title>`, a blank line, the question body, then `A: <answer>` per answer, every
    part separated by a blank line."""
    parts = [f"Q: {question.title}", question.text, *(f"A: {a.text}" for a in answers)]
    return "\n\n".join(p for p in parts if p)


def question_document(site: str, question: Post, answers: list[Post]) -> Document:
    """A question and its answers (already in order) as one document."""
    return Document(
        id=document_id(SOURCE, f"{site}/{question.post_id}"),
        source=SOURCE,
        text=question_text(question, answers),
        url=f"https://{site}/questions/{question.post_id}",
        meta={
            "site": site,
            "question_id": question.post_id,
            "title": question.title,
            "score": question.score,
            "answer_count": len(answers),
            "tags": list(question.tags),
            "accepted_answer_id": question.accepted_answer_id,
            "answer_ids": [a.post_id for a in answers],
            "answer_scores": [a.score for a in answers],
        },
    )


def _post_document(site: str, post: Post) -> Document:
    """A post that is not a question with answers (an orphan answer, a tag wiki), dropped."""
    return Document(
        id=document_id(SOURCE, f"{site}/post/{post.post_id}"),
        source=SOURCE,
        text=post.text,
        url=f"https://{site}/a/{post.post_id}" if post.post_type == ANSWER else None,
        meta={
            "site": site,
            "post_id": post.post_id,
            "post_type": post.post_type,
            "parent_id": post.parent_id,
            "score": post.score,
        },
    )


def _malformed_row_document(site: str, index: int, row: dict[str, str], error: str) -> Document:
    """The row as read (body as text, other attributes in meta), so a person can see why it
    did not parse."""
    attributes = {k: v for k, v in row.items() if k != "Body"}
    return Document(
        id=document_id(SOURCE, f"{site}/row/{index}"),
        source=SOURCE,
        text=row.get("Body", ""),
        url=None,
        meta={"site": site, "row_index": index, "error": error, "attributes": attributes},
    )


def _malformed_xml_document(site: str, path: str, error: str) -> Document:
    return Document(
        id=document_id(SOURCE, f"{site}/file"),
        source=SOURCE,
        text="",
        url=None,
        meta={"site": site, "file": path, "error": error},
    )


BYTES_PER_RUN = 1 << 30  # of parsed posts held by a site's join before a run is spilled
RUN_HELP = (
    "bytes of parsed posts per sorted run of a site's question-answer join: its memory bound "
    "(the join holds about this much, spilling sorted runs to local disk beyond it); the "
    "output does not depend on it"
)
_BATCH_RECORDS = 1000  # records per output batch: fixed, so the parts do not depend on the bound
# Sections of the join's sort keys: unreadable rows come first, in row order, then the posts
# by question Id; of the leftovers' keys: orphan answers, then other posts, by post Id.
_MALFORMED, _POSTS = 0, 1
_ORPHANS, _OTHERS = 0, 1


def site_records(
    site: str, rows: Iterator[dict[str, str]], selected: bool, bytes_per_run: int = BYTES_PER_RUN
) -> Iterator[tuple[Document, str | None]]:
    """A site's records with their drop reason (None: kept): unreadable rows in row order,
    question documents in question Id order, then orphan answers and other posts, each in post
    Id order. Every row is read (MalformedDump raised) before the first record comes out."""
    with SortedRuns(bytes_per_run) as posts, SortedRuns(bytes_per_run) as leftovers:
        for index, row in enumerate(rows):
            try:
                post = parse_post(row)
            except MalformedRow as exc:
                posts.add((_MALFORMED, index), [index, row, str(exc)])
                continue
            if post.post_type == QUESTION:
                posts.add((_POSTS, post.post_id), dataclasses.asdict(post))
            elif post.post_type == ANSWER:
                posts.add((_POSTS, post.parent_id), dataclasses.asdict(post))  # type: ignore[arg-type]
            else:
                leftovers.add((_OTHERS, post.post_id), dataclasses.asdict(post))
        for (section, _), group in groupby(posts.merged(), key=itemgetter(0)):
            values = [value for _, value in group]
            if section == _MALFORMED:
                yield _malformed_row_document(site, *values[0]), "malformed_row"
            else:
                yield from _question_records(site, [_post(v) for v in values], selected, leftovers)
        for (section, _), value in leftovers.merged():
            reason = "orphan_answer" if section == _ORPHANS else "other_post_type"
            yield _post_document(site, _post(value)), reason


def _question_records(
    site: str, posts: list[Post], selected: bool, leftovers: SortedRuns
) -> Iterator[tuple[Document, str | None]]:
    """One question Id's posts (row order) as its document; answers without their question go
    to the leftovers. Of two questions with one Id, the later row is the question."""
    questions = [post for post in posts if post.post_type == QUESTION]
    answers = [post for post in posts if post.post_type == ANSWER]
    if not questions:
        for orphan in answers:
            leftovers.add((_ORPHANS, orphan.post_id), dataclasses.asdict(orphan))
        return
    ordered = sorted_answers(questions[-1], answers)
    yield question_document(site, questions[-1], ordered), None if selected else "not_in_top_sites"


def _post(value: dict[str, Any]) -> Post:
    return Post(**(value | {"tags": tuple(value["tags"])}))


# --- the stage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CountTask:
    """Prepare's map step: one site file's post count; picklable for process pools."""

    storage: Storage

    def __call__(self, shard: ShardInput) -> tuple[str, int]:
        with self.storage.fs.open_input_file(shard.path) as stream:
            return site_of(shard.path), count_rows(stream)


@dataclass(frozen=True)
class StackExchangeClean(Stage):
    """One site's `Posts.xml` per shard to one document per question (with its answers).

    `prepare` counts the posts of every site file (streaming, no text kept) and records the
    `top_sites` largest; `process` keeps the documents of those sites and drops the others'
    as `not_in_top_sites`, one dropped row per question, so every question can be traced.
    """

    name: ClassVar[str] = "stackexchange"
    version: ClassVar[str] = "2"  # 2: the join in sorted runs; parts in row groups of 1000
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    top_sites: int = TOP_SITES
    bytes_per_run: int = run_setting(BYTES_PER_RUN, help=RUN_HELP)
    workdir: str = state_field()

    def prepare(self, inputs, storage, workdir, executor) -> StackExchangeClean:
        sizes = dict(executor.map_unordered(_CountTask(storage), inputs))
        storage.makedirs(workdir)
        record = {
            "sizes": dict(sorted(sizes.items())),
            "selected": top_sites(sizes, self.top_sites),
        }
        storage.write_bytes(posixpath.join(workdir, _SIZES_FILE), json.dumps(record).encode())
        return dataclasses.replace(self, workdir=workdir)

    def selected_sites(self, storage: Storage) -> set[str]:
        if not self.workdir:
            raise RuntimeError("StackExchangeClean.process needs prepare() (the site ranking)")
        return set(
            json.loads(storage.read_bytes(posixpath.join(self.workdir, _SIZES_FILE)))["selected"]
        )

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        return ShardOutput.concat(self.process_batches(shard, storage))

    def process_batches(self, shard: ShardInput, storage: Storage) -> Iterator[ShardOutput]:
        """The site's records in batches of `_BATCH_RECORDS`: a site's documents are never all
        in memory. A file that is not well-formed fails before the first batch, as one
        `malformed_xml` record."""
        site = site_of(shard.path)
        selected = site in self.selected_sites(storage)
        with storage.fs.open_input_file(shard.path) as stream:
            records = site_records(site, iter_rows(stream), selected, self.bytes_per_run)
            try:
                batch = list(islice(records, _BATCH_RECORDS))
            except MalformedDump as exc:
                file = posixpath.join(shard.name, POSTS_FILE)  # as the root sees it, wherever it is
                batch = [(_malformed_xml_document(site, file, str(exc)), "malformed_xml")]
            while True:  # at least one batch: an empty site still reports its histograms
                yield self._output(site, batch)
                batch = list(islice(records, _BATCH_RECORDS))
                if not batch:
                    return

    def _output(self, site: str, records: list[tuple[Document, str | None]]) -> ShardOutput:
        kept = [doc for doc, reason in records if reason is None]
        dropped = [(doc, reason) for doc, reason in records if reason is not None]
        reasons = [reason for _, reason in dropped]
        # Only question documents have an answer_count: the answers attached to them.
        attached = sum(doc.meta.get("answer_count", 0) for doc, _ in records)
        return ShardOutput(
            n_in=len(records),
            kept=documents_table(kept),
            dropped=drop_rows(documents_table([d for d, _ in dropped]), self.name, reasons),
            histograms={
                "site": Counter({site: len(kept)}),
                "attached_answers": Counter({site: attached}),
            },
        )


def site_shards(storage: Storage, root: str) -> list[ShardInput]:
    """Every `<site>/Posts.xml` under `root`, named by site (every file has the same base
    name), in site order."""
    infos = storage.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    sites = sorted(i.path for i in infos if i.type == pafs.FileType.Directory)
    paths = [posixpath.join(site, POSTS_FILE) for site in sites]
    return [_shard(storage, path) for path in paths if storage.exists(path)]


def _shard(storage: Storage, path: str) -> ShardInput:
    return ShardInput(
        name=site_of(path), path=path, fingerprint=storage.sha256(path), bytes=storage.size(path)
    )


# --- the asset check ---------------------------------------------------------------------------


def verify_stackexchange(table: pa.Table) -> list[str]:
    """Problems of a kept partition: answers not in descending integer score order, or scores
    that are not integers at all (a string sort would have left strings behind)."""
    problems = []
    for doc_id, meta_json in zip(
        table.column("id").to_pylist(), table.column("meta").to_pylist(), strict=True
    ):
        problem = _answer_order_problem(json.loads(meta_json))
        if problem:
            problems.append(f"{doc_id}: {problem}")
    return problems


def _answer_order_problem(meta: dict[str, Any]) -> str | None:
    scores: Sequence[Any] = meta.get("answer_scores", [])
    if any(type(s) is not int for s in scores):
        return f"answer scores are not integers: {scores}"
    if any(a < b for a, b in zip(scores, scores[1:], strict=False)):
        return f"answers not in descending score order: {scores}"
    if len(scores) != meta.get("answer_count"):
        return f"{len(scores)} answer scores for answer_count {meta.get('answer_count')}"
    return None
