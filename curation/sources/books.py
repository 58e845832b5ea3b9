"""`books`: Project Gutenberg and Books3, cleaned, then deduplicated at the book level.

The paper removes "books with more than 90% content overlap". Here *content overlap* of two
books A and B is the containment of their word 5-gram sets (`dedup.minhash.shingle_hashes`):

    overlap(A, B) = |S(A) ∩ S(B)| / min(|S(A)|, |S(B)|)

Containment rather than Jaccard, so that an edition with a new preface, an extra appendix or a
few corrections still counts as the same book when its length differs from the other's; the
smaller book's text is then (almost) all inside the larger one, which is kept.

One shard per book file: a book (0.1-10 MB) is the unit Gutenberg and Books3 ship, and one
shard each lets the runner resume and spread the map book by book. Shard names are
`<collection>/<file>`, the collection being the file's directory (`gutenberg/` or `books3/`).

The dedup is the stage's `prepare` pass, global over all books. The map computes, per book, its
sorted 64-bit shingle hashes and a MinHash signature (datasketch, seeded) into two files under
the work directory. The candidate pairs, those sharing an LSH band, are found in hash partitions
of the band keys on disk, one per `bytes_per_partition` of books (book_candidates.py), so memory
does not grow with the number of books. Every candidate is checked EXACTLY with the overlap
above (so an LSH false positive never drops a book), two books' shingles in memory at a time;
the confirmed pairs are joined into clusters by union-find and each cluster keeps the longest
text (then the smallest id). Clusters are transitive: A~B and B~C put A, B and C in one
cluster even when A and C overlap less. Each dropped book gets a small `<id>.duplicate_of` file
holding the kept id, which `process` reads. LSH ranks by Jaccard similarity, so `lsh_threshold`
sits well below `overlap_threshold`: two books whose sizes differ a lot can reach 90%
containment at a low Jaccard, and those are the pairs a high LSH threshold would miss.
"""

from __future__ import annotations

import dataclasses
import functools
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from curation.core.arrays import load_array, save_array
from curation.core.documents import (
    DOCUMENT_SCHEMA,
    Document,
    document_id,
    documents_table,
    drop_rows,
)
from curation.core.inputs import MissingInput, file_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, run_setting, state_field
from curation.core.storage import Storage
from curation.dedup.minhash import shingle_hashes
from curation.sources.book_candidates import (
    BYTES_PER_PARTITION,
    PARTITION_HELP,
    BandPartitions,
    candidate_search,
    signature_pairs,
)

SOURCE = "books"
COLLECTIONS = ("gutenberg", "books3")
_MINHASH_SCHEME = "affine64"  # the shingle hashes are 64-bit already
_BATCH = 16384  # shingles per MinHash update: bounds the (batch x num_perm) temporary

_MARKER = r"^\*{3}\s*{kind} OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK\b(.*?)\s*(?:\*{3})?\s*$"
_START = re.compile(_MARKER.replace("{kind}", "START"), re.IGNORECASE | re.MULTILINE)
_END = re.compile(_MARKER.replace("{kind}", "END"), re.IGNORECASE | re.MULTILINE)
_ANY_MARKER = re.compile(
    r"^\*{3}\s*(?:START|END) OF (?:THE|THIS) PROJECT GUTENBERG", re.IGNORECASE | re.MULTILINE
)
_HEADER_FIELD = re.compile(r"^(Title|Language):[ \t]*(\S.*?)\s*$", re.MULTILINE)
# Gutenberg writes languages out in English; the other stages use ISO 639-1 codes.
LANGUAGE_CODES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "finnish": "fi",
}


@dataclass(frozen=True)
class CleanBook:
    """A book's text without the Gutenberg wrapper, and what that wrapper said."""

    text: str
    title: str | None
    language: str | None
    boilerplate_removed: bool


def strip_gutenberg(text: str) -> CleanBook:
    """Cut the Gutenberg header (through the START line) and footer (from the END line on,
    license included), reading Title and Language from the header.

    A book missing either marker keeps that side whole and has `boilerplate_removed` False:
    guessing where an unmarked header ends would cut real text, so it is flagged instead.
    """
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    header = text[: start.start()] if start else ""
    fields = {key.lower(): value for key, value in _HEADER_FIELD.findall(header)}
    title = fields.get("title") or (start.group(1).strip() if start else "") or None
    language = fields.get("language")
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    return CleanBook(
        text=body.strip(),
        title=title,
        language=LANGUAGE_CODES.get(language.lower(), language) if language else None,
        boilerplate_removed=bool(start and end),
    )


def decode_book(raw: bytes) -> str | None:
    """UTF-8 text with a BOM and CRLF line ends removed; None when the bytes are not UTF-8
    (a mis-encoded book is quarantined rather than guessed at)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def gutenberg_markers(text: str) -> list[str]:
    """The Gutenberg START/END marker lines left in a text (none after cleaning)."""
    return [m.group(0) for m in _ANY_MARKER.finditer(text)]


def content_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / min(|A|, |B|) for two sorted distinct shingle-hash arrays (0 if one is empty)."""
    if not len(a) or not len(b):
        return 0.0
    return len(np.intersect1d(a, b, assume_unique=True)) / min(len(a), len(b))


