"""`github`: source files of permissively licensed repositories, cleaned as LLaMA did.

Input is a BigQuery-style export: JSONL (optionally gzipped) shards of rows
`{"repo_name", "path", "content", "license", "size"}`, `license` being GitHub's lowercase
SPDX-like key ("mit", "apache-2.0", ...). Each row is dropped for the first rule it fails:

    malformed_row          not JSON, not an object, or repo_name/path/content/license missing
    license                license key outside `licenses` (LLaMA kept Apache, BSD and MIT)
    extension              file extension outside `extensions`
    empty                  nothing but whitespace once the license header is stripped
    max_line_length        a line longer than `max_line_length` characters (minified, data)
    mean_line_length       mean line length above `max_mean_line_length`
    alphanumeric_fraction  alphanumeric characters / all characters below the minimum (binary)
    alpha_per_token        alphabetic characters / whitespace-separated tokens below the minimum
    duplicate_content      the same content was kept earlier (shard order, then row order)

The leading license/copyright comment block is removed before the content rules are measured
and before the dedup digest is taken: a file vendored into two repositories under two
copyright headers is the same code, and the header is boilerplate the model should not learn.
Shebang lines and leading comments that do not mention a license are kept.

Exact dedup is global, so `prepare` evaluates every shard once (in the executor's workers),
stores the evaluated rows under its workdir and hands the content digests of the surviving
rows to the shared first-occurrence pass; `process` then only applies the masks.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import posixpath
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.commoncrawl.exact_dedup import (
    content_digest,
    first_occurrence_pass,
    first_occurrences,
)
from curation.core.documents import (
    DOCUMENT_FIELDS,
    DOCUMENT_SCHEMA,
    document_id,
    drop_rows,
    encode_meta,
)
from curation.core.stage import ShardInput, ShardOutput, Stage, state_field
from curation.core.storage import Storage

# BigQuery-style exports: JSON lines, optionally gzipped (one shard per file).
SUFFIXES = (".jsonl", ".jsonl.gz")

SOURCE = "github"
REQUIRED_FIELDS = ("repo_name", "path", "content", "license")
# GitHub license keys; LLaMA kept "Apache, BSD and MIT licenses".
PERMISSIVE_LICENSES = ("apache-2.0", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "mit")
# Programming languages plus the markup that documents code. Data and configuration formats
# (json, yaml, txt, csv, cfg, lock files) are left out: they teach the model little code.
CODE_EXTENSIONS = (
    *("asm", "bash", "c", "cc", "cmake", "cpp", "cs", "css", "cu", "cxx", "dockerfile", "f90"),
    *("go", "h", "hh", "hpp", "hs", "html", "java", "jl", "js", "jsx", "kt", "lua", "m"),
    *("makefile", "md", "php", "pl", "pm", "ps1", "py", "pyi", "pyx", "r", "rb", "rs", "rst"),
    *("scala", "sh", "sql", "swift", "tex", "ts", "tsx", "vb", "xml", "zsh"),
)
_ROW_FIELDS = [*DOCUMENT_FIELDS, pa.field("reason", pa.string())]
_ROWS_SCHEMA = pa.schema(_ROW_FIELDS)
_MENTIONS_LICENSE = re.compile(r"copyright|licen[cs]e|spdx-license-identifier|©", re.IGNORECASE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


@dataclass(frozen=True)
class CommentSyntax:
    """How a language writes comments: line prefixes and (open, close) block delimiters."""

    lines: tuple[str, ...]
    blocks: tuple[tuple[str, str], ...]


_C_LIKE = CommentSyntax(("//",), (("/*", "*/"),))
_HASH = CommentSyntax(("#",), ())
_PYTHON = CommentSyntax(("#",), (('"""', '"""'), ("'''", "'''")))
_DASH = CommentSyntax(("--",), (("/*", "*/"),))
_MARKUP = CommentSyntax((), (("<!--", "-->"),))
# Unknown extensions: every syntax (a `#include` or `-- x` line is only removed when it is
# part of a paragraph that mentions a license).
_ANY = CommentSyntax(
    ("//", "#", "--"), (("/*", "*/"), ('"""', '"""'), ("'''", "'''"), ("<!--", "-->"))
)
_SYNTAX_FAMILIES: dict[CommentSyntax, tuple[str, ...]] = {
    _C_LIKE: (
        *("c", "cc", "cpp", "cs", "css", "cu", "cxx", "go", "h", "hh", "hpp", "java", "js"),
        *("jsx", "kt", "m", "php", "rs", "scala", "swift", "ts", "tsx"),
    ),
    _HASH: ("bash", "cmake", "dockerfile", "makefile", "pl", "pm", "r", "rb", "sh", "zsh"),
    _PYTHON: ("py", "pyi", "pyx"),
    _DASH: ("hs", "lua", "sql"),
    _MARKUP: ("html", "md", "xml"),
}
COMMENT_SYNTAX: dict[str, CommentSyntax] = {
    ext: syntax for syntax, exts in _SYNTAX_FAMILIES.items() for ext in exts
}


def file_extension(path: str) -> str:
    """Lowercase text after the last dot of the file name; the whole name when it has none,
    so `Makefile` and `Dockerfile` can be whitelisted like extensions."""
    base = posixpath.basename(path)
    stem, dot, ext = base.rpartition(".")
    return (ext if dot and stem else base).lower()


def _block_end(text: str, start: int, syntax: CommentSyntax) -> int | None:
    for opener, closer in syntax.blocks:
        if text.startswith(opener, start):
            end = text.find(closer, start + len(opener))
            return None if end < 0 else end + len(closer)
    return None


def _line_run_end(text: str, start: int, syntax: CommentSyntax) -> int | None:
    """End of the paragraph of line comments at `start` (a blank line ends a paragraph)."""
    end = start
    for line in text[start:].splitlines(keepends=True):
        if not syntax.lines or not line.lstrip().startswith(syntax.lines):
            break
        end += len(line)
    return end if end > start else None


def _leading_comments(text: str, syntax: CommentSyntax) -> Iterator[tuple[int, int]]:
    """(start, end) of each comment unit (a block comment or a paragraph of line comments)
    before the first line of code, whitespace between units excluded."""
    pos = 0
    while True:
        start = len(text) - len(text[pos:].lstrip())
        end = _block_end(text, start, syntax) or _line_run_end(text, start, syntax)
        if end is None:
            return
        yield start, end
        pos = end


def strip_license_header(text: str, extension: str) -> tuple[str, bool]:
    """The text without the leading comment units that mention a copyright or license, and
    whether any was removed. A shebang line and the other leading comments stay in place."""
    shebang = text[: text.find("\n") + 1 or len(text)] if text.startswith("#!") else ""
    body = text[len(shebang) :]
    syntax = COMMENT_SYNTAX.get(extension, _ANY)
    pieces, pos = [], 0
    for start, end in _leading_comments(body, syntax):
        if _MENTIONS_LICENSE.search(body, start, end):
            pieces.append(body[pos:start])
            pos = end
    if not pieces:
        return text, False
    rest = "".join(pieces) + _LEADING_BLANK_LINES.sub("", body[pos:])
    return shebang + _LEADING_BLANK_LINES.sub("", rest), True


@dataclass(frozen=True)
class ContentStats:
    """The measures the content rules read. Lines exclude their line breaks; tokens are the
    maximal runs of non-whitespace characters (`str.split()`)."""

    max_line_length: int
    mean_line_length: float
    alphanumeric_fraction: float
    alpha_per_token: float

    @classmethod
    def of(cls, text: str) -> ContentStats:
        lengths = [len(line) for line in text.splitlines()] or [0]
        n_tokens = len(text.split())
        return cls(
            max_line_length=max(lengths),
            mean_line_length=sum(lengths) / len(lengths),
            alphanumeric_fraction=sum(map(str.isalnum, text)) / max(len(text), 1),
            alpha_per_token=sum(map(str.isalpha, text)) / max(n_tokens, 1),
        )


class MalformedRow(ValueError):
    """A JSONL line that is not an export row."""


def parse_row(line: bytes) -> dict[str, Any]:
    """One export row with its required fields checked; raises MalformedRow otherwise."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedRow(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise MalformedRow(f"not an object: {type(record).__name__}")
    missing = [f for f in REQUIRED_FIELDS if not isinstance(record.get(f), str)]
    if missing:
        raise MalformedRow(f"missing or non-string fields: {', '.join(missing)}")
    return record


