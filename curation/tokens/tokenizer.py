"""The LLaMA tokenizer: SentencePiece BPE trained on a seeded sample of the mixture, and its checks.

Settings are the paper's (and the released LLaMA `tokenizer.model`'s trainer spec): BPE, digits
split into single pieces, byte fallback (no text is ever `<unk>`), identity normalization, no
whitespace folding, `<unk>`=0 `<s>`=1 `</s>`=2, no pad piece, whitespace-only pieces allowed
(code indentation), character coverage 0.99995, vocabulary 32000 by default.

Layout of a tokenizer directory (written to a staging sibling and renamed into place; a rerun
with the same inputs and config reuses it):

    <output>/tokenizer.model       the SentencePiece model
    <output>/trainer_params.json   every option given to the trainer, and the sample's statistics
    <output>/fertility.json        tokens per word and per UTF-8 byte on held-out documents, per
                                   source and per language
    <output>/_manifest.json        fingerprint, config, inputs, model sha256 and vocabulary size

The sample (`sample_documents`, `sample_bytes`) is drawn from train-split rows only, weighted by
`repeats` (Efraimidis-Spirakis: key = -ln(u) / repeats, smallest keys win), so the tokenizer sees
the mixture's training distribution; `u` is a keyed hash of the document id and the seed, so the
sample depends on the seed and the documents, not on part boundaries, reading order or workers.
A fixed fraction of train documents (`heldout_fraction`, by a second hash) never enters the
sample; the fertility report encodes up to `heldout_documents_per_group` of them per (source,
language).

Training sentences are lines (`\\n` splits; a newline is never inside a piece, it encodes as the
byte piece <0x0A>, as in LLaMA). SentencePiece silently skips sentences over
`max_sentence_length` bytes, so longer lines are cut into chunks under it, at the last space
when there is one, and counted (`chunked_lines`, `chunks` in trainer_params.json): nothing is
dropped.

Determinism: BPE training is sequential; the same sentences give byte-identical models. The
`num_threads` option is recorded in the model's trainer spec, so models trained with different
thread counts have the same pieces and scores but different bytes (and sha256): it is part of the
config, default 1 (BPE in SentencePiece 0.2 gains nothing from threads on our measurements).
`hard_vocab_limit` stays True: with BPE, SentencePiece 0.2 fails with OUT_OF_RANGE when it is
False, and a corpus too small for the vocabulary fails with a message naming the largest size it
supports. The smallest vocabulary is 259 (3 specials + 256 byte pieces) plus the characters the
coverage requires; on a small sample lower `character_coverage` (rare characters become byte
pieces, losslessly) or raise `vocab_size`.

Long because training, the seeded sample it trains on, fertility and the checks all read the
same sample and model; the sample's scan over the mixture is most of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sentencepiece as spm

from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.inputs import contract_parts
from curation.core.manifest import fingerprint, read_manifest_text
from curation.core.runner import materialize
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.tokens.inputs import StreamBatch, read_stream

VERSION = "1"
MODEL_NAME = "tokenizer.model"
PARAMS_NAME = "trainer_params.json"
FERTILITY_NAME = "fertility.json"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
# Three special pieces and 256 byte pieces are always in the vocabulary.
MIN_VOCAB_SIZE = 3 + 256
# SentencePiece's meta symbol for a space: a literal U+2581 in text decodes as a space.
WHITESPACE_SYMBOL = "\u2581"
_SAMPLE_COLUMNS = ["id", "source", "text", "meta", "language"]
_DIGITS = "0123456789"


class EmptyCorpus(ValueError):
    """No train-split document to sample from."""


class TokenizerTrainingError(RuntimeError):
    """SentencePiece refused the sample or the options; the message is SentencePiece's."""


@dataclass(frozen=True)
class TokenizerConfig:
    """Everything that determines the model bytes (the fingerprint is over these fields)."""

    vocab_size: int = 32000
    seed: int = 0
    # Training sample budget; 0 means no limit on that measure.
    sample_documents: int = 0
    sample_bytes: int = 1 << 30
    heldout_fraction: float = 0.01
    heldout_documents_per_group: int = 200
    character_coverage: float = 0.99995
    max_sentence_length: int = 4192
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.vocab_size <= MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size {self.vocab_size} must exceed {MIN_VOCAB_SIZE} "
                "(3 special pieces and 256 byte-fallback pieces)"
            )
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.max_sentence_length < 4:
            raise ValueError("max_sentence_length must hold one UTF-8 character (4 bytes)")


