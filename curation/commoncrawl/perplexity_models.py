"""Training CCNet's per-language perplexity models: a SentencePiece tokenizer and a KenLM 5-gram.

Layout of a models directory (one subdirectory per language, what `Perplexity` reads):

    <models_dir>/<lang>/lm.sp.model   SentencePiece unigram model
    <models_dir>/<lang>/lm.binary     KenLM model (probing hash table, `build_binary` default)

Both models see text through CCNet's `normalize` (lowercase, no accents, digits 0, ASCII
punctuation, control characters and so newlines removed), as the documents they score will.
The KenLM model reads each article as one normalized line, as CCNet's scoring reads each
crawl document (CCNet trained on the articles' opening text, one normalized line each); the
SentencePiece model, which needs sentence-sized examples, reads each normalized line of an
article. Training is deterministic: the same text, vocabulary size and seed give
byte-identical files, so a model directory can be fingerprinted by content.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import sentencepiece as spm

from curation.commoncrawl.crawl_index import fetch_segments
from curation.commoncrawl.normalize import normalize
from curation.core.storage import Storage, cache_dir

SP_MODEL_NAME = "lm.sp.model"
KENLM_MODEL_NAME = "lm.binary"
# CCNet's vocabulary size for its language models (its Makefile's VOCAB_SIZE).
CCNET_VOCAB_SIZE = 65536
# The names of CCNet's released models (http://dl.fbaipublicfiles.com/cc_net/lm/), per kind.
RELEASED_NAMES = {"tokenizer": "{language}.sp.model", "kenlm": "{language}.arpa.bin"}
# CCNet's value; rarer characters become <unk> instead of single-character pieces.
CHARACTER_COVERAGE = 0.9995
# SentencePiece skips training sentences longer than this (bytes); Wikipedia paragraphs can be
# long, and the default 4192 would silently drop them.
MAX_SENTENCE_BYTES = 1 << 16
_STDERR_TAIL = 2000


class EmptyCorpus(ValueError):
    """No text to train on: the asset layer reports the language as skipped."""


class LMTrainingError(RuntimeError):
    """`lmplz` or `build_binary` failed; the message ends with their stderr."""


@dataclass(frozen=True)
class LanguageModelFiles:
    tokenizer: Path
    kenlm: Path


def model_files(models_dir: str | os.PathLike, language: str) -> LanguageModelFiles:
    directory = Path(models_dir) / language
    return LanguageModelFiles(directory / SP_MODEL_NAME, directory / KENLM_MODEL_NAME)


def normalized_lines(texts: Iterable[str]) -> Iterator[str]:
    """Every non-empty normalized line of the texts: SentencePiece's training sentences."""
    for text in texts:
        for line in text.splitlines():
            if normalized := normalize(line):
                yield normalized


def normalized_documents(texts: Iterable[str]) -> Iterator[str]:
    """Each text normalized whole, one line per text: the KenLM corpus."""
    for text in texts:
        if normalized := normalize(text):
            yield normalized


