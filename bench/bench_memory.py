"""Peak memory of the global passes at 1x, 4x and 16x input, bounded and not.

    python bench/bench_memory.py [--out bench/results/memory_global_passes.txt]

Each pass runs on synthetic input written beforehand, alone in a fresh child process (spawn)
with one worker, so that its peak is its own: tracemalloc's (Python and numpy allocations) plus
the Arrow memory pool's maximum (Arrow's buffers, which tracemalloc does not see). Two settings
on the same input: `bounded`, the pass's memory bound sized so that one partition (run, group)
holds the 1x input, and `unbounded`, one partition for everything: what the pass did before it
was partitioned. A bounded pass stays flat as the input grows; the unbounded one grows with it.

- first-occurrence pass (exact dedup, C4's span dedup): keys of SHA-1 size, a tenth of them
  repeated across shards, as copies are; bound `bytes_per_partition`.
- book signatures (the books' near-duplicate search, `BooksClean.prepare` whole: fingerprints,
  band partitions, exact checks): short books, a tenth of them edited copies of another;
  bound `bytes_per_partition`.
- StackExchange join (`StackExchangeClean.process_batches` over one site whose rows come in
  random order): bound `bytes_per_run`.
- line dedup (`LineDedup.prepare`): documents whose lines are a tenth boilerplate; its bound
  is `group_size`, the shards deduplicated together (which is also its scope: unbounded is
  one group of every shard).
- MinHash cluster step (`dedup.components.label_components`, the connected components of
  the verified edges, on synthetic edge files): bound `max_rows_per_cluster_partition`.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.commoncrawl.exact_dedup import first_occurrence_pass
from curation.commoncrawl.line_dedup import LineDedup
from curation.core.arrays import save_array
from curation.core.documents import Document, documents_table
from curation.core.executor import LocalExecutor
from curation.core.inputs import file_shard
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.dedup.components import ClusterPlan, label_components
from curation.dedup.minhash import shingle_hashes
from curation.sources.books import BooksClean, book_shards
from curation.sources.stackexchange import StackExchangeClean, site_shards

FACTORS = (1, 4, 16)
UNBOUNDED = 1 << 62
SHARD_BYTES = 100 << 20  # what each synthetic key shard stands for, as input bytes
VOCABULARY = [f"w{i}" for i in range(5000)]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(VOCABULARY, k=n))


# --- first-occurrence pass --------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticKeys:
    """The keys of shard `i`: digests of document numbers, a tenth of them shared."""

    per_shard: int

    def __call__(self, shard: ShardInput, storage: Storage, workdir: str) -> np.ndarray:
        index = int(shard.name.removeprefix("s"))
        rng = np.random.default_rng(index)
        numbers = np.arange(index * self.per_shard, (index + 1) * self.per_shard, dtype=np.uint64)
        shared = rng.random(self.per_shard) < 0.1
        numbers[shared] = rng.integers(0, self.per_shard, int(shared.sum()), dtype=np.uint64)
        return np.frombuffer(_digests(numbers), dtype="S20")


def _digests(numbers: np.ndarray) -> bytes:
    """20 bytes a number: the number, then a fixed tail (distinct numbers, distinct keys)."""
    out = np.zeros((len(numbers), 20), dtype=np.uint8)
    out[:, :8] = numbers.view(np.uint8).reshape(-1, 8)
    out[:, 8:] = 0x5A
    return out.tobytes()


@dataclass(frozen=True)
class KeyShards:
    folder: str
    shards: int
    per_shard: int


def write_keys(folder: str, factor: int, scale: float) -> tuple[KeyShards, str]:
    shards, per_shard = 8 * factor, int(25_000 * scale)
    return KeyShards(folder, shards, per_shard), f"{shards * per_shard} keys"


def run_keys(data: KeyShards, bound: int) -> None:
    inputs = [ShardInput(f"s{i}", f"s{i}", "synthetic", SHARD_BYTES) for i in range(data.shards)]
    storage, executor = Storage(data.folder), LocalExecutor(1)
    first_occurrence_pass(
        inputs, storage, f"{data.folder}/pass", executor, SyntheticKeys(data.per_shard), bound
    )


# --- book signatures --------------------------------------------------------------------------


def write_books(folder: str, factor: int, scale: float) -> tuple[tuple[str, list], str]:
    rng = random.Random(factor)
    root = Path(folder, "books", "books3")
    root.mkdir(parents=True)
    texts: list[str] = []
    for i in range(int(300 * scale) * factor):
        if texts and rng.random() < 0.1:  # an edited copy of an earlier book
            words = rng.choice(texts).split(" ")
            words[rng.randrange(len(words))] = "changed"
            texts.append(" ".join(words))
        else:
            texts.append(_words(rng, 150))
        (root / f"b{i:06d}.txt").write_text(texts[-1])
    shards = book_shards(Storage(folder), str(root.parent))
    return (folder, shards), f"{len(texts)} books"


def warm_books() -> None:
    """The shingle hashing's power table: a cache each worker makes once (16.8 MB), the same
    whatever the input, made before the measure so that the table shows what the input costs."""
    shingle_hashes("a b c d e f")


def run_books(data: tuple[str, list[ShardInput]], bound: int) -> None:
    folder, inputs = data
    stage = BooksClean(bytes_per_partition=bound)
    stage.prepare(inputs, Storage(folder), f"{folder}/work-{bound}", LocalExecutor(1))


# --- StackExchange join -----------------------------------------------------------------------


def write_site(folder: str, factor: int, scale: float) -> tuple[str, str]:
    rng = random.Random(factor)
    rows = []
    for q in range(1, int(1500 * scale) * factor + 1):
        rows.append({"Id": q * 10, "PostTypeId": 1, "Title": f"q{q}", "Tags": "<a><b>"})
        rows += [{"Id": q * 10 + a, "PostTypeId": 2, "ParentId": q * 10} for a in range(q % 5)]
    rng.shuffle(rows)  # answers anywhere, before or after their question
    site = Path(folder, "se", "a.stackexchange.com")
    site.mkdir(parents=True)
    with open(site / "Posts.xml", "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for row in rows:
            row |= {"Score": rng.randint(-3, 40), "Body": f"<p>{_words(rng, 40)}</p>"}
            f.write(f"  <row {' '.join(f'{k}={quoteattr(str(v))}' for k, v in row.items())} />\n")
        f.write("</posts>\n")
    return str(site.parent), f"{len(rows)} posts"


def run_site(root: str, bound: int) -> None:
    storage = Storage(root)
    [shard] = site_shards(storage, root)
    stage = StackExchangeClean(bytes_per_run=bound)  # its prepare streams: one row at a time
    stage = stage.prepare([shard], storage, f"{root}/work-{bound}", LocalExecutor(1))
    for _ in stage.process_batches(shard, storage):
        pass


# --- line dedup -------------------------------------------------------------------------------


def write_documents(folder: str, factor: int, scale: float) -> tuple[list[ShardInput], str]:
    rng = random.Random(factor)
    boilerplate = [_words(rng, 6) for _ in range(50)]
    storage, inputs = Storage(folder), []
    for s in range(8 * factor):
        docs = []
        for d in range(int(200 * scale)):
            lines = [rng.choice(boilerplate) if rng.random() < 0.1 else _words(rng, 8)]
            lines += [_words(rng, 8) for _ in range(9)]
            docs.append(Document(f"{s}-{d}", "bench", "\n".join(lines), None, {}))
        path = os.path.join(folder, f"part-{s:05d}.parquet")
        pq.write_table(documents_table(docs), path)
        inputs.append(file_shard(storage, path))
    return inputs, f"{len(inputs) * int(200 * scale) * 10} lines"


def run_line_dedup(inputs: list[ShardInput], group_size: int) -> None:
    folder = os.path.dirname(inputs[0].path)
    stage = LineDedup(group_size=group_size)
    stage.prepare(inputs, Storage(folder), f"{folder}/work-{group_size}", LocalExecutor(1))


# --- MinHash cluster step ---------------------------------------------------------------------


def write_edges(folder: str, factor: int, scale: float) -> tuple[tuple[str, ...], str]:
    """Edge files as the bucket step leaves them: clusters of four documents of one shard as
    stars, and a tenth of the documents also linked to one of the shard before."""
    rng = np.random.default_rng(factor)
    storage, paths, per_shard = Storage(folder), [], int(20_000 * scale)
    for s in range(4 * factor):
        rows = np.arange(per_shard, dtype=np.uint64)
        local = np.stack([rows - rows % np.uint64(4), rows], axis=1)[rows % 4 != 0]
        cross = rows[rng.random(per_shard) < 0.1]
        before = np.uint64(max(s - 1, 0)) << np.uint64(32)
        edges = np.concatenate([local + (np.uint64(s) << np.uint64(32)), np.stack(
            [cross + (np.uint64(s) << np.uint64(32)), cross + before], axis=1
        )])  # fmt: skip
        paths.append(os.path.join(folder, f"edges-{s:05d}.npy"))
        save_array(storage, paths[-1], edges)
    return tuple(paths), f"{4 * factor * per_shard} documents"


def run_clusters(edge_files: tuple[str, ...], max_rows: int) -> None:
    """The partitions `Deduplicated.cluster_plan` makes of `max_rows_per_cluster_partition`."""
    folder = os.path.dirname(edge_files[0])
    partitions = max(1, math.ceil(edge_rows(edge_files) / max_rows))
    plan = ClusterPlan(Storage(folder), f"{folder}/work-{max_rows}", partitions, edge_files)
    label_components(plan, LocalExecutor(1))


def edge_rows(edge_files: tuple[str, ...]) -> int:
    """Both directions of every edge: the rows the cluster step's partitions gather."""
    return 2 * sum(
        int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0]) for path in edge_files
    )


