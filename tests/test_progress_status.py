"""Progress of a shard map (counts, rate, ETA; throttled; resumed shards excluded from the rate)
and `llamapipe status` (finished partitions with counts, interrupted ones with their shards)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_runner import Recording, make_shards

from curation.core.executor import LocalExecutor
from curation.core.manifest import ShardRecord
from curation.core.progress import ProgressUpdate, ShardProgress
from curation.core.runner import run_stage
from curation.core.stage import ShardInput
from curation.core.status import FINISHED, INTERRUPTED, WRITTEN, partition_statuses


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(index: int, n_in: int = 10, kept: int = 7) -> ShardRecord:
    return ShardRecord(index, f"in-{index}", "fp", n_in, kept, {"x": n_in - kept}, 0, 0, "")


def test_progress_is_throttled_and_its_rate_counts_only_this_runs_bytes():
    inputs = [ShardInput(f"in-{i}", "", "fp", 1_000_000) for i in range(6)]
    updates: list[ProgressUpdate] = []
    clock = Clock()
    # Shard 0 was finished by an earlier, killed run.
    tracker = ShardProgress("s", inputs, [_record(0)], updates.append, interval_s=10, clock=clock)
    for index, at in ((1, 1.0), (2, 2.0), (3, 12.0), (4, 13.0), (5, 14.0)):
        clock.now = at
        tracker.advance(_record(index))
    # The first, one after the interval, and the last.
    assert [u.shards_done for u in updates] == [2, 4, 6]
    first, middle, last = updates
    assert first.resumed == 1 and first.bytes_todo == 5_000_000
    assert first.bytes_per_s == pytest.approx(1e6) and first.eta_s == pytest.approx(4.0)
    assert middle.fraction == pytest.approx(3 / 5) and middle.eta_s == pytest.approx(8.0)
    assert (last.docs_in, last.kept, last.fraction, last.eta_s) == (60, 42, 1.0, 0.0)
    assert middle.line() == (
        "s: 4/6 shards (1 resumed) (60%), 40 docs in, 28 kept, 0.2 MB/s, ETA 0:00:08"
    )
    assert middle.bar(10).startswith("[######....] s: 4/6")


def test_the_runner_reports_progress_that_ends_at_the_manifests_counts(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 4)
    updates: list[ProgressUpdate] = []
    stage = Recording(log=str(tmp_path / "log"))
    manifest = run_stage(
        stage, shards, str(tmp_path / "out"), storage, LocalExecutor(1), progress=updates.append
    )
    last = updates[-1]
    assert (last.shards_done, last.shards_total) == (4, 4)
    assert (last.docs_in, last.kept) == (manifest.n_in, manifest.kept)


def test_status_lists_finished_interrupted_and_written_partitions(storage, tmp_path):
    stages = tmp_path / "data" / "stages"
    shards = make_shards(storage, str(tmp_path / "in"), 3)
    log = str(tmp_path / "log")
    run_stage(Recording(log=log), shards, str(stages / "recording" / "a"), storage)
    marker = tmp_path / "fail"
    marker.write_text("in-2.parquet")  # the third shard fails: two are kept for resume
    with pytest.raises(RuntimeError, match="injected"):
        run_stage(
            Recording(log=log, fail_marker=str(marker)),
            shards,
            str(stages / "recording" / "b"),
            storage,
        )
    for asset in ("tokenizer", "wikipedia"):
        (stages / asset / "all").mkdir(parents=True)
        (stages / asset / "all" / "output").write_bytes(b"x")

    statuses = partition_statuses(storage, str(stages))
    assert [(s.asset, s.partition, s.state) for s in statuses] == [
        ("recording", "a", FINISHED),
        ("recording", "b", INTERRUPTED),
        ("tokenizer", "all", WRITTEN),
        ("wikipedia", "all", WRITTEN),
    ]
    finished, interrupted, *_ = statuses
    assert (finished.n_in, finished.kept, finished.dropped) == (15, 8, 7)
    assert interrupted.shards_done == 2

    llamapipe = Path(sys.executable).parent / "llamapipe"
    result = subprocess.run(
        [llamapipe, "status", "--root", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["asset", "partition", "state", "in", "kept", "dropped"]
    # The recipe's assets in pipeline order (curation/recipe.py), then the others by name.
    assert [line.split()[0] for line in lines[1:5]] == [
        "wikipedia", "tokenizer", "recording", "recording"
    ]  # fmt: skip
    assert lines[3].split() == ["recording", "a", "materialized", "15", "8", "7"]
    assert "interrupted (resumes), 2 shards done" in lines[4]