def _read_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None, str]]:
    """(line number, line, "") for every non-blank line; (n, None, error) once, last, when the
    stream is cut or corrupt, so a broken shard keeps every row before the break."""
    n = 0
    try:
        for n, line in enumerate(stream, start=1):
            if line.strip():
                yield n, line, ""
    except (EOFError, OSError, zlib.error) as exc:
        yield n + 1, None, f"unreadable input: {type(exc).__name__}: {exc}"


def _open_shard(shard: ShardInput, storage: Storage) -> IO[bytes]:
    """A line-iterable byte stream (pyarrow's streams have no `readline`)."""
    raw = storage.fs.open_input_stream(shard.path, compression=None)
    return gzip.GzipFile(fileobj=raw) if shard.path.endswith(".gz") else io.BufferedReader(raw)


def _malformed(shard: ShardInput, n: int, line: bytes | None, error: str) -> dict[str, Any]:
    return {
        "id": document_id(SOURCE, f"{shard.name}#{n}"),
        "source": SOURCE,
        "text": (line or b"").decode("utf-8", errors="replace"),
        "url": None,
        "meta": encode_meta({"shard": shard.name, "line": n, "error": error}),
        "reason": "malformed_row",
    }


def _rows_path(workdir: str, shard: ShardInput) -> str:
    return posixpath.join(workdir, f"{shard.name}.rows.parquet")