# --- the measure ------------------------------------------------------------------------------


Run = Callable[[Any, int], None]


@dataclass(frozen=True)
class Pass:
    """A global pass: how to write its input at a factor, run it under a bound (in the child),
    and the bound that makes one partition of the 1x input."""

    name: str
    setting: str
    write: Callable[[str, int, float], tuple[Any, str]]
    run: Run
    bound: Callable[[Any], int]
    warm: Callable[[], None] | None = None  # what a worker makes once, before the measure


PASSES = (
    Pass(
        "first-occurrence", "bytes_per_partition", write_keys, run_keys,
        lambda data: data.shards * SHARD_BYTES,
    ),
    Pass(
        "book signatures", "bytes_per_partition", write_books, run_books,
        lambda data: sum(s.bytes for s in data[1]), warm_books,
    ),
    Pass(
        "StackExchange join", "bytes_per_run", write_site, run_site,
        lambda root: os.path.getsize(os.path.join(root, "a.stackexchange.com", "Posts.xml")),
    ),
    Pass("line dedup", "group_size", write_documents, run_line_dedup, len),
    Pass(
        "MinHash cluster step", "max_rows_per_cluster_partition", write_edges, run_clusters,
        edge_rows,
    ),
)  # fmt: skip


def _measure(run: Run, warm: Callable[[], None] | None, data: Any, bound: int) -> int:
    """In a fresh process: the peak bytes of one run (tracemalloc + Arrow's pool)."""
    pa.table({"warm": [0]})  # pyarrow imports pandas on first use: a module, not the pass's
    if warm is not None:
        warm()
    tracemalloc.start()
    run(data, bound)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return traced + pa.default_memory_pool().max_memory()


