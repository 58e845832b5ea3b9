"""Exact document dedup: the first copy in shard-then-row order survives, whatever the workers."""

import numpy as np
import pyarrow.parquet as pq
from archives import annotated_shard

from curation.commoncrawl.exact_dedup import (
    ExactDedup,
    content_digest,
    first_occurrence_masks,
    first_occurrence_pass,
    first_occurrences,
)
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput


def shard(tmp_path, name: str, texts: list[str]) -> ShardInput:
    return annotated_shard(tmp_path / f"{name}.parquet", texts, ExactDedup.output_schema)


def run(storage, tmp_path, shards, out: str, workers: int = 1):
    manifest = run_stage(ExactDedup(), shards, str(tmp_path / out), storage, LocalExecutor(workers))
    kept = [r["id"] for r in pq.read_table(tmp_path / out).to_pylist()]
    dropped = {r["id"]: r["reason"] for r in pq.read_table(tmp_path / out / "_dropped").to_pylist()}
    assert manifest.n_in == len(kept) + len(dropped)
    return kept, dropped


def test_the_digest_ignores_whitespace_only():
    assert content_digest(" a  b\nc ") == content_digest("a b c")
    assert content_digest("a b c") != content_digest("a b C")


def test_first_occurrence_masks_follow_shard_then_position_order():
    masks = first_occurrence_masks([np.array([3, 1, 3], np.uint64), np.array([1, 2], np.uint64)])
    assert [m.tolist() for m in masks] == [[True, True, False], [False, True]]


def test_duplicates_within_and_across_shards_are_dropped_and_the_first_kept(storage, tmp_path):
    shards = [
        shard(tmp_path, "s0", ["alpha page", "beta page", "alpha  page\n"]),
        shard(tmp_path, "s1", ["beta page", "gamma page", "gamma page"]),
    ]
    kept, dropped = run(storage, tmp_path, shards, "forward")
    assert kept == ["s0-0", "s0-1", "s1-1"]
    assert dropped == {
        "s0-2": "exact_duplicate",
        "s1-0": "exact_duplicate",
        "s1-2": "exact_duplicate",
    }
    kept, _ = run(storage, tmp_path, shards[::-1], "reversed")
    assert kept == ["s1-0", "s1-1", "s0-0"]


def test_output_does_not_depend_on_the_worker_count(storage, tmp_path):
    texts = [f"page {i % 7}" for i in range(30)]
    shards = [shard(tmp_path, f"s{j}", texts[j * 10 : j * 10 + 10]) for j in range(3)]
    one = run(storage, tmp_path, shards, "one", workers=1)
    two = run(storage, tmp_path, shards, "two", workers=2)
    assert one == two and one[0] == ["s0-0", "s0-1", "s0-2", "s0-3", "s0-4", "s0-5", "s0-6"]


def _keyed(per_shard: dict[str, np.ndarray]):
    """A shard-keys function for the pass: the given keys of each shard, by name."""
    return lambda shard, storage, workdir: per_shard[shard.name]


def test_the_pass_in_hash_partitions_finds_the_first_occurrences_of_the_whole(storage, tmp_path):
    """A memory bound that cuts the keys into many partitions changes nothing: every copy of
    a key falls in one partition, and shards keep their order in each."""
    rng = np.random.default_rng(0)
    for dtype in ("S20", "u8"):
        values = {f"s{i}": rng.integers(0, 150, 0 if i == 3 else 200) for i in range(6)}
        keys = {name: v.astype(np.uint64) for name, v in values.items()}
        if dtype == "S20":
            keys = {n: np.array([b"%020d" % x for x in v], dtype="S20") for n, v in values.items()}
        shards = [ShardInput(name, name, "fp", 1000) for name in keys]
        expected = first_occurrence_masks(list(keys.values()))
        for bound, partitions in [(10**9, 1), (1000, 6), (250, 24)]:
            workdir = str(tmp_path / f"{dtype}-{bound}")
            first_occurrence_pass(shards, storage, workdir, LocalExecutor(1), _keyed(keys), bound)
            assert len(storage.list_files(f"{workdir}/firsts", ".offsets")) == partitions
            found = [first_occurrences(storage, workdir, s) for s in shards]
            assert [m.tolist() for m in found] == [m.tolist() for m in expected], (dtype, bound)


def test_a_memory_bound_leaves_the_output_byte_identical(storage, tmp_path):
    texts = [f"page {i % 11}" for i in range(60)]
    shards = [shard(tmp_path, f"s{j}", texts[j * 10 : j * 10 + 10]) for j in range(6)]
    outputs = {}
    for name, stage in {"one": ExactDedup(), "many": ExactDedup(bytes_per_partition=1)}.items():
        run_stage(stage, shards, str(tmp_path / name), storage, LocalExecutor(2))
        out = tmp_path / name
        outputs[name] = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.*")}
    assert outputs["one"] == outputs["many"] and len(outputs["one"]) == 13