def trainer_options(config: TokenizerConfig) -> dict[str, object]:
    """The SentencePiece trainer options: the paper's settings plus the config's sizes."""
    return {
        "model_type": "bpe",
        "vocab_size": config.vocab_size,
        "split_digits": True,
        "byte_fallback": True,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "allow_whitespace_only_pieces": True,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "pad_id": -1,
        "character_coverage": config.character_coverage,
        "hard_vocab_limit": True,
        "max_sentence_length": config.max_sentence_length,
        # The sample is already drawn (seeded, weighted): SentencePiece must use all of it,
        # in the given order.
        "input_sentence_size": 0,
        "shuffle_input_sentence": False,
        "num_threads": config.num_threads,
        "minloglevel": 2,
    }


# ---------------------------------------------------------------------------------------------
# The seeded sample


@dataclass(frozen=True)
class HeldoutDocument:
    text: str
    source: str
    language: str | None


@dataclass
class Sample:
    """The training texts in key order, the held-out documents, and what was read."""

    texts: list[str]
    heldout: list[HeldoutDocument]
    stats: dict[str, object]


Group = tuple[str, str | None]  # (source, language)


@dataclass
class _PartKeys:
    """One part's candidates after local pruning: a superset of the part's share of the global
    pick, because the global order restricted to one part is the part's own order."""

    index: int
    keys: np.ndarray
    rows: np.ndarray
    nbytes: np.ndarray
    sources: list[str]
    heldout: dict[Group, list[tuple[float, int]]]
    counts: Counter[str]


def document_hashes(ids: Sequence[str], seed: int) -> np.ndarray:
    """Two independent uniforms in (0, 1) per id, from a keyed BLAKE2b: column 0 decides
    held-out membership, column 1 is the sampling key."""
    key = str(seed).encode()
    digests = b"".join(hashlib.blake2b(i.encode(), digest_size=16, key=key).digest() for i in ids)
    words = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _take_count(nbytes_sorted: np.ndarray, max_docs: int, max_bytes: int) -> int:
    """How many of the key-sorted candidates fit: at most `max_docs`, and documents until the
    byte budget is reached (the one crossing it included)."""
    n = len(nbytes_sorted)
    if max_docs:
        n = min(n, max_docs)
    if max_bytes:
        before = np.cumsum(nbytes_sorted) - nbytes_sorted
        n = min(n, int(np.searchsorted(before, max_bytes, side="left")))
    return n