def peak_bytes(step: Pass, data: Any, bound: int) -> int:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (step.run, step.warm, data, bound))


def measure(step: Pass, scale: float) -> list[str]:
    """The pass's rows: input, bounded and unbounded peaks at every factor."""
    lines, bound = [], None
    for factor in FACTORS:
        with tempfile.TemporaryDirectory() as tmp:
            data, size = step.write(tmp, factor, scale)
            bound = bound or step.bound(data)
            bounded = peak_bytes(step, data, bound)
            unbounded = peak_bytes(step, data, UNBOUNDED)
        lines.append(
            f"{step.name:<21} {factor:>3}x  {size:>16}  {bounded / 1e6:>10.1f}  "
            f"{unbounded / 1e6:>12.1f}  {bounded / unbounded:>6.2f}"
        )
        print(lines[-1], flush=True)
    return [*lines, f"{'':<21} bound: {step.setting} = {bound}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="of every 1x input")
    parser.add_argument("--passes", nargs="*", help="names of the passes to run (all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    header = [
        "peak memory of the global passes, MB (tracemalloc + Arrow pool), one worker; the bound "
        "holds one 1x input",
        f"{'pass':<21} {'input':>4}  {'size':>16}  {'bounded MB':>10}  {'unbounded MB':>12}  "
        f"{'ratio':>6}",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    for step in PASSES:
        if not args.passes or step.name in args.passes:
            lines += measure(step, args.scale)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
