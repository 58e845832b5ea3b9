"""Copies of the sample's GitHub, Books and arXiv dumps for the scale world.

Each copy is a new file in the source's native format, named so the stage gives it new ids:

- GitHub: shard ``github-NNNNN.jsonl.gz`` numbered past the sample's; each row's ``repo_name``
  gets the copy's tag (the stage's id is ``repo/path``); a near row's ``content`` is edited and
  its ``size`` follows. Rows with NUL bytes (the planted binaries) are never edited.
- Books: Gutenberg ``pgN.txt`` becomes ``pg{k*100000+N}.txt``, books3 ``name.txt``
  ``name-copy-000k.txt`` (the stage's id is the file stem); the text is the original's (the
  header's eBook number too: the planted book without START/END lines keeps its header as
  text, and an exact copy must stay exact). A file that is not UTF-8 is copied as it is.
- arXiv: ``YYMM.NNNNN`` becomes ``YYMM.{k*100+N:05d}`` (the stage's id is the file name). A
  near paper's main ``.tex`` is edited and the archive repacked as the sample packs it; the
  planted hostile and not-gzip archives are copied byte for byte.

Edits go only where the stage keeps text (found with the stage's own functions: the license
header it strips, Gutenberg's wrapper, a paper's front and back matter are never edited), so a
near copy's document really differs from its original's. A copy's duplicate group is its
original's (for books, the original's edition cluster).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from curation.sources.books import strip_gutenberg
from curation.sources.github import file_extension, strip_license_header
from curation.sources.latex import LatexError, body
from sample_world.arxiv import tar_gz
from sample_world.scale_edit import Copies, apply_text, copy_tag, edit_kind, numbered_name

MAX_ARXIV_NUMBER = 100  # sample arXiv numbers are below it: copy k adds k * 100
_GUTENBERG = re.compile(r"^pg(\d+)$")
_ARXIV_NAME = re.compile(r"^(\d{4})\.(\d{5})(\..+)$")


def _truth(source: str, item: str, copy: int, original: str, group: str, edits: list) -> dict:
    return {
        "source": source,
        "item": item,
        "copy": copy,
        "original": original,
        "group": group,
        "edit": edit_kind(edits, copy),
    }


# --- GitHub ---------------------------------------------------------------------------------


def _github_row(row: dict, copies: Copies, copy: int) -> tuple[dict, list]:
    if copy == 0:
        return row, []
    item = f"{row['repo_name']}/{row['path']}"
    content = row["content"]
    kept, _ = strip_license_header(content, file_extension(row["path"]))
    edits = (
        [] if "\x00" in content else copies.edits("github", item, copy, kept, also_in=(content,))
    )
    out = {**row, "repo_name": f"{row['repo_name']}-{copy_tag(copy)}"}
    if edits:
        out["content"] = apply_text(content, edits)
        out["size"] = len(out["content"].encode("utf-8"))
    return out, edits


def copy_github(copies: Copies, sample: Path, out: Path, shard: str, n: int, ks: range) -> list:
    """Copies ``ks`` of one export shard (of ``n``); their ground-truth rows."""
    rows = [
        json.loads(line) for line in gzip.decompress((sample / shard).read_bytes()).splitlines()
    ]
    truth = []
    for k in ks:
        lines = []
        for row in rows:
            original = f"{row['repo_name']}/{row['path']}"
            new, edits = _github_row(row, copies, k)
            lines.append(json.dumps(new, ensure_ascii=False) + "\n")
            item = f"{new['repo_name']}/{new['path']}"
            truth.append(_truth("github", item, k, original, original, edits))
        target = out / numbered_name(shard, k, n)
        if k == 0:
            shutil.copyfile(sample / shard, target)
        else:
            target.write_bytes(gzip.compress("".join(lines).encode(), mtime=0))
    return truth


# --- Books ----------------------------------------------------------------------------------


def _stem(path: str) -> str:
    """The id the books stage hashes: the file's stem."""
    return path.rpartition("/")[2].removesuffix(".txt")


def book_name(path: str, copy: int) -> str:
    """``gutenberg/pg19631.txt`` -> ``gutenberg/pg319631.txt`` for copy 3; books3 names get
    the copy's tag."""
    if copy == 0:
        return path
    stem = _stem(path)
    m = _GUTENBERG.match(stem)
    stem = f"pg{copy * 100_000 + int(m[1])}" if m else f"{stem}-{copy_tag(copy)}"
    return f"{path.rpartition('/')[0]}/{stem}.txt"


def copy_book(copies: Copies, sample: Path, out: Path, path: str, group: str, ks: range) -> list:
    """Copies ``ks`` of one book (``path`` under ``books/``); their ground-truth rows."""
    data = (sample / path).read_bytes()
    truth = []
    for k in ks:
        target = out / book_name(path, k)
        edits: list = []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)  # the planted invalid encoding, copied as it is
        else:
            kept = strip_gutenberg(text).text
            edits = copies.edits("books", _stem(path), k, kept, also_in=(text,))
            target.write_bytes(apply_text(text, edits).encode("utf-8"))
        truth.append(_truth("books", _stem(book_name(path, k)), k, _stem(path), group, edits))
    return truth


# --- arXiv ----------------------------------------------------------------------------------


def paper_name(name: str, copy: int) -> str:
    """``2301.00017.gz`` -> ``2301.00317.gz`` for copy 3."""
    month, number, suffix = _ARXIV_NAME.match(name).groups()
    if int(number) >= MAX_ARXIV_NUMBER:
        raise ValueError(f"sample arXiv number {number} is not below {MAX_ARXIV_NUMBER}")
    return f"{month}.{copy * MAX_ARXIV_NUMBER + int(number):05d}{suffix}"


def _paper_id(name: str) -> str:
    month, number, _ = _ARXIV_NAME.match(name).groups()
    return f"{month}.{number}"


def _tar_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _edited_paper(data: bytes, row: dict, copies: Copies, copy: int) -> tuple[bytes, list]:
    """The archive with its main ``.tex`` edited; the sample's bytes when nothing is."""
    single = row["kind"] == "single_tex"
    files = {row["main_tex"]: gzip.decompress(data)} if single else _tar_files(data)
    tex = files[row["main_tex"]].decode("utf-8")
    try:
        kept = body(tex)
    except LatexError:
        return data, []
    edits = copies.edits("arxiv", _paper_id(row["file"]), copy, kept, also_in=(tex,))
    if not edits:
        return data, edits
    files[row["main_tex"]] = apply_text(tex, edits).encode("utf-8")
    return (gzip.compress(files[row["main_tex"]], mtime=0) if single else tar_gz(files)), edits


def copy_paper(copies: Copies, sample: Path, out: Path, row: dict, ks: range) -> list:
    """Copies ``ks`` of one archive (``row``: its ``arxiv.jsonl`` entry); their truth rows.
    Only papers are edited: the planted hostile and not-gzip archives stay as they are."""
    data = (sample / row["file"]).read_bytes()
    original = _paper_id(row["file"])
    truth = []
    for k in ks:
        editable = k and row["kind"] in ("paper", "single_tex")
        data_k, edits = _edited_paper(data, row, copies, k) if editable else (data, [])
        name = paper_name(row["file"], k)
        (out / name).write_bytes(data_k)
        truth.append(_truth("arxiv", _paper_id(name), k, original, original, edits))
    return truth


def renamed_rows(
    rows: list[dict], key: str, rename: Callable[[str, int], str], copy: int
) -> Iterator[dict]:
    """A ground-truth file's rows for copy ``copy``: the same facts under the copy's names."""
    for row in rows:
        yield {**row, key: rename(row[key], copy)}