def minhash_signature(shingles: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """The MinHash signature of a shingle set, updated in batches to bound memory."""
    minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme=_MINHASH_SCHEME)
    for start in range(0, len(shingles), _BATCH):
        minhash.update_batch(shingles[start : start + _BATCH].tolist())
    return minhash.hashvalues


def candidate_pairs(
    signatures: Mapping[str, np.ndarray], threshold: float, num_perm: int
) -> list[tuple[str, str]]:
    """Pairs (sorted, each once) that share an LSH band: the only pairs worth an exact check.
    In memory, for a few books; `prepare` runs the same search partitioned on disk."""
    keys = list(signatures)
    values = np.stack([signatures[key] for key in keys]) if keys else np.empty((0, num_perm))
    pairs = signature_pairs(values.astype(np.uint64), threshold)
    return sorted((min(keys[a], keys[b]), max(keys[a], keys[b])) for a, b in pairs.tolist())


def overlapping_pairs(
    pairs: Iterable[tuple[str, str]], shingles: Callable[[str], np.ndarray], threshold: float
) -> list[tuple[str, str]]:
    """The candidate pairs whose exact content overlap exceeds `threshold`."""
    return [(a, b) for a, b in pairs if content_overlap(shingles(a), shingles(b)) > threshold]


def duplicate_of(chars: Mapping[str, int], pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find over the overlapping pairs: for every book of a cluster but the kept one,
    the kept id. The kept book is the longest, then the smallest id, so the choice depends
    on neither shard order nor worker count."""
    parent = {key: key for key in chars}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for a, b in pairs:
        parent[root(a)] = root(b)
    clusters: dict[str, list[str]] = {}
    for key in sorted(chars):
        clusters.setdefault(root(key), []).append(key)
    decisions = {}
    for members in clusters.values():
        kept = min(members, key=lambda key: (-chars[key], key))
        decisions.update({key: kept for key in members if key != kept})
    return decisions


def book_shards(storage: Storage, directory: str) -> list[ShardInput]:
    """Every `*.txt` under `directory/gutenberg` and `directory/books3`, one shard each.

    Ids hash the file stem, so a stem found in both collections is refused here rather than
    silently merging two books under one id."""
    shards = [
        dataclasses.replace(
            file_shard(storage, path), name=f"{collection}/{posixpath.basename(path)}"
        )
        for collection in COLLECTIONS
        for path in storage.list_files(posixpath.join(directory, collection), ".txt")
    ]
    if not shards:
        raise MissingInput(f"no book files (*.txt) under {directory}/{{{','.join(COLLECTIONS)}}}")
    stems = Counter(_stem(s) for s in shards)
    if clashes := sorted(stem for stem, count in stems.items() if count > 1):
        raise ValueError(f"book files with the same name in two collections: {clashes}")
    return shards


def _stem(shard: ShardInput) -> str:
    return posixpath.splitext(posixpath.basename(shard.path))[0]


def _collection(shard: ShardInput) -> str:
    return posixpath.basename(posixpath.dirname(shard.path))


def _shingles_path(workdir: str, book_id: str) -> str:
    return posixpath.join(workdir, f"{book_id}.shingles.npy")


def _signature_path(workdir: str, book_id: str) -> str:
    return posixpath.join(workdir, f"{book_id}.minhash.npy")


def _decision_path(workdir: str, book_id: str) -> str:
    return posixpath.join(workdir, f"{book_id}.duplicate_of")


def _book_id(shard: ShardInput) -> str:
    return document_id(SOURCE, _stem(shard))


def _load_shingles(storage: Storage, workdir: str, book_id: str) -> np.ndarray:
    return load_array(storage, _shingles_path(workdir, book_id))


def _load_signature(storage: Storage, workdir: str, shard: ShardInput) -> np.ndarray:
    return load_array(storage, _signature_path(workdir, _book_id(shard)))


@dataclass(frozen=True)
class BooksClean(Stage):
    """Strip Gutenberg boilerplate, quarantine empty or undecodable books, and keep one book
    per cluster of books with more than `overlap_threshold` content overlap."""

    name: ClassVar[str] = "books"
    version: ClassVar[str] = "2"  # 2: shingles from curation.dedup.minhash
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    shingle_words: int = 5
    num_perm: int = 128
    seed: int = 1
    lsh_threshold: float = 0.5
    overlap_threshold: float = 0.9
    bytes_per_partition: int = run_setting(BYTES_PER_PARTITION, help=PARTITION_HELP)
    workdir: str = state_field()

    def read(self, shard: ShardInput, storage: Storage) -> tuple[Document, CleanBook | None]:
        """The book's document (cleaned text) and its cleaning; None for undecodable bytes,
        whose document then holds the text with replacement characters for inspection."""
        raw = storage.read_bytes(shard.path)
        meta = {"file": shard.name, "collection": _collection(shard)}
        book_id = _book_id(shard)
        text = decode_book(raw)
        if text is None:
            return Document(book_id, SOURCE, raw.decode("utf-8", "replace"), None, meta), None
        book = strip_gutenberg(text)
        meta |= {
            "title": book.title,
            "language": book.language,
            "gutenberg_boilerplate_removed": book.boilerplate_removed,
        }
        return Document(book_id, SOURCE, book.text, None, meta), book

    def prepare(self, inputs, storage, workdir, executor) -> BooksClean:
        storage.makedirs(workdir)
        chars = np.full(len(inputs), -1, np.int64)  # -1: no text, not deduplicated
        for index, length in executor.map_unordered(
            _Fingerprint(self, storage, workdir), list(enumerate(inputs))
        ):
            chars[index] = -1 if length is None else length
        found = self.candidates(inputs, chars >= 0, storage, workdir, executor)
        ids = {index: _book_id(inputs[index]) for index in np.unique(found).tolist()}
        pairs = [(ids[a], ids[b]) for a, b in found.tolist()]
        # The pairs come sorted by their first book: two books' shingles serve them in turn.
        shingles = functools.lru_cache(maxsize=2)(
            functools.partial(_load_shingles, storage, workdir)
        )
        confirmed = overlapping_pairs(pairs, shingles, self.overlap_threshold)
        lengths = {book_id: int(chars[index]) for index, book_id in ids.items()}
        for dropped, kept in duplicate_of(lengths, confirmed).items():
            storage.write_bytes(_decision_path(workdir, dropped), kept.encode())
        return dataclasses.replace(self, workdir=workdir)

    def candidates(
        self,
        inputs: Sequence[ShardInput],
        with_text: np.ndarray,
        storage: Storage,
        workdir: str,
        executor: Any,
    ) -> np.ndarray:
        """The candidate pairs (input indices) among the books `with_text`."""
        sizes = np.array([shard.bytes for shard in inputs], np.int64) * with_text
        signature_of = functools.partial(_load_signature, storage, workdir)
        lsh = (self.lsh_threshold, self.num_perm)
        plan = BandPartitions.plan(
            storage, workdir, signature_of, int(sizes.sum()), self.bytes_per_partition, lsh
        )
        return candidate_search(plan, inputs, sizes, executor)

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        document, book = self.read(shard, storage)
        reason, meta = None, document.meta
        if book is None:
            reason = "invalid_encoding"
        elif not book.text:
            reason = "empty_book"
        elif storage.exists(decision := _decision_path(self.workdir, document.id)):
            reason = "near_duplicate_book"
            meta = meta | {"duplicate_of": storage.read_bytes(decision).decode()}
        table = documents_table([dataclasses.replace(document, meta=meta)])
        kept = table if reason is None else table.slice(0, 0)
        dropped = table.slice(0, 0) if reason is None else table
        return ShardOutput(
            n_in=1,
            kept=kept,
            dropped=drop_rows(dropped, self.name, [reason] * dropped.num_rows),
            histograms={"kept_collection": Counter([document.meta["collection"]] * kept.num_rows)},
        )


@dataclass(frozen=True)
class _Fingerprint:
    """Map step of `prepare`: one book's shingles and signature to files; picklable."""

    stage: BooksClean
    storage: Storage
    workdir: str

    def __call__(self, item: tuple[int, ShardInput]) -> tuple[int, int | None]:
        """The book's input index and characters; None for a book that takes no part in the
        dedup because it will be quarantined anyway (undecodable or empty)."""
        index, shard = item
        document, book = self.stage.read(shard, self.storage)
        if book is None or not book.text:
            return index, None
        path = _signature_path(self.workdir, document.id)
        if not self.storage.exists(path):  # a resumed run keeps finished books
            shingles = shingle_hashes(book.text, self.stage.shingle_words)
            save_array(self.storage, _shingles_path(self.workdir, document.id), shingles)
            signature = minhash_signature(shingles, self.stage.num_perm, self.stage.seed)
            save_array(self.storage, path, signature)
        return index, len(book.text)


def verify_books(table: pa.Table, stage: BooksClean | None = None) -> list[str]:
    """Problems in the kept books, for an asset check: Gutenberg marker lines left in a text,
    and kept pairs over the overlap threshold (found as the stage finds them: LSH, then the
    exact overlap). An empty list when the partition is fine."""
    stage = stage or BooksClean()
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    problems = [
        f"{book_id}: Gutenberg marker left: {marker!r}"
        for book_id, text in zip(ids, texts, strict=True)
        for marker in gutenberg_markers(text)
    ]
    shingles = {
        key: shingle_hashes(text, stage.shingle_words) for key, text in zip(ids, texts, strict=True)
    }
    signatures = {
        key: minhash_signature(s, stage.num_perm, stage.seed)
        for key, s in shingles.items()
        if len(s)
    }
    pairs = candidate_pairs(signatures, stage.lsh_threshold, stage.num_perm)
    for a, b in overlapping_pairs(pairs, shingles.__getitem__, stage.overlap_threshold):
        overlap = content_overlap(shingles[a], shingles[b])
        problems.append(f"{a} and {b} both kept with {overlap:.0%} content overlap")
    return problems
