"""The trainer with its token shards and its output directory on an object store (the S3 server
of tests/object_store.py): the same batches as from the local disk, read by range without
downloading a shard; checkpoints written through DCP's fsspec writer, committed by `latest`;
a run killed on the store resumes bit for bit as the uninterrupted run on the disk does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch
from object_store import new_bucket
from small_run import small_run
from train_shards import write_shards

from curation.core.storage import CACHE_ENV, Storage
from training.checkpoint import latest_checkpoint, load_model
from training.data import LoaderConfig, TokenLoader
from training.shard_files import StoreShards
from training.train import train

REPO = Path(__file__).resolve().parents[1]
STEPS = 12
CONFIG = LoaderConfig(seq_len=32, batch_size=4, seed=3, num_workers=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the trainer subprocess: the same kernels, so runs in
    and out of process give bit-identical losses (as in tests/test_train.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def local_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


@pytest.fixture(scope="module")
def shards(tmp_path_factory, s3_env) -> tuple[Path, str]:
    """The same tokenized_shards on the disk and in a bucket: (local path, URI)."""
    local = write_shards(tmp_path_factory.mktemp("train") / "shards")
    uri = f"s3://{new_bucket(s3_env)}/shards"
    store = Storage(uri)
    pafs.copy_files(str(local), store.base, pafs.LocalFileSystem(), destination_filesystem=store.fs)
    return local, uri


def _batches(loader: TokenLoader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n:
            return batches
    raise AssertionError("the loader ended")


def _same(a: list, b: list) -> bool:
    return all(
        torch.equal(x, y)
        for pa_, pb in zip(a, b, strict=True)
        for x, y in zip(pa_, pb, strict=True)
    )


def test_the_store_gives_the_disks_batches_and_resumes_at_the_same_place(shards, local_cache):
    local, uri = shards
    from_disk = TokenLoader(str(local), "train", CONFIG, rank=1, world_size=2)
    from_store = TokenLoader(uri, "train", CONFIG, rank=1, world_size=2)
    assert isinstance(from_store.stream.files, StoreShards)
    assert _same(_batches(from_disk, 6), _batches(from_store, 6))

    resumed = TokenLoader(uri, "train", CONFIG, rank=1, world_size=2)
    resumed.load_state_dict(from_disk.state_dict())
    assert _same(_batches(from_disk, 4), _batches(resumed, 4))
    assert not local_cache.exists(), "shards are read by range, never fetched whole"


def test_read_ahead_requests_the_next_batches_before_they_are_read(shards):
    _, uri = shards
    loader = TokenLoader(uri, "train", LoaderConfig(seq_len=32, batch_size=4, seed=3))
    dataset = loader.dataset()
    batches = iter(dataset)
    next(batches)
    pending = dataset.stream.files._pending
    upcoming = {
        piece
        for step in range(1, 5)
        for start, stop in dataset.windows(step)
        for piece in dataset.stream.ranges(start, stop)
    }
    assert upcoming <= set(pending), "the next four batches are requested ahead"


def _metrics(uri: str) -> dict[int, float]:
    store = Storage(uri)
    lines = store.read_bytes(store.path("metrics.jsonl")).decode().splitlines()
    records = [json.loads(line) for line in lines]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), "every step logged once"
    return {r["step"]: r["loss"] for r in records}


def _config(data_dir: str, output: str):
    return small_run(
        data_dir,
        output,
        seq_len=32,
        micro_batch_size=4,
        global_batch_tokens=256,
        max_steps=STEPS,
        warmup_steps=3,
        log_interval=1,
        checkpoint_interval=4,
    )


@pytest.mark.slow
def test_a_run_killed_on_the_store_resumes_exactly_as_the_run_on_disk(shards, tmp_path, s3_env):
    local, uri = shards
    reference_dir = tmp_path / "reference"
    assert train(_config(str(local), str(reference_dir)))["status"] == "completed"
    reference = {
        r["step"]: r["loss"]
        for r in map(json.loads, (reference_dir / "metrics.jsonl").read_text().splitlines())
    }

    output = f"s3://{new_bucket(s3_env)}/run"
    config = _config(uri, output)
    config_file = tmp_path / "run.json"
    config_file.write_text(config.to_json())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--config", str(config_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while latest_checkpoint(output) is None:
        assert process.poll() is None, f"trainer exited early with {process.returncode}"
        assert time.monotonic() < deadline, "no checkpoint on the store in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed_at = latest_checkpoint(output)
    assert resumed_at.startswith(f"{output}/checkpoints/step-")
    assert int(resumed_at.rsplit("-", 1)[1]) < STEPS

    result = train(config)
    assert result["status"] == "completed"
    assert result["last_checkpoint"] == f"{output}/checkpoints/step-{STEPS:07d}"
    assert _metrics(output) == reference  # bit for bit, across the kill and the store

    on_store, _ = load_model(output)
    on_disk, _ = load_model(reference_dir)
    for (name, a), (_, b) in zip(
        on_store.state_dict().items(), on_disk.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
