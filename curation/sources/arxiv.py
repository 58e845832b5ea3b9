"""`arxiv`: arXiv source archives to documents, one archive (one paper) per shard.

arXiv serves a paper's source as a gzipped tarball or, for single-file submissions, a
gzipped .tex. Archives are untrusted: they are read in memory (nothing is written to disk, so
no member can land outside an extraction directory), and a paper with a member that would
escape one (`..`, an absolute path, a link pointing out) is quarantined whole as
`unsafe_member`: such an archive is hostile or broken, and its other files are not worth the
risk. Size and member-count limits bound memory before anything is decoded.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import re
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from curation.core.documents import (
    DOCUMENT_SCHEMA,
    Document,
    document_id,
    documents_table,
    drop_rows,
)
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage
from curation.sources.latex import (
    DOCUMENTCLASS,
    Expander,
    Inputs,
    LatexError,
    body,
    extract_macros,
    has_comment,
    has_content,
    resolve_inputs,
    strip_comments,
    tidy,
)

SOURCE = "arxiv"
SUFFIXES = (".tar.gz", ".tgz", ".gz")
GZIP_MAGIC = b"\x1f\x8b"
SINGLE_FILE = "main.tex"  # the name a single gzipped .tex gets
LEFTOVERS = {
    "\\input{": "an unresolved \\input",
    "\\newcommand": "a macro definition",
    "\\documentclass": "the preamble",
    "\\begin{thebibliography}": "the bibliography",
}


def paper_id(file_name: str) -> str:
    """arXiv's id from the archive name: `2301.00001.tar.gz` -> `2301.00001`."""
    for suffix in SUFFIXES:
        if file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return file_name


def read_archive(
    raw: bytes, max_total_bytes: int, max_member_bytes: int, max_members: int
) -> dict[str, bytes]:
    """The regular files of a paper archive by normalized path, or `LatexError` naming why
    the archive is refused. Directories and links pointing inside are skipped (nothing is
    extracted, so they are never followed)."""
    if not raw.startswith(GZIP_MAGIC):
        raise LatexError("not_gzip", f"starts with {raw[:8]!r}")
    data = _gunzip(raw, max_total_bytes)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")  # noqa: SIM115 (closed below)
    except tarfile.TarError:
        return {SINGLE_FILE: data}  # a single gzipped file
    with tar:
        return _members(tar, max_member_bytes, max_members)


