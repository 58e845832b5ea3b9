"""Peak memory of the first-occurrence pass (exact dedup, C4's span dedup) at 1x, 4x, 16x.

    python bench/bench_memory.py [--keys-per-shard 100000] [--shards 8] [--out FILE]

Synthetic shards of SHA-1-sized keys (a tenth of them repeated across shards, as copies
are), the pass run in this process (one worker) so that `tracemalloc` sees every step; the
peak is what the pass allocated at its worst moment. Two settings on the same input: the
memory bound sized so that each key partition holds one base input's keys (`bounded`), and
one partition for everything (`unbounded`, what the pass did before it was partitioned). A
bounded pass should stay flat as the input grows; the unbounded one grows with it.
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.commoncrawl.exact_dedup import first_occurrence_pass
from curation.core.executor import LocalExecutor
from curation.core.stage import ShardInput
from curation.core.storage import Storage

SHARD_BYTES = 100 << 20  # what each synthetic shard stands for, as input bytes
FACTORS = (1, 4, 16)


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


def peak_bytes(shards: int, per_shard: int, bytes_per_partition: int) -> int:
    inputs = [ShardInput(f"s{i}", f"s{i}", "synthetic", SHARD_BYTES) for i in range(shards)]
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        tracemalloc.start()
        first_occurrence_pass(
            inputs, storage, f"{tmp}/pass", LocalExecutor(1), SyntheticKeys(per_shard),
            bytes_per_partition,
        )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys-per-shard", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=8, help="shards at 1x")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    bound = args.shards * SHARD_BYTES  # one 1x input's keys per partition
    peak_bytes(2, 100, SHARD_BYTES)  # warm-up: first-use allocations are not the pass's
    lines = [
        f"first-occurrence pass, {args.keys_per_shard} keys a shard, {args.shards} shards at 1x",
        f"{'input':>6}  {'keys':>10}  {'bounded MB':>10}  {'unbounded MB':>12}  bounded/unbounded",
    ]
    for factor in FACTORS:
        shards = args.shards * factor
        bounded = peak_bytes(shards, args.keys_per_shard, bound)
        unbounded = peak_bytes(shards, args.keys_per_shard, 1 << 62)
        keys = shards * args.keys_per_shard
        lines.append(
            f"{factor:>5}x  {keys:>10}  {bounded / 1e6:>10.1f}  {unbounded / 1e6:>12.1f}  "
            f"{bounded / unbounded:.2f}"
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