@dataclass(frozen=True)
class GitHubFilter(Stage):
    """License, extension and content filters, header stripping and exact file dedup."""

    name: ClassVar[str] = SOURCE
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    licenses: tuple[str, ...] = PERMISSIVE_LICENSES
    extensions: tuple[str, ...] = CODE_EXTENSIONS
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alphanumeric_fraction: float = 0.25
    min_alpha_per_token: float = 1.5
    workdir: str = state_field()

    def content_reason(self, text: str) -> str | None:
        """The first content rule `text` (header already stripped) fails, or None."""
        if not text.strip():
            return "empty"
        stats = ContentStats.of(text)
        if stats.max_line_length > self.max_line_length:
            return "max_line_length"
        if stats.mean_line_length > self.max_mean_line_length:
            return "mean_line_length"
        if stats.alphanumeric_fraction < self.min_alphanumeric_fraction:
            return "alphanumeric_fraction"
        if stats.alpha_per_token < self.min_alpha_per_token:
            return "alpha_per_token"
        return None

    def evaluate_row(self, record: dict[str, Any]) -> dict[str, Any]:
        """A parsed export row as a document row with its drop reason (None: a candidate)."""
        repo, path, license_key = record["repo_name"], record["path"], record["license"].lower()
        extension = file_extension(path)
        text, stripped = record["content"], False
        reason = None
        if license_key not in self.licenses:
            reason = "license"
        elif extension not in self.extensions:
            reason = "extension"
        else:
            text, stripped = strip_license_header(text, extension)
            reason = self.content_reason(text)
        size = record.get("size")
        meta = {
            "repo_name": repo,
            "path": path,
            "license": license_key,
            "size": size if isinstance(size, int) else len(record["content"].encode()),
            "extension": extension,
            "header_stripped": stripped,
        }
        return {
            "id": document_id(SOURCE, f"{repo}/{path}"),
            "source": SOURCE,
            "text": text,
            "url": f"https://github.com/{repo}/blob/HEAD/{path}",
            "meta": encode_meta(meta),
            "reason": reason,
        }

    def evaluate(self, shard: ShardInput, storage: Storage) -> pa.Table:
        """Every row of the shard, in order, with the reason of its first failed rule."""
        rows = []
        with _open_shard(shard, storage) as stream:
            for n, line, error in _read_lines(stream):
                if line is None:
                    rows.append(_malformed(shard, n, line, error))
                    continue
                try:
                    rows.append(self.evaluate_row(parse_row(line)))
                except MalformedRow as exc:
                    rows.append(_malformed(shard, n, line, str(exc)))
        return pa.Table.from_pylist(rows, schema=_ROWS_SCHEMA)

    def prepare(
        self, inputs: Sequence[ShardInput], storage: Storage, workdir: str, executor: Any
    ) -> GitHubFilter:
        first_occurrence_pass(inputs, storage, workdir, executor, self.shard_keys)
        return dataclasses.replace(self, workdir=workdir)

    def shard_keys(self, shard: ShardInput, storage: Storage, workdir: str) -> np.ndarray:
        """Evaluate the shard once, keep the rows for `process`, key the candidates."""
        table = self.evaluate(shard, storage)
        pq.write_table(table, _rows_path(workdir, shard), filesystem=storage.fs)
        candidates = table.filter(pc.is_null(table.column("reason")))
        digests = [content_digest(t) for t in candidates.column("text").to_pylist()]
        return np.array(digests, dtype="S20")

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = pq.read_table(_rows_path(self.workdir, shard), filesystem=storage.fs)
        reasons = _with_duplicates(
            table.column("reason").to_pylist(), first_occurrences(storage, self.workdir, shard)
        )
        keep = pa.array([r is None for r in reasons], pa.bool_())
        documents = table.drop_columns(["reason"])
        kept, dropped = documents.filter(keep), documents.filter(pc.invert(keep))
        drop_reasons = [r for r in reasons if r is not None]
        return ShardOutput(
            n_in=table.num_rows,
            kept=kept,
            dropped=drop_rows(dropped, self.name, drop_reasons),
            histograms=_histograms(kept, drop_reasons),
        )