def _members(tar: tarfile.TarFile, max_member_bytes: int, max_members: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        for n, member in enumerate(tar, 1):
            if n > max_members:
                raise LatexError("too_many_members", f"more than {max_members} members")
            path = _safe_path(member)
            if member.isfile():
                if member.size > max_member_bytes:
                    detail = f"{member.name}: {member.size} bytes > {max_member_bytes}"
                    raise LatexError("member_too_large", detail)
                files[path] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise LatexError("corrupt_tarball", str(exc)) from exc
    return files


def _gunzip(raw: bytes, max_total_bytes: int) -> bytes:
    """Decompress at most one byte past the limit, so a gzip bomb costs `max_total_bytes`."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(max_total_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise LatexError("corrupt_gzip", str(exc)) from exc
    if len(data) > max_total_bytes:
        raise LatexError("archive_too_large", f"more than {max_total_bytes} bytes unpacked")
    return data


def _safe_path(member: tarfile.TarInfo) -> str:
    """The member's path inside the archive; `unsafe_member` if it, or a link's target,
    would leave it."""
    path = _inside(member.name)
    if path is None:
        raise LatexError("unsafe_member", f"path {member.name!r}")
    if member.issym() or member.islnk():
        base = posixpath.dirname(path) if member.issym() else ""
        if (
            member.linkname.startswith("/")
            or _inside(posixpath.join(base, member.linkname)) is None
        ):
            raise LatexError("unsafe_member", f"link {member.name!r} -> {member.linkname!r}")
    elif not (member.isfile() or member.isdir()):
        raise LatexError("unsafe_member", f"special file {member.name!r}")
    return path


def _inside(name: str) -> str | None:
    """`name` normalized, or None when absolute or climbing above the archive root."""
    if name.startswith("/") or re.match(r"[A-Za-z]:[\\/]", name):
        return None
    path = posixpath.normpath(name)
    return None if path == ".." or path.startswith("../") else path


def decode(data: bytes) -> str:
    """UTF-8, or Latin-1 for the older submissions that predate it (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def main_tex(files: dict[str, bytes]) -> str:
    """The file with `\\documentclass` (outside comments): the shallowest, then the first by
    name, so the choice never depends on archive order."""
    candidates = [
        p
        for p, data in files.items()
        if p.lower().endswith(".tex") and DOCUMENTCLASS.search(strip_comments(decode(data)))
    ]
    if not candidates:
        raise LatexError("no_main_tex", f"no .tex with \\documentclass among {len(files)} files")
    return min(candidates, key=lambda p: (p.count("/"), p))


@dataclass(frozen=True)
class ArxivClean(Stage):
    """One arXiv source archive to one cleaned paper, or one dropped row with the reason."""

    name: ClassVar[str] = "arxiv"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    max_archive_bytes: int = 64 << 20  # compressed, checked before reading
    max_total_bytes: int = 128 << 20  # unpacked
    max_member_bytes: int = 16 << 20
    max_members: int = 2000
    max_input_depth: int = 8
    max_macro_depth: int = 32
    max_macro_expansions: int = 100_000

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        meta = {"file": shard.name}
        doc_id = document_id(SOURCE, paper_id(shard.name))
        try:
            text, extra = self._clean(shard, storage)
        except LatexError as drop:
            row = Document(doc_id, SOURCE, "", None, {**meta, "detail": drop.detail})
            dropped = drop_rows(documents_table([row]), self.name, [drop.reason])
            return ShardOutput(1, documents_table([]), dropped, {"dropped": Counter([drop.reason])})
        kept = documents_table([Document(doc_id, SOURCE, text, None, {**meta, **extra})])
        return ShardOutput(1, kept, drop_rows(documents_table([]), self.name, []))

    def _clean(self, shard: ShardInput, storage: Storage) -> tuple[str, dict]:
        if shard.bytes > self.max_archive_bytes:
            raise LatexError("archive_too_large", f"{shard.bytes} bytes compressed")
        with storage.fs.open_input_file(shard.path) as stream:
            raw = stream.read()
        files = read_archive(raw, self.max_total_bytes, self.max_member_bytes, self.max_members)
        main = main_tex(files)
        return self.clean_paper(files, main)

    def clean_paper(self, files: dict[str, bytes], main: str) -> tuple[str, dict]:
        """The text of the paper rooted at `main`, and what was done, for the meta."""
        inputs = Inputs()
        tex = {p: decode(d) for p, d in files.items() if p.lower().endswith(".tex")}
        full = resolve_inputs(main, tex.get, self.max_input_depth, inputs)
        without_definitions, macros = extract_macros(full)
        expander = Expander(macros, self.max_macro_depth, self.max_macro_expansions)
        text = tidy(expander.expand(body(without_definitions)))
        if not has_content(text):
            raise LatexError("empty_after_cleaning", "only headings are left")
        return text, {
            "main_tex": main,
            "macros_expanded": expander.expanded,
            "inputs_resolved": inputs.resolved,
            "inputs_unresolved": inputs.unresolved,
        }


def verify_arxiv(table: pa.Table) -> list[str]:
    """Problems an asset check reports: kept text still holding LaTeX that cleaning should
    have removed. Empty when every document is clean."""
    rows = list(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    problems = [
        _problem(what, [i for i, t in rows if needle in t]) for needle, what in LEFTOVERS.items()
    ]
    problems.append(_problem("a comment", [i for i, t in rows if has_comment(t)]))
    return [p for p in problems if p]


def _problem(what: str, ids: list[str]) -> str:
    return f"{len(ids)} documents still contain {what} (first: {ids[0]})" if ids else ""