def train_lm_tokenizer(
    texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int, seed: int = 0
) -> Path:
    """Train `<out_dir>/lm.sp.model` on the normalized lines of the texts.

    Unigram, as CCNet's `lm_sp` models: the perplexity cutoffs were tuned with them, and a
    unigram model's segmentation is the most probable one, which keeps n-gram statistics
    stable. `hard_vocab_limit=False` lets a small corpus (the sample's few hundred KB) end
    with fewer pieces than `vocab_size` instead of failing. One thread, no sentence sampling
    or shuffling and a fixed seed make the model byte-identical from run to run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(normalized_lines(texts))
    if not corpus:
        raise EmptyCorpus(f"empty language-model corpus for {out.name}: no text to train on")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=CHARACTER_COVERAGE,
        max_sentence_length=MAX_SENTENCE_BYTES,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    path = out / SP_MODEL_NAME
    _write_atomic(path, model.getvalue())
    return path


def tokenize(sp: spm.SentencePieceProcessor, lines: Sequence[str]) -> list[str]:
    """Each normalized line as its space-joined pieces: what the KenLM model reads."""
    return [" ".join(pieces) for pieces in sp.encode(list(lines), out_type=str)]


def train_kenlm(
    texts: Iterable[str],
    sp_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    order: int = 5,
    memory: str = "10%",
) -> Path:
    """Train `<out_dir>/lm.binary`: `lmplz -o <order>` on the tokenized texts (one line
    each), then `build_binary`.

    lmplz is first run as is; only when it cannot estimate Kneser-Ney discounts (its
    BadDiscountException, which small or repetitive corpora such as the sample's trigger)
    is it rerun with `--discount_fallback`. A real Wikipedia corpus so keeps exact discounts,
    and the sample still trains. `memory` is lmplz's `-S` (its default, 80% of RAM, is
    allocated up front). Intermediate files live in a temporary directory inside `out_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    corpus = tokenize(sp, list(normalized_documents(texts)))
    if not corpus:
        raise EmptyCorpus(f"empty language-model corpus for {out.name}: no text to train on")
    with tempfile.TemporaryDirectory(dir=out, prefix=".kenlm-") as tmp:
        text, arpa, binary = Path(tmp, "corpus.txt"), Path(tmp, "lm.arpa"), Path(tmp, "lm.binary")
        text.write_text("\n".join(corpus) + "\n", encoding="utf-8")
        lmplz = [_binary("lmplz"), "-o", str(order), "-S", memory, "-T", f"{tmp}/"]
        # --skip_symbols: a literal <s>/</s>/<unk> in the text is whitespace, not a crash.
        lmplz += ["--skip_symbols", "--text", str(text), "--arpa", str(arpa)]
        result = _run(lmplz)
        if result.returncode != 0 and "BadDiscountException" in result.stderr:
            result = _run([*lmplz, "--discount_fallback"])
        _check(result)
        _check(_run([_binary("build_binary"), str(arpa), str(binary)]))
        path = out / KENLM_MODEL_NAME
        os.replace(binary, path)
    return path


def _binary(name: str) -> str:
    """KenLM's tools are installed next to the interpreter (the kenlm wheel has no CLI)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"KenLM's {name} not found next to {sys.executable} or on PATH")
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        tool = Path(result.args[0]).name
        tail = result.stderr[-_STDERR_TAIL:]
        raise LMTrainingError(f"{tool} exited with {result.returncode}:\n{tail}")


def train_language_model(
    texts: Sequence[str],
    models_dir: str | os.PathLike,
    language: str,
    vocab_size: int,
    seed: int = 0,
    order: int = 5,
) -> LanguageModelFiles:
    """Both models of one language, in the layout `Perplexity` reads."""
    files = model_files(models_dir, language)
    train_lm_tokenizer(texts, files.tokenizer.parent, vocab_size, seed)
    train_kenlm(texts, files.tokenizer, files.kenlm.parent, order)
    return files


def install_released(source: str, models_dir: str | os.PathLike, language: str, kind: str) -> Path:
    """Put one of CCNet's released models (`kind`: tokenizer or kenlm) where `Perplexity`
    reads it, instead of training. `source` is a directory holding `{language}.sp.model` and
    `{language}.arpa.bin`, or an http(s) URL of one: a file is hard-linked when it can be
    (CCNet's English KenLM model is several GB), else copied; a URL is downloaded, resumably,
    into this machine's cache (`LLAMAPIPE_CACHE`) first. Either way the model appears at
    once, complete."""
    name = RELEASED_NAMES[kind].format(language=language)
    files = model_files(models_dir, language)
    target = files.tokenizer if kind == "tokenizer" else files.kenlm
    if "://" in source:
        cache = Path(cache_dir(), "released")
        fetch_segments(Storage("/"), str(cache), source, [name])
        origin = cache / name
    else:
        origin = Path(source, name)
        if not origin.is_file():
            raise FileNotFoundError(f"no released model {name} in {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(origin, tmp)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(origin, tmp)
    os.replace(tmp, target)
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def language_texts(storage: Storage, articles: str, language: str) -> list[str]:
    """The cleaned article texts of one language from a `wikipedia` partition directory."""
    table = pq.read_table(articles, filesystem=storage.fs, columns=["text", "language"])
    return table.filter(pc.equal(table.column("language"), language)).column("text").to_pylist()
