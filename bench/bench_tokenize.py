"""Tokenization and loading throughput, as ratios to references measured in the same
interleaved rounds (report.py: minimum of each over >= 3 rounds, warm-up excluded).

  bare encode        SentencePieceProcessor.encode over the same texts, already in memory (the
                     floor: no Parquet, no framing, no shard files, no hashes)
  tokenized_shards   write_token_shards on the same parts: read Parquet, encode, frame each
                     document `<s> ids </s>`, cut shards, sha256 every file, write the
                     manifest; at the same thread and worker count as the bare run it is
                     compared with (goal: >= 0.9 at one worker, one thread)
  datatrove          its DocumentTokenizer on the same partitions, one worker, one thread (our
                     SentencePiece model converted offline to a `tokenizers` JSON with the
                     same ids; skipped, with the reason printed, when that fails)
  TokenLoader        tokens/s the loader delivers (seq_len 2048) against the tokens/s one
                     training step consumes: by default the 1.36B preset at 55% MFU on one
                     H100 SXM (DESIGN.md section 6: 0.55 * 989e12 / flops per token), i.e. what
                     one rank must be fed; --step-tokens-per-s overrides it (a measured rate)

Input: the contract partitions of the seven sources under data/stages (or --input), one
tokenizer trained on them with the paper's settings (or --tokenizer).

    python bench/bench_tokenize.py [--input DIR ...] [--tokenizer MODEL] [--rounds 3]
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import tempfile
import time

import peers
import pyarrow.parquet as pq
import sentencepiece as spm
from report import (
    Contender,
    Timing,
    interleaved,
    interleaved_groups,
    machine_note,
    print_rows,
    ratio_note,
    speed_ratio,
    timing_row,
)

from curation.core.executor import LocalExecutor
from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.shards import TokenShardsConfig, write_token_shards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer

SOURCES = ["commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange"]
H100_BF16_PEAK = 989e12
GOAL = 0.9  # tokenized_shards >= 0.9x bare encode, one worker, one thread


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


def tokenizer_peer(model: str, tmp: str) -> tuple[str, str]:
    """datatrove's tokenizer input (our model as a `tokenizers` JSON) and why it cannot run
    ("" when it can)."""
    why = peers.unavailable()
    if why:
        return "", why
    try:
        return peers.hf_tokenizer_json(model, tmp)
    except Exception as exc:  # noqa: BLE001 - no peer row, and the reason printed instead
        return "", f"our SentencePiece model does not convert offline: {exc!r}"


def contender_groups(
    inputs,
    texts: list[str],
    model: str,
    peer_json: str = "",
    threads: tuple[int, ...] = (1, 2),
) -> dict[int, list[Contender]]:
    """Per thread count: bare encode, `tokenized_shards` at every layout of that many
    threads, and (at one thread: one worker) datatrove's DocumentTokenizer on the same
    partitions."""
    sp = spm.SentencePieceProcessor(model_file=model)
    directories = sorted({os.path.dirname(shard.path) for shard in inputs})
    groups = {}
    for count in threads:
        contenders = [Contender("bare", lambda th=count: bare_encode(sp, texts, th))]
        for workers, per_task in dict.fromkeys([(1, count), (count, 1)]):
            contenders.append(
                Contender(
                    f"{workers}x{per_task}",
                    lambda w=workers, p=per_task: shards_run(inputs, model, w, p),
                )
            )
        if count == 1 and peer_json:
            contenders.append(
                Contender("datatrove", lambda: peers.tokenize(directories, peer_json))
            )
        groups[count] = contenders
    return groups


def measure(
    inputs, texts: list[str], model: str, rounds: int, peer_json: str = ""
) -> dict[int, dict[str, Timing]]:
    """Every thread count's group in the same interleaved rounds."""
    groups = contender_groups(inputs, texts, model, peer_json)
    timings = interleaved_groups({str(k): v for k, v in groups.items()}, rounds)
    return {int(k): v for k, v in timings.items()}


def rows(results: dict[int, dict[str, Timing]]) -> list[tuple[str, float, int, str]]:
    out = []
    for threads, timings in results.items():
        bare = timings["bare"]
        out.append(timing_row(bare, name=f"bare sp.encode, {threads} thread(s)"))
        for key, timing in timings.items():
            if key in ("bare", "datatrove"):
                continue
            workers, per_task = key.split("x")
            name = f"tokenized_shards, {workers} worker(s) x {per_task} thread(s)"
            peer = timings.get("datatrove")
            note = ratio_note(timing, [(bare, "bare encode"), (peer, "datatrove")])
            out.append(timing_row(timing, note, name))
        if "datatrove" in timings:
            out.append(
                timing_row(timings["datatrove"], name="datatrove DocumentTokenizer, 1 worker")
            )
    return out


def tokenize_goal(results: dict[int, dict[str, Timing]]) -> tuple[str, float, float]:
    one = results[1]
    return (
        "tokenized_shards vs bare encode (1 thread)",
        speed_ratio(one["1x1"], one["bare"]),
        GOAL,
    )


def loader_run(directory: str, workers: int, batches: int) -> tuple[int, dict[str, float]]:
    """Tokens of `batches` batches of 8 x 2048, and their seconds after the first batch (the
    workers' start is not the loader's rate) as the part "steady"."""
    # Imported here, not at the top: the shard writer's spawned workers re-import this module,
    # and torch would add seconds of start-up to the pool being measured.
    from training.data import LoaderConfig, TokenLoader

    config = LoaderConfig(seq_len=2048, batch_size=8, num_workers=workers)
    iterator = iter(TokenLoader(directory, config=config))
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    return batches * config.batch_size * config.seq_len, {"steady": seconds}


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="leave datatrove out")
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
    print(f"# {machine_note()}; {args.rounds} interleaved rounds, min each")
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
        peer_dir = os.path.join(tmp, "peer")
        os.makedirs(peer_dir)
        peer_json, why = ("", "--no-peer") if args.no_peer else tokenizer_peer(model, peer_dir)
        if why:
            print(f"# datatrove not measured: {why}")
        results = measure(inputs, texts, model, args.rounds, peer_json)
        table = rows(results)

        out = os.path.join(tmp, "shards")
        write_token_shards(inputs, model, out, storage)
        step = args.step_tokens_per_s or step_tokens_per_s()
        table.append(("training step (1.36B, 55% MFU, one H100)", step, 0, "stated, per rank"))
        loaders = interleaved(
            [
                Contender(
                    f"TokenLoader, {w} workers", lambda w=w: loader_run(out, w, args.loader_batches)
                )
                for w in (0, 2)
            ],
            args.rounds,
        )
        for timing in loaders.values():
            rate = timing.items / timing.part("steady")
            table.append((timing.name, rate, timing.items, f"{rate / step:.1f}x a step's need"))

    print(f"# {len(texts)} documents, {sum(map(len, texts))} characters, vocab {sp.vocab_size()}")
    print_rows(table, "measure", "tokens/s")
    goal, measured, target = tokenize_goal(results)
    print(
        f"# goal {goal}: {measured:.2f}x (>= {target}x) {'met' if measured >= target else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