def _language(language: str | None, meta: str | None) -> str | None:
    """The document's language: the `language` column (CommonCrawl, Wikipedia), else a
    `language` field of `meta` (Books), else none (code, LaTeX: grouped by source only)."""
    if language:
        return language
    try:
        value = json.loads(meta or "{}").get("language")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class _Candidates:
    """What pass 1 collects from one part, batch by batch."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.nbytes: list[np.ndarray] = []
        self.sources: list[str] = []
        self.heldout: dict[Group, list[tuple[float, int]]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        self.offset = 0

    def add(self, batch: StreamBatch, config: TokenizerConfig) -> None:
        table = batch.table
        train = ~batch.validation & (batch.repeats > 0)
        self.counts.update(
            rows=table.num_rows, validation=int(batch.validation.sum()), train=int(train.sum())
        )
        u = document_hashes(table.column("id").to_pylist(), config.seed)
        held = train & (u[:, 0] < config.heldout_fraction)
        sampled = train & ~held
        weights = np.where(sampled, batch.repeats, 1).astype(np.float64)
        self.keys.append((-np.log(u[:, 1]) / weights)[sampled])
        self.rows.append(np.flatnonzero(sampled) + self.offset)
        self.nbytes.append(pc.binary_length(table.column("text")).to_numpy()[sampled])
        sources = table.column("source").to_pylist()
        self.sources.extend(s for s, keep in zip(sources, sampled, strict=True) if keep)
        languages = (
            table.column("language") if "language" in table.column_names else [None] * len(u)
        )
        for row in np.flatnonzero(held).tolist():
            language = _language(_py(languages[row]), table.column("meta")[row].as_py())
            self.heldout[(sources[row], language)].append((float(u[row, 1]), row + self.offset))
        self.offset += table.num_rows

    def pruned(self, index: int, config: TokenizerConfig) -> _PartKeys:
        keys, rows, nbytes = (
            np.concatenate(a) if a else np.empty(0) for a in (self.keys, self.rows, self.nbytes)
        )
        order = np.lexsort((rows, keys))
        order = order[: _take_count(nbytes[order], config.sample_documents, config.sample_bytes)]
        k = config.heldout_documents_per_group
        return _PartKeys(
            index=index,
            keys=keys[order],
            rows=rows[order].astype(np.int64),
            nbytes=nbytes[order].astype(np.int64),
            sources=[self.sources[i] for i in order],
            heldout={group: sorted(pairs)[:k] for group, pairs in self.heldout.items()},
            counts=self.counts,
        )


def _py(value: object) -> object:
    return value.as_py() if hasattr(value, "as_py") else value


@dataclass(frozen=True)
class _ScanPart:
    """Pass 1 over one part: sampling keys of its train rows, pruned to the budget."""

    storage: Storage
    config: TokenizerConfig

    def __call__(self, item: tuple[int, ShardInput]) -> _PartKeys:
        index, shard = item
        candidates = _Candidates()
        for batch in read_stream(self.storage, shard, _SAMPLE_COLUMNS):
            candidates.add(batch, self.config)
        return candidates.pruned(index, self.config)


@dataclass(frozen=True)
class _ReadRows:
    """Pass 2 over one part: the texts of the chosen rows, in the order asked."""

    storage: Storage

    def __call__(self, item: tuple[int, ShardInput, np.ndarray]) -> tuple[int, list[str]]:
        index, shard, rows = item
        with self.storage.fs.open_input_file(shard.path) as f:
            texts = pq.read_table(f, columns=["text"]).column("text")
        return index, texts.take(rows).to_pylist()


def draw_sample(
    inputs: Sequence[ShardInput],
    storage: Storage,
    config: TokenizerConfig,
    executor: ShardExecutor,
) -> Sample:
    """The training texts (smallest weighted keys within the budget) and held-out documents."""
    parts = sorted(
        executor.map_unordered(_ScanPart(storage, config), enumerate(inputs)), key=lambda p: p.index
    )
    picked = _training_pick(parts, config)
    if not picked:
        raise EmptyCorpus("no train-split document with repeats >= 1 to train the tokenizer on")
    heldout = _heldout_pick(parts, config.heldout_documents_per_group)
    wanted: dict[int, list[int]] = defaultdict(list)
    for part, row, _, _ in picked:
        wanted[part].append(row)
    for _, part, row in heldout:
        wanted[part].append(row)
    texts = _read_texts(inputs, storage, executor, wanted)

    counts = sum((p.counts for p in parts), Counter())
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for _, _, nbytes, source in picked:
        by_source[source].update(documents=1, bytes=nbytes)
    return Sample(
        texts=[texts[part, row] for part, row, _, _ in picked],
        heldout=[HeldoutDocument(texts[part, row], *group) for group, part, row in heldout],
        stats={
            "rows_read": counts["rows"],
            "train_rows": counts["train"],
            "validation_rows": counts["validation"],
            "documents": len(picked),
            "bytes": sum(nbytes for _, _, nbytes, _ in picked),
            "heldout_documents": len(heldout),
            "by_source": {s: dict(c) for s, c in sorted(by_source.items())},
        },
    )


def _training_pick(
    parts: list[_PartKeys], config: TokenizerConfig
) -> list[tuple[int, int, int, str]]:
    """(part, row, bytes, source) of the sampled documents, in key order (ties by position)."""
    keys = np.concatenate([p.keys for p in parts])
    part_of = np.concatenate([np.full(len(p.keys), p.index) for p in parts])
    rows = np.concatenate([p.rows for p in parts])
    nbytes = np.concatenate([p.nbytes for p in parts])
    sources = [s for p in parts for s in p.sources]
    order = np.lexsort((rows, part_of, keys))
    order = order[: _take_count(nbytes[order], config.sample_documents, config.sample_bytes)]
    return [(int(part_of[i]), int(rows[i]), int(nbytes[i]), sources[i]) for i in order]


def _heldout_pick(parts: list[_PartKeys], per_group: int) -> list[tuple[Group, int, int]]:
    """Per (source, language), the `per_group` held-out candidates with the smallest keys."""
    groups: dict[Group, list[tuple[float, int, int]]] = defaultdict(list)
    for p in parts:
        for group, pairs in p.heldout.items():
            groups[group].extend((key, p.index, row) for key, row in pairs)
    return [
        (group, part, row)
        for group in sorted(groups, key=lambda g: (g[0], g[1] or ""))
        for _, part, row in sorted(groups[group])[:per_group]
    ]


def _read_texts(
    inputs: Sequence[ShardInput],
    storage: Storage,
    executor: ShardExecutor,
    wanted: dict[int, list[int]],
) -> dict[tuple[int, int], str]:
    tasks = [(part, inputs[part], np.array(rows, dtype=np.int64)) for part, rows in wanted.items()]
    texts: dict[tuple[int, int], str] = {}
    for part, part_texts in executor.map_unordered(_ReadRows(storage), tasks):
        texts.update(zip(((part, r) for r in wanted[part]), part_texts, strict=True))
    return texts


# ---------------------------------------------------------------------------------------------
# Training


def split_long(line: str, max_bytes: int) -> list[str]:
    """`line` as chunks of at most `max_bytes` UTF-8 bytes, cut before the last space of each
    window (so a chunk starts with its space, as a word after a space does) or, when a window
    has none, at the last character boundary. Concatenated, the chunks are `line`."""
    data = line.encode()
    if len(data) <= max_bytes:
        return [line]
    chunks, start = [], 0
    while len(data) - start > max_bytes:
        end = start + max_bytes
        cut = data.rfind(b" ", start + 1, end + 1)
        if cut <= start:
            cut = end
            while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: back to its first byte
                cut -= 1
        chunks.append(data[start:cut].decode())
        start = cut
    chunks.append(data[start:].decode())
    return chunks


def training_sentences(texts: Iterable[str], max_bytes: int) -> tuple[list[str], dict[str, int]]:
    """Non-empty lines of the texts, long ones chunked; and how many were chunked into how
    many pieces (nothing is skipped)."""
    sentences: list[str] = []
    chunked = chunks = 0
    for text in texts:
        for line in text.split("\n"):
            if not line:
                continue
            parts = split_long(line, max_bytes)
            if len(parts) > 1:
                chunked += 1
                chunks += len(parts)
            sentences.extend(parts)
    return sentences, {"sentences": len(sentences), "chunked_lines": chunked, "chunks": chunks}


def train_model(sentences: Sequence[str], config: TokenizerConfig) -> bytes:
    """The serialized model; SentencePiece's refusals become `TokenizerTrainingError`."""
    spm.set_random_generator_seed(config.seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, **trainer_options(config)
        )
    except RuntimeError as exc:
        raise TokenizerTrainingError(
            f"SentencePiece could not train a {config.vocab_size}-piece BPE model on "
            f"{len(sentences)} sentences: {exc}"
        ) from exc
    return model.getvalue()