def _with_duplicates(reasons: list[str | None], first: np.ndarray) -> list[str | None]:
    """The rule reasons with `duplicate_content` for every candidate (reason None) that is not
    the first occurrence of its content; `first` holds one flag per candidate, in order."""
    candidates = [i for i, r in enumerate(reasons) if r is None]
    if len(candidates) != len(first):
        raise RuntimeError("the shard changed since the first-occurrence pass")
    out = list(reasons)
    for i, is_first in zip(candidates, first.tolist(), strict=True):
        if not is_first:
            out[i] = "duplicate_content"
    return out


def _histograms(kept: pa.Table, drop_reasons: list[str]) -> dict[str, Counter[str]]:
    metas = [json.loads(m) for m in kept.column("meta").to_pylist()]
    return {
        "kept_extension": Counter(m["extension"] for m in metas),
        "kept_license": Counter(m["license"] for m in metas),
        "header_stripped": Counter(str(m["header_stripped"]).lower() for m in metas),
        "dropped_reason": Counter(drop_reasons),
    }


def verify_github(table: pa.Table, stage: GitHubFilter | None = None) -> list[str]:
    """Problems in kept GitHub documents, for an asset check: a license or extension outside
    the whitelists, a license header left at the top, content kept twice. Empty when fine."""
    stage = stage or GitHubFilter()
    problems: list[str] = []
    seen: dict[bytes, str] = {}
    for row in table.select(["id", "text", "meta"]).to_pylist():
        meta, doc = json.loads(row["meta"]), row["id"]
        if meta["license"] not in stage.licenses:
            problems.append(f"{doc}: license {meta['license']!r} is not whitelisted")
        if meta["extension"] not in stage.extensions:
            problems.append(f"{doc}: extension {meta['extension']!r} is not whitelisted")
        if strip_license_header(row["text"], meta["extension"])[1]:
            problems.append(f"{doc}: still starts with a license header")
        digest = content_digest(row["text"])
        if digest in seen:
            problems.append(f"{doc}: same content as {seen[digest]}")
        seen.setdefault(digest, doc)
    return problems
