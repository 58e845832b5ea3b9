"""Tokenization and loading throughput, as ratios to references measured in this run.

  bare encode        SentencePieceProcessor.encode over the same texts, already in memory (the
                     floor: no Parquet, no framing, no shard files, no hashes)
  tokenized_shards   write_token_shards on the same parts: read Parquet, encode, frame each
                     document `<s> ids </s>`, cut shards, sha256 every file, write the
                     manifest; at the same thread and worker count as the bare run it is
                     compared with (target >= 0.85)
  TokenLoader        tokens/s the loader delivers (seq_len 2048) against the tokens/s one
                     training step consumes: by default the 1.36B preset at 55% MFU on one
                     H100 SXM (DESIGN.md section 6: 0.55 * 989e12 / flops per token), i.e. what
                     one rank must be fed; --step-tokens-per-s overrides it (a measured rate)

Input: the contract partitions of the seven sources under data/stages (or --input), one
tokenizer trained on them with the paper's settings (or --tokenizer).

    python bench/bench_tokenize.py [--input DIR ...] [--tokenizer MODEL] [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import tempfile
import time
from collections.abc import Callable

import pyarrow.parquet as pq
import sentencepiece as spm
from report import print_rows

from curation.core.executor import LocalExecutor
from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.shards import TokenShardsConfig, write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer

SOURCES = ["commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange"]
H100_BF16_PEAK = 989e12


def paired(repeat: int, *fns: Callable[[], int]) -> list[tuple[float, int]]:
    """Fastest of `repeat` runs of each function and its item count, the functions taking
    turns so that a reference and its candidate see the same background load (the machine is
    shared: measured back to back, a burst of other work lands on one side only)."""
    best = [(float("inf"), 0)] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            count = fn()
            best[i] = min(best[i], (time.perf_counter() - started, count))
    return best


def default_inputs(stages: str) -> list[str]:
    found = [glob.glob(os.path.join(stages, s, "*", "_manifest.json")) for s in SOURCES]
    return sorted(os.path.dirname(p) for p in itertools.chain.from_iterable(found))


def bare_encode(sp: spm.SentencePieceProcessor, texts: list[str], threads: int) -> int:
    return sum(map(len, sp.encode(texts, num_threads=threads)))


def shards_run(inputs, model: str, workers: int, threads: int) -> int:
    """Tokens of text encoded by one full `tokenized_shards` run (`<s>` and `</s>` excluded,
    as bare)."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_token_shards(
            inputs,
            model,
            os.path.join(tmp, "out"),
            Storage("/"),
            LocalExecutor(workers),
            TokenShardsConfig(encode_threads=threads),
        )
    train = manifest.splits["train"]
    return train.tokens - 2 * train.documents


def loader_run(directory: str, workers: int, batches: int) -> tuple[float, int]:
    """Seconds and tokens for `batches` batches of 8 x 2048, after the first (worker start)."""
    # Imported here, not at the top: the shard writer's spawned workers re-import this module,
    # and torch would add seconds of start-up to the pool being measured.
    from training.data import LoaderConfig, TokenLoader

    config = LoaderConfig(seq_len=2048, batch_size=8, num_workers=workers)
    iterator = iter(TokenLoader(directory, config=config))
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return time.perf_counter() - started, batches * config.batch_size * config.seq_len


def step_tokens_per_s() -> float:
    from model.config import LlamaConfig  # (as above: keeps torch out of spawned workers)

    flops = LlamaConfig.preset("1.36B", vocab_size=32000).flops_per_token(2048)
    return 0.55 * H100_BF16_PEAK / flops


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--input", nargs="*", help="contract partitions or Parquet files")
    parser.add_argument("--stages", default="data/stages")
    parser.add_argument("--tokenizer", help="a SentencePiece model (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loader-batches", type=int, default=100)
    parser.add_argument("--step-tokens-per-s", type=float, default=0.0)
    args = parser.parse_args()

    storage = Storage("/")
    paths = [os.path.abspath(p) for p in (args.input or default_inputs(args.stages))]
    inputs = contract_parts(storage, paths)
    texts = [
        t
        for shard in inputs
        for t in pq.read_table(shard.path, columns=["text"]).column("text").to_pylist()
    ]
    rows: list[tuple[str, float, int, str]] = []

    def record(name: str, seconds: float, n: int, note: str = "") -> float:
        rows.append((name, n / seconds, n, note))
        return n / seconds

    with tempfile.TemporaryDirectory() as tmp:
        model = (
            args.tokenizer
            or train_tokenizer(
                paths,
                os.path.join(tmp, "tok"),
                storage,
                TokenizerConfig(vocab_size=args.vocab_size),
            ).model_path
        )
        sp = spm.SentencePieceProcessor(model_file=model)

        for threads in (1, 2):
            layouts = list(dict.fromkeys([(1, threads), (threads, 1)]))
            timings = paired(
                args.repeat,
                lambda th=threads: bare_encode(sp, texts, th),
                *(lambda w=w, p=p: shards_run(inputs, model, w, p) for w, p in layouts),
            )
            bare = record(f"bare sp.encode, {threads} thread(s)", *timings[0])
            for (workers, per_task), (t, n) in zip(layouts, timings[1:], strict=True):
                name = f"tokenized_shards, {workers} worker(s) x {per_task} thread(s)"
                record(name, t, n, f"{n / t / bare:.2f}x bare encode")

        out = os.path.join(tmp, "shards")
        write_token_shards(inputs, model, out, storage)
        step = args.step_tokens_per_s or step_tokens_per_s()
        rows.append(("training step (1.36B, 55% MFU, one H100)", step, 0, "stated, per rank"))
        for workers in (0, 2):
            t, n = loader_run(out, workers, args.loader_batches)
            record(f"TokenLoader, {workers} workers", t, n, f"{n / t / step:.1f}x a step's need")

    print(f"# {len(texts)} documents, {sum(map(len, texts))} characters, vocab {sp.vocab_size()}")
    print_rows(rows, "measure", "tokens/s")


if __name__ == "__main__":
    main()