# ---------------------------------------------------------------------------------------------
# Fertility


def load(model: str | bytes | spm.SentencePieceProcessor) -> spm.SentencePieceProcessor:
    """A processor from a model path, model bytes, or a processor (returned as is)."""
    if isinstance(model, spm.SentencePieceProcessor):
        return model
    if isinstance(model, bytes):
        return spm.SentencePieceProcessor(model_proto=model)
    return spm.SentencePieceProcessor(model_file=model)


def fertility(
    model: str | bytes | spm.SentencePieceProcessor,
    documents: Sequence[HeldoutDocument],
    num_threads: int = 1,
) -> dict[str, object]:
    """Tokens per word (whitespace-separated; meaningless for CJK, compare tokens per byte
    there), tokens per UTF-8 byte, the share of byte-fallback tokens, and documents that do not
    round-trip exactly, per source, per language and in total."""
    sp = load(model)
    texts = [d.text for d in documents]
    encoded = sp.encode(texts, num_threads=num_threads)
    decoded = sp.decode(encoded, num_threads=num_threads)
    is_byte = np.array([sp.is_byte(i) for i in range(sp.get_piece_size())])
    groups: dict[str, dict[str, Counter[str]]] = {"source": {}, "language": {}}
    total: Counter[str] = Counter()
    for doc, ids, back in zip(documents, encoded, decoded, strict=True):
        counts = Counter(
            documents=1,
            words=len(doc.text.split()),
            bytes=len(doc.text.encode()),
            tokens=len(ids),
            byte_tokens=int(is_byte[ids].sum()) if ids else 0,
            round_trip_failures=int(back != doc.text),
        )
        total.update(counts)
        groups["source"].setdefault(doc.source, Counter()).update(counts)
        if doc.language:
            groups["language"].setdefault(doc.language, Counter()).update(counts)
    return {
        "total": _ratios(total),
        "by_source": {k: _ratios(v) for k, v in sorted(groups["source"].items())},
        "by_language": {k: _ratios(v) for k, v in sorted(groups["language"].items())},
    }


