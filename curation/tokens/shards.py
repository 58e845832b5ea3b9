"""`tokenized_shards`: the mixture as fixed-size binary token shards, train and validation.

Layout of an output directory (written to a staging sibling and renamed into place):

    <output>/tokenizer.model                   the model the tokens were made with (a copy)
    <output>/train/shard-NNNNN.bin             raw little-endian tokens, `shard_tokens` each
                                               (the last shard of a split may be shorter)
    <output>/train/shard-NNNNN.idx.npy         int64: the split-global exclusive end offsets of
                                               the documents whose `</s>` lies in this shard
    <output>/validation/...                    the same for validation rows
    <output>/_manifest.json                    counts per split, source, pass and shard, the
                                               sha256 of every file, tokenizer and input
                                               fingerprints, dtype, the framing (bos and eos
                                               ids), shard size (`TokenShardsManifest`,
                                               curation/tokens/shards_manifest.py)

The stream. A split is one token stream cut into shards: every document is `<s> ids </s>`
(bos id 1, eos id 2 of the tokenizer), LLaMA's framing, and the one every reader of a model
uses: the held-out evaluation, the lm-eval model, generation and the Hugging Face export
(`add_bos_token`) all start a text with `<s>`. A model trained on this stream has seen `<s>`
at the start of every document, so a prompt at inference looks like what it learned from;
a stream without `<s>` would leave the first input of every prompt a token it never saw.
In training, the `<s>` that follows a `</s>` is also a target: a forced prediction the model
learns within a few steps, one position per document. Held-out loss and bits per byte
(training/evaluation/heldout.py) do not count `<s>` targets: bits per byte measures the text, and
`<s>` carries no information about it; each document's `</s>` is counted (where a text ends
is part of predicting it).
Documents may span shards: shards are fixed-size slices of the stream, so a global offset
maps to (shard, position) by one division, and the loader reads across a boundary as if the
split were one array. The dtype is the smallest unsigned integer that holds the vocabulary
(uint16 for 32000).

Which rows go where (see curation/tokens/inputs.py for the columns): validation rows once, in
input order, to `validation/`; train rows as epoch passes: pass 0 is every train row with
repeats >= 1 in input order, pass 1 every row with repeats >= 2, and so on, so a document
never directly follows its own copy. Train rows with repeats 0 and rows with empty text are
not written and are counted (`counts.excluded`), so `in == validation + train + excluded`.
Documents containing U+2581 (SentencePiece's space symbol, decoded as a space) are written and
counted as `lossy_documents`.

Parallelism and determinism: each input part is encoded by one task of the shard executor
into a work file (tokens, lengths, roles) in the staging directory; one sequential pass then
cuts the final shards from the work files in input order. Shard bytes therefore do not depend
on the executor, the worker count or `encode_threads` (none of which are in the fingerprint).
A killed run resumes with the parts already encoded; a rerun with the same inputs, tokenizer
bytes, shard size and plan fingerprint reuses the output.

Long because the shard writer, its plan, its resumable parts and the checks that read the
shards back share one on-disk layout, described once here.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

import numpy as np
import pyarrow.compute as pc
import sentencepiece as spm

from curation.core.arrays import load_array, save_array
from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.inputs import contract_parts
from curation.core.manifest import fingerprint
from curation.core.runner import materialize
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.tokens.inputs import (
    DEFAULT_BATCH_ROWS,
    TRAIN,
    VALIDATION,
    StreamBatch,
    read_stream,
)
from curation.tokens.shards_manifest import (
    Excluded,
    InputPart,
    ShardCounts,
    ShardFile,
    TokenCount,
    TokenFormat,
    TokenizerRecord,
    TokenShardsManifest,
    TokenSplit,
    read_shards_manifest,
)
from curation.tokens.tokenizer import MODEL_NAME, WHITESPACE_SYMBOL

VERSION = "2"  # 2: documents framed <s> ids </s> (1: ids </s>)
SPLITS = (TRAIN, VALIDATION)
BIN_SUFFIX = ".bin"
INDEX_SUFFIX = ".idx.npy"
_WORK_DIR = "_work"
# Per-part counts in the work records, summed into the manifest.
_COUNTED = ("rows", "validation", "train", "empty_text", "repeats_zero", "lossy_documents")


@dataclass(frozen=True)
class TokenShardsConfig:
    """`shard_tokens` shapes the output (fingerprinted); the others only the speed."""

    shard_tokens: int = 1 << 27  # 256 MiB per uint16 shard
    encode_threads: int = 1  # SentencePiece threads inside each executor task
    batch_rows: int = DEFAULT_BATCH_ROWS

    def __post_init__(self) -> None:
        if self.shard_tokens < 1:
            raise ValueError(f"shard_tokens must be positive, got {self.shard_tokens}")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned dtype holding ids 0 .. vocab_size - 1."""
    for dtype in ("<u1", "<u2", "<u4"):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {vocab_size} does not fit 32-bit token ids")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