def _ratios(counts: Counter[str]) -> dict[str, float | int]:
    def ratio(a: str, b: str) -> float:
        return round(counts[a] / counts[b], 4) if counts[b] else math.nan

    return {
        **{k: counts[k] for k in ("documents", "words", "bytes", "tokens", "round_trip_failures")},
        "tokens_per_word": ratio("tokens", "words"),
        "tokens_per_byte": ratio("tokens", "bytes"),
        "byte_fallback_share": ratio("byte_tokens", "tokens"),
    }


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass(frozen=True)
class TrainedTokenizer:
    """A finished tokenizer directory and what it holds."""

    directory: str
    manifest: dict
    params: dict
    fertility: dict

    @property
    def model_path(self) -> str:
        return posixpath.join(self.directory, MODEL_NAME)

    @property
    def sha256(self) -> str:
        return self.manifest["model"]["sha256"]

    @property
    def vocab_size(self) -> int:
        return self.manifest["model"]["vocab_size"]


def tokenizer_fingerprint(config: TokenizerConfig, inputs: Sequence[ShardInput]) -> str:
    return fingerprint(
        {
            "stage": "tokenizer",
            "version": VERSION,
            "config": asdict(config),
            "inputs": [[i.name, i.fingerprint] for i in inputs],
        }
    )


def read_tokenizer(storage: Storage, directory: str) -> TrainedTokenizer | None:
    """The finished tokenizer at `directory`, or None when there is none."""
    manifest = read_manifest_text(storage, directory)
    if manifest is None:
        return None

    def read(name: str) -> dict:
        return json.loads(storage.read_bytes(posixpath.join(directory, name)))

    return TrainedTokenizer(
        directory, json.loads(manifest), read(PARAMS_NAME), read(FERTILITY_NAME)
    )


def train_tokenizer(
    inputs: Sequence[ShardInput | str],
    output: str,
    storage: Storage,
    config: TokenizerConfig | None = None,
    executor: ShardExecutor | None = None,
    force: bool = False,
) -> TrainedTokenizer:
    """Sample, train, measure, and publish `output`; reuse it when its fingerprint is current."""
    config = config or TokenizerConfig()
    executor = executor or LocalExecutor(1)
    shards = contract_parts(storage, inputs)
    run_fp = tokenizer_fingerprint(config, shards)

    def build(staging: str) -> tuple[TrainedTokenizer, str]:
        sample = draw_sample(shards, storage, config, executor)
        sentences, sentence_stats = training_sentences(sample.texts, config.max_sentence_length)
        model = train_model(sentences, config)
        sp = load(model)
        params = {"trainer": trainer_options(config), "sample": {**sample.stats, **sentence_stats}}
        report = fertility(sp, sample.heldout, num_threads=max(1, config.num_threads))
        manifest = {
            "stage": "tokenizer",
            "version": VERSION,
            "fingerprint": run_fp,
            "config": asdict(config),
            "inputs": [{"name": i.name, "fingerprint": i.fingerprint} for i in shards],
            "model": {
                "file": MODEL_NAME,
                "sha256": hashlib.sha256(model).hexdigest(),
                "vocab_size": sp.get_piece_size(),
                "unk_id": sp.unk_id(),
                "bos_id": sp.bos_id(),
                "eos_id": sp.eos_id(),
            },
            "sample": params["sample"],
        }
        storage.write_bytes(posixpath.join(staging, MODEL_NAME), model)
        for name, body in ((PARAMS_NAME, params), (FERTILITY_NAME, report)):
            storage.write_bytes(posixpath.join(staging, name), _json_text(body).encode())
        return TrainedTokenizer(output, manifest, params, report), _json_text(manifest)

    return materialize(
        storage, output, run_fp, build, lambda: read_tokenizer(storage, output), force=force
    )


def _json_text(body: object) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Checks: each returns (ok, details) so the asset layer can turn it into an asset check.

# Text a tokenizer of the recipe must reproduce exactly. Lone surrogates are not here because
# they cannot reach the tokenizer: Arrow strings are valid UTF-8 (pyarrow refuses to build a
# string array from a str holding one, and decodes only valid UTF-8 into str), so a document
# from a contract part never holds one. U+2581 is not here either: SentencePiece uses it as its
# space symbol and decodes it as a space (`WHITESPACE_SYMBOL`, a known limitation of the
# recipe's tokenizer that the shard writer counts as `lossy_documents`).
ADVERSARIAL_TEXTS: dict[str, str] = {
    "emoji_zwj": "family 👨\u200d👩\u200d👧\u200d👦, flag 🏳️\u200d🌈, thumbs 👍🏽, keycap 1️⃣",
    "cjk": "中文分词测试。日本語のテキスト、カタカナ。한국어 텍스트입니다.",
    "combining_marks": "e\u0301 a\u0308\u0308 Z\u0335\u0321\u0347 \u0915\u094d\u0937",
    "rtl": "مرحبا بالعالم \u05e2\u05d1\u05e8\u05d9\u05ea \u202eevil\u202c \u200fmark\u200e",
    "control_characters": "bell\x07 escape\x1b[31m del\x7f nel\x85 vt\x0b ff\x0c fs\x1c",
    "nul": "nul\x00in\x00the\x00middle\x00",
    "whitespace_runs": "a     b\t\t\tc\n\n\n  d\u00a0\u00a0e\u3000\u3000f\u2003g   ",
    "leading_spaces": "   three leading spaces",
    "only_spaces": "     ",
    "leading_newline": "\nstarts with a newline",
    "tabs": "\tdef f():\n\t\treturn 1\n",
    "crlf": "windows\r\nline\r\nendings\r",
    "line_separators": "u2028\u2028u2029\u2029",
    "special_piece_text": "<s> </s> <unk> <pad> <0x41>",
    "digits": "12345 3.14159 1,000,000 ٠١٢٣ ①②",
    "bom_and_noncharacters": "\ufeffbom \uffff \U0010ffff \ufffd \ue000",
    "long_line": "word " * 20000 + "x" * 50000,
    "empty": "",
}


def digits_split(model: str | bytes | spm.SentencePieceProcessor) -> tuple[bool, dict]:
    """Every digit 0-9 is its own piece, no piece joins a digit to anything (byte pieces such
    as <0x30> aside), and 12345 encodes to exactly five digit pieces (the dummy-prefix space
    piece aside)."""
    sp = load(model)
    missing = [d for d in _DIGITS if sp.piece_to_id(d) == sp.unk_id()]
    pieces = sp.encode("12345", out_type=str)
    digit_pieces = [p for p in pieces if p.strip(WHITESPACE_SYMBOL)]
    pieces_text = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_byte(i)]
    merged = [p for p in pieces_text if len(p) > 1 and any(c in _DIGITS for c in p)]
    ok = not missing and digit_pieces == list("12345") and not merged
    return ok, {
        "missing_digit_pieces": missing,
        "pieces_12345": pieces,
        "pieces_merging_a_digit": merged[:20],
    }


def round_trips(
    model: str | bytes | spm.SentencePieceProcessor,
    texts: Mapping[str, str] | Sequence[str] = ADVERSARIAL_TEXTS,
) -> tuple[bool, dict]:
    """`decode(encode(s)) == s` for every text, and no `<unk>` in any encoding."""
    sp = load(model)
    named = texts if isinstance(texts, Mapping) else {str(i): t for i, t in enumerate(texts)}
    failures = {}
    for name, text in named.items():
        ids = sp.encode(text)
        back = sp.decode(ids)
        if back != text or sp.unk_id() in ids:
            at = len(os.path.commonprefix([text, back]))
            failures[name] = {
                "first_difference": at,
                "expected": text[at : at + 20],
                "got": back[at : at + 20],
                "unk_tokens": ids.count(sp.unk_id()),
            }
    return not failures, {"texts": len(named), "failures": failures}


def special_ids(model: str | bytes | spm.SentencePieceProcessor) -> tuple[bool, dict]:
    """`<unk>`=0, `<s>`=1, `</s>`=2 and no pad piece, as the trainer and loader assume."""
    sp = load(model)
    found = {"unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id()}
    expected = {"unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID, "pad": -1}
    return found == expected, {"found": found, "expected": expected}