# ---------------------------------------------------------------------------------------------
# Encoding: one executor task per input part


class _PartTokens:
    """What encoding one part collects, batch by batch: the written rows' tokens and roles."""

    def __init__(self, dtype: np.dtype):
        self.dtypes = {
            "tokens": dtype,
            "lengths": np.int64,
            "validation": np.bool_,
            "repeats": np.int64,
            "source": np.int32,
        }
        self.arrays: dict[str, list[np.ndarray]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        self.sources: dict[str, int] = {}

    def add(self, batch: StreamBatch, sp: spm.SentencePieceProcessor, threads: int) -> None:
        text = batch.table.column("text")
        nonempty = pc.fill_null(pc.binary_length(text), 0).to_numpy() > 0
        written = nonempty & (batch.validation | (batch.repeats > 0))
        self.counts.update(
            rows=len(written),
            empty_text=int((~nonempty).sum()),
            repeats_zero=int((nonempty & ~batch.validation & (batch.repeats == 0)).sum()),
            validation=int((written & batch.validation).sum()),
            train=int((written & ~batch.validation).sum()),
        )
        texts = text.filter(written).to_pylist()
        self.counts["lossy_documents"] += sum(WHITESPACE_SYMBOL in t for t in texts)
        tokens, lengths = frame_documents(
            sp.encode(texts, num_threads=threads), sp.bos_id(), sp.eos_id(), self.dtypes["tokens"]
        )
        names = batch.table.column("source").filter(written).to_pylist()
        codes = [self.sources.setdefault(s, len(self.sources)) for s in names]
        self.arrays["tokens"].append(tokens)
        self.arrays["lengths"].append(lengths)
        self.arrays["validation"].append(batch.validation[written])
        self.arrays["repeats"].append(batch.repeats[written])
        self.arrays["source"].append(np.array(codes, dtype=np.int32))

    def payload(self) -> dict[str, np.ndarray]:
        return {
            key: np.concatenate(self.arrays[key]) if self.arrays[key] else np.empty(0, dtype)
            for key, dtype in self.dtypes.items()
        }

    def record(self, index: int, shard: ShardInput, payload: dict[str, np.ndarray]) -> dict:
        train_repeats = payload["repeats"][~payload["validation"]]
        return {
            "index": index,
            "input": shard.name,
            "input_fingerprint": shard.fingerprint,
            **{k: self.counts[k] for k in _COUNTED},
            "max_repeats": int(train_repeats.max()) if len(train_repeats) else 0,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class _EncodePart:
    """Encodes the written rows of one part into `_work/part-NNNNN.bin` (raw tokens) and
    `.npz` (per-document arrays), then writes its JSON record (the commit marker resume looks
    for); picklable for process pools."""

    storage: Storage
    work: str
    model: bytes
    config: TokenShardsConfig

    def __call__(self, item: tuple[int, ShardInput]) -> dict:
        index, shard = item
        sp = _processor(self.model)
        part = _PartTokens(token_dtype(sp.get_piece_size()))
        for batch in read_stream(self.storage, shard, ["source", "text"], self.config.batch_rows):
            part.add(batch, sp, self.config.encode_threads)
        payload = part.payload()
        name = posixpath.join(self.work, _work_name(index))
        self.storage.write_bytes(f"{name}{BIN_SUFFIX}", payload["tokens"].tobytes())
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **{k: v for k, v in payload.items() if k != "tokens"})
        self.storage.write_bytes(f"{name}.npz", buffer.getvalue())
        record = part.record(index, shard, payload)
        self.storage.write_bytes(f"{name}.json", json.dumps(record).encode())
        return record


@lru_cache(maxsize=2)
def _processor(model: bytes) -> spm.SentencePieceProcessor:
    """One loaded model per process, not one per part (a 32k model takes ~7 ms to load)."""
    return spm.SentencePieceProcessor(model_proto=model)


def frame_documents(
    ids: list[list[int]], bos_id: int, eos_id: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The documents as one array, each framed `<s> ids </s>`, and each one's framed length."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 2
    ends = np.cumsum(lengths)
    starts = ends - lengths
    tokens = np.empty(int(ends[-1]) if len(ends) else 0, dtype=dtype)
    text = np.ones(len(tokens), dtype=bool)
    text[starts] = text[ends - 1] = False
    tokens[starts], tokens[ends - 1] = bos_id, eos_id
    tokens[text] = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(text.sum()))
    return tokens, lengths


def _work_name(index: int) -> str:
    return f"part-{index:05d}"


def _load_work(
    storage: Storage, staging: str, index: int, dtype: np.dtype
) -> dict[str, np.ndarray]:
    name = posixpath.join(staging, _WORK_DIR, _work_name(index))
    with np.load(io.BytesIO(storage.read_bytes(f"{name}.npz")), allow_pickle=False) as docs:
        work = {key: docs[key] for key in docs.files}
    work["tokens"] = np.frombuffer(storage.read_bytes(f"{name}{BIN_SUFFIX}"), dtype)
    return work


# ---------------------------------------------------------------------------------------------
# Assembly: the shards, cut sequentially from the work files


class _SplitWriter:
    """Appends documents to one split's stream and writes a shard each `shard_tokens`."""

    def __init__(self, storage: Storage, directory: str, shard_tokens: int, dtype: np.dtype):
        self.storage, self.directory = storage, directory
        self.buffer = np.empty(shard_tokens, dtype=dtype)
        self.fill = 0
        self.start = 0  # split-global offset of the current shard's first token
        self.pending: list[np.ndarray] = []  # document ends not yet in a written shard
        self.shards: list[ShardFile] = []
        storage.makedirs(directory)

    def append(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        self.pending.append(self.start + self.fill + np.cumsum(lengths))
        pos = 0
        while pos < len(tokens):
            take = min(len(tokens) - pos, len(self.buffer) - self.fill)
            self.buffer[self.fill : self.fill + take] = tokens[pos : pos + take]
            self.fill += take
            pos += take
            if self.fill == len(self.buffer):
                self._flush()

    def close(self) -> list[ShardFile]:
        if self.fill:
            self._flush()
        return self.shards

    def _flush(self) -> None:
        end = self.start + self.fill
        ends = np.concatenate(self.pending) if self.pending else np.empty(0, np.int64)
        self.pending = [ends[ends > end]]
        ends = ends[ends <= end].astype(np.int64)
        name = shard_name(len(self.shards))
        data = self.buffer[: self.fill].tobytes()
        index_path = posixpath.join(self.directory, name + INDEX_SUFFIX)
        self.storage.write_bytes(posixpath.join(self.directory, name + BIN_SUFFIX), data)
        save_array(self.storage, index_path, ends)
        self.shards.append(
            ShardFile(
                name=name,
                tokens=self.fill,
                documents=len(ends),
                sha256=hashlib.sha256(data).hexdigest(),
                index_sha256=self.storage.sha256(index_path),
            )
        )
        self.start, self.fill = end, 0


class _SplitStats:
    """Documents and tokens written to one split, per source and per pass."""

    def __init__(self) -> None:
        self.sources: dict[str, Counter[str]] = defaultdict(Counter)
        self.passes: list[Counter[str]] = []

    def add(self, names: list[str], codes: np.ndarray, lengths: np.ndarray, pass_: int) -> None:
        while len(self.passes) <= pass_:
            self.passes.append(Counter())
        self.passes[pass_].update(documents=len(lengths), tokens=int(lengths.sum()))
        docs = np.bincount(codes, minlength=len(names))
        tokens = np.bincount(codes, weights=lengths, minlength=len(names))
        for code, name in enumerate(names):
            if docs[code]:
                self.sources[name].update(documents=int(docs[code]), tokens=int(tokens[code]))

    def summary(self, shards: list[ShardFile]) -> TokenSplit:
        return TokenSplit(
            documents=sum(s.documents for s in shards),
            tokens=sum(s.tokens for s in shards),
            passes=tuple(TokenCount(p["documents"], p["tokens"]) for p in self.passes),
            sources={
                name: TokenCount(c["documents"], c["tokens"])
                for name, c in sorted(self.sources.items())
            },
            shards=tuple(shards),
        )


def _selected_tokens(work: dict[str, np.ndarray], docs: np.ndarray) -> np.ndarray:
    """The tokens of the selected documents (`docs`: a mask over the part's documents)."""
    if docs.all():
        return work["tokens"]
    return work["tokens"][np.repeat(docs, work["lengths"])]


def _assemble(
    storage: Storage,
    staging: str,
    records: list[dict],
    shard_tokens: int,
    dtype: np.dtype,
) -> dict[str, TokenSplit]:
    """Cut both splits from the work files: validation and pass 0 in one read of every part,
    then one read per further pass."""
    writers = {
        s: _SplitWriter(storage, posixpath.join(staging, s), shard_tokens, dtype) for s in SPLITS
    }
    stats = {s: _SplitStats() for s in SPLITS}
    passes = max((r["max_repeats"] for r in records), default=0)
    for pass_ in range(max(passes, 1)):
        for record in records:
            if pass_ >= max(record["max_repeats"], 1):
                continue
            work = _load_work(storage, staging, record["index"], dtype)
            selections = {TRAIN: ~work["validation"] & (work["repeats"] > pass_)}
            if pass_ == 0:
                selections[VALIDATION] = work["validation"]
            for split, docs in selections.items():
                lengths = work["lengths"][docs]
                writers[split].append(_selected_tokens(work, docs), lengths)
                stats[split].add(record["sources"], work["source"][docs], lengths, pass_)
    return {s: stats[s].summary(writers[s].close()) for s in SPLITS}


# ---------------------------------------------------------------------------------------------
# The stage


def shards_fingerprint(
    inputs: Sequence[ShardInput], tokenizer_sha256: str, config: TokenShardsConfig, plan: str
) -> str:
    return fingerprint(
        {
            "stage": "tokenized_shards",
            "version": VERSION,
            "shard_tokens": config.shard_tokens,
            "tokenizer_sha256": tokenizer_sha256,
            "plan_fingerprint": plan,
            "inputs": [[i.name, i.fingerprint] for i in inputs],
        }
    )


def write_token_shards(
    inputs: Sequence[ShardInput | str],
    tokenizer_model: str,
    output: str,
    storage: Storage,
    executor: ShardExecutor | None = None,
    config: TokenShardsConfig | None = None,
    plan_fingerprint: str = "",
    force: bool = False,
) -> TokenShardsManifest:
    """Materialize `output` (see the module docstring) and return its manifest; reuse it when
    its fingerprint is current. `plan_fingerprint` is passed through into the fingerprint and
    the manifest (the `tokenized_shards` asset passes the mixture's)."""
    config = config or TokenShardsConfig()
    executor = executor or LocalExecutor(1)
    shards = contract_parts(storage, inputs)
    model = storage.read_bytes(tokenizer_model)
    model_sha256 = hashlib.sha256(model).hexdigest()
    run_fp = shards_fingerprint(shards, model_sha256, config, plan_fingerprint)

    def build(staging: str) -> tuple[TokenShardsManifest, str]:
        work = posixpath.join(staging, _WORK_DIR)
        records = _encoded(storage, work)
        todo = [(i, shard) for i, shard in enumerate(shards) if i not in records]
        for record in executor.map_unordered(_EncodePart(storage, work, model, config), todo):
            records[record["index"]] = record
        ordered = [records[i] for i in range(len(shards))]
        sp = spm.SentencePieceProcessor(model_proto=model)
        dtype = token_dtype(sp.get_piece_size())
        splits = _assemble(storage, staging, ordered, config.shard_tokens, dtype)
        storage.write_bytes(posixpath.join(staging, MODEL_NAME), model)
        manifest = TokenShardsManifest(
            stage="tokenized_shards",
            version=VERSION,
            fingerprint=run_fp,
            plan_fingerprint=plan_fingerprint,
            inputs=tuple(InputPart(i.name, i.fingerprint) for i in shards),
            tokenizer=TokenizerRecord(
                file=MODEL_NAME,
                sha256=model_sha256,
                vocab_size=sp.get_piece_size(),
                eos_id=sp.eos_id(),
                bos_id=sp.bos_id(),
            ),
            format=TokenFormat(
                dtype=dtype.name,
                byte_order="little",
                shard_tokens=config.shard_tokens,
                document="<s> ids </s>",
                bos_id=sp.bos_id(),
                eos_id=sp.eos_id(),
                documents_span_shards=True,
            ),
            counts=_counts(ordered, splits),
            splits=splits,
            output_fingerprint=fingerprint(
                [[s, shard.sha256] for s in SPLITS for shard in splits[s].shards]
            ),
        )
        return manifest, manifest.to_json()

    return materialize(
        storage,
        output,
        run_fp,
        build,
        lambda: read_shards_manifest(storage, output),
        force=force,
        resume=True,
        scratch=(_WORK_DIR,),
    )


def _encoded(storage: Storage, work: str) -> dict[int, dict]:
    """The parts a previous run with the same fingerprint finished encoding (none in a fresh
    staging directory)."""
    storage.makedirs(work)
    records = [json.loads(storage.read_bytes(p)) for p in storage.list_files(work, ".json")]
    return {r["index"]: r for r in records}


def _counts(records: list[dict], splits: dict[str, TokenSplit]) -> ShardCounts:
    """Rows in, where each went, and the documents written (train copies included)."""
    total: Counter[str] = Counter()
    for r in records:
        total.update({k: r[k] for k in _COUNTED})
    return ShardCounts(
        n_in=total["rows"],
        validation=total["validation"],
        train=total["train"],
        excluded=Excluded(empty_text=total["empty_text"], repeats_zero=total["repeats_zero"]),
        written={s: splits[s].documents for s in SPLITS},
        lossy_documents=total["lossy_documents"],
    )


# ---------------------------------------------------------------------------------------------
# Reading back and checks (each check returns (ok, details) for an asset check)


def iter_documents(storage: Storage, output: str, split: str) -> Iterator[np.ndarray]:
    """Every document of a split in stream order, as its token ids without `<s>` and `</s>`."""
    manifest = read_shards_manifest(storage, output)
    dtype = manifest.format.numpy_dtype
    carry = np.empty(0, dtype)
    start = 0  # split-global offset of carry[0]
    for shard in manifest.splits[split].shards:
        base = posixpath.join(output, split, shard.name)
        tokens = np.concatenate(
            [carry, np.frombuffer(storage.read_bytes(base + BIN_SUFFIX), dtype)]
        )
        ends = load_array(storage, base + INDEX_SUFFIX) - start
        begin = 0
        for end in ends.tolist():
            yield tokens[begin + 1 : end - 1]
            begin = end
        carry, start = tokens[begin:], start + begin


def decode_documents(storage: Storage, output: str, split: str) -> Iterator[str]:
    """Every document of a split as text, decoded with the tokenizer copy in `output`."""
    sp = spm.SentencePieceProcessor(
        model_proto=storage.read_bytes(posixpath.join(output, MODEL_NAME))
    )
    for ids in iter_documents(storage, output, split):
        yield sp.decode(ids.tolist())


def shard_counts_conserve(manifest: TokenShardsManifest) -> tuple[bool, dict]:
    """Every input row is validation, train or excluded; the documents written are the
    validation rows plus every train copy; the per-source counts add up to the split's. (The
    `counts_conserve` check of `tokenized_shards`; assets/checks.py has the stages' own.)"""
    counts, splits = manifest.counts, manifest.splits
    accounted = counts.validation + counts.train + counts.excluded.total
    copies = sum(p.documents for p in splits[TRAIN].passes)
    problems = []
    if accounted != counts.n_in:
        problems.append(f"in={counts.n_in} but validation+train+excluded={accounted}")
    if counts.written[VALIDATION] != counts.validation:
        problems.append("validation documents written differ from validation rows")
    if counts.written[TRAIN] != copies:
        problems.append("train documents written differ from the sum over passes")
    for split in SPLITS:
        body = splits[split]
        for key, total in (("documents", body.documents), ("tokens", body.tokens)):
            by_source = sum(getattr(s, key) for s in body.sources.values())
            if by_source != total:
                problems.append(f"{split}: {key} per source sum to {by_source}")
    return not problems, {"problems": problems, "in": counts.n_in, "written": counts.written}


def shards_intact(storage: Storage, output: str) -> tuple[bool, dict]:
    """Every shard and index file has the sha256 the manifest records, every shard the
    recorded size (full but a split's last), and every document is framed: `</s>` exactly at
    the indexed document ends, `<s>` exactly at the document starts."""
    manifest = read_shards_manifest(storage, output)
    fmt = manifest.format
    problems, count = [], 0
    for split in SPLITS:
        shards = manifest.splits[split].shards
        start, opens = 0, True  # the shard's split-global offset; a document starts there
        for n, shard in enumerate(shards):
            base = posixpath.join(output, split, shard.name)
            data = storage.read_bytes(base + BIN_SUFFIX)
            tokens = np.frombuffer(data, fmt.numpy_dtype)
            ends = load_array(storage, base + INDEX_SUFFIX) - start
            full = n < len(shards) - 1
            found = _file_problems(storage, base, shard, data, fmt, full)
            found += _framing_problems(tokens, ends, opens, fmt)
            problems += [f"{split}/{shard.name}: {problem}" for problem in found]
            start += len(tokens)
            opens = bool(len(ends)) and ends[-1] == len(tokens)
            count += 1
    return not problems, {"problems": problems[:20], "shards": count}


def _file_problems(
    storage: Storage, base: str, shard: ShardFile, data: bytes, fmt: TokenFormat, full: bool
) -> list[str]:
    """The shard's and its index's checksums and the shard's size against the manifest."""
    problems = []
    if hashlib.sha256(data).hexdigest() != shard.sha256:
        problems.append("sha256 differs from the manifest")
    if storage.sha256(base + INDEX_SUFFIX) != shard.index_sha256:
        problems.append("index sha256 differs from the manifest")
    size = len(data) // fmt.numpy_dtype.itemsize
    if size != shard.tokens or (full and size != fmt.shard_tokens):
        problems.append(f"{size} tokens")
    return problems


def _framing_problems(
    tokens: np.ndarray, ends: np.ndarray, opens: bool, fmt: TokenFormat
) -> list[str]:
    """`</s>` exactly before each indexed end (`ends`: shard-local, exclusive) and `<s>` exactly
    at each document start: after every end inside the shard, and at 0 when `opens` (the
    split's first shard, or the previous shard ended with a document)."""
    if len(ends) and (ends.min() < 1 or ends.max() > len(tokens)):
        return ["index points outside the shard"]
    starts = ends[ends < len(tokens)]
    if opens and len(tokens):
        starts = np.concatenate([[0], starts])
    problems = []
    if not np.array_equal(np.flatnonzero(tokens == fmt.eos_id), ends - 1):
        problems.append("</s> is not exactly at the indexed document ends")
    if not np.array_equal(np.flatnonzero(tokens == fmt.bos_id), starts):
        problems.append("<s> is not exactly at the document starts")
    return problems
