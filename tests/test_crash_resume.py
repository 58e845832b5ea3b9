"""Crash and resume: a run killed with SIGKILL (no handler runs, nothing is flushed or cleaned
up) and started again gives the same bytes as a run never interrupted, and readers never see
a partial output, only the previous complete version or the new one.

Three kill points: a stage's shard map (`llamapipe stage cc_documents`), the global pass of
dedup (`llamapipe stage deduplicated` inside `_prepare/`), and a Dagster run (`dagster asset
materialize --select wikipedia`). Training killed between checkpoints and a Slurm job
cancelled with its Dagster run are proven in test_train.py and test_slurm.py.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from conftest import REPO
from faults import (
    BIN,
    files_under,
    identities,
    identity,
    kill_group,
    llamapipe,
    poll_until,
    rows_read_back,
    start,
    tree,
    view,
)
from reliability import Ledger

from curation.core.runner import staging_path
from pipelines.cli import main


class Watcher(threading.Thread):
    """Takes what a reader of `root` sees, over and over, while an in-process run publishes."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.root, self.views, self.done = root, [view(root)], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            seen = view(self.root)
            if seen != self.views[-1]:
                self.views.append(seen)
            self.done.wait(0.002)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()


def shard_records(staging: Path) -> list[Path]:
    """The shards a run has committed (`_shards/part-NNNNN.parquet.json`)."""
    return files_under(staging / "_shards", ".json")


def assert_conserved(output: Path, ledger: Ledger) -> None:
    """Rows in (manifest) == kept + dropped rows found in the files; into the ledger."""
    n_in, kept, dropped = rows_read_back(output)
    ledger.records(n_in, kept, dropped)
    assert n_in == kept + dropped


@pytest.mark.slow
def test_a_stage_killed_mid_shard_map_resumes_to_the_same_bytes(
    sample_world: Path, sample_documents: Path, tmp_path: Path, ledger: Ledger
):
    """SIGKILL `llamapipe stage cc_documents` (2 workers) once a shard has committed; the
    re-run redoes only the unfinished shards (the finished parts are the very same files in
    the published output) and the output equals the uninterrupted run's, manifest included."""
    wet = sample_world / "crawls" / "sample" / "wet"
    one = tmp_path / "one"  # a previous complete version: the crawl's first archive only
    one.mkdir()
    (one / "first.warc.wet.gz").symlink_to(sorted(wet.iterdir())[0])
    output, log = tmp_path / "docs", tmp_path / "killed.log"
    options = ["--crawl", "sample", "--output", str(output)]
    assert main(["stage", "cc_documents", *options, "--input", str(one), "--workers", "1"]) == 0
    previous, previous_view = tree(output), view(output)
    staging = Path(staging_path(str(output)))

    def reader_sees_the_previous_version() -> None:
        assert view(output) == previous_view, "a reader saw a partial output"

    process = llamapipe(
        "stage", "cc_documents", *options, "--input", wet, "--workers", "2", log=log
    )
    try:
        poll_until(
            process,
            lambda: bool(shard_records(staging)),
            log,
            each=reader_sees_the_previous_version,
        )
    finally:
        kill_group(process)
    ledger.fault("sigkill")
    assert process.returncode == -9, log.read_text()[-3000:]
    assert not (staging / "_manifest.json").exists(), "killed after the shard map, not in it"
    finished = {p.stem: identity(staging / p.stem) for p in shard_records(staging)}
    assert 1 <= len(finished) < 8
    assert tree(output) == previous

    with Watcher(output) as watcher:
        assert main(["stage", "cc_documents", *options, "--input", str(wet), "--workers", "1"]) == 0
    final_view = view(output)
    for seen in watcher.views:  # absent, the previous version (being deleted), or the new one
        assert seen in ({}, final_view) or seen.items() <= previous_view.items(), seen
    assert tree(output) == tree(sample_documents)
    resumed = identities(output)
    assert {part: resumed[part] for part in finished} == finished, "finished shards redone"
    assert not staging.exists()
    assert_conserved(output, ledger)


@pytest.mark.slow
def test_dedup_killed_in_its_global_pass_resumes_to_the_same_bytes(
    sample_documents: Path, tmp_path: Path, ledger: Ledger
):
    """SIGKILL `llamapipe stage deduplicated` while its map-reduce writes under the staging's
    `_prepare/`: the re-run gives the uninterrupted run's bytes, signatures included."""
    reference = tmp_path / "reference" / "corpus"
    output, log = tmp_path / "killed" / "corpus", tmp_path / "killed.log"
    argv = ["stage", "deduplicated", "--input", str(sample_documents), "--workers", "1"]
    assert main([*argv, "--output", str(reference)]) == 0
    # The signatures are current, so the killed run goes straight to the global pass.
    signatures = Path(f"{output}.signatures")
    shutil.copytree(f"{reference}.signatures", signatures)
    staging = Path(staging_path(str(output)))

    def reader_sees_nothing() -> None:
        assert not output.exists(), "a reader saw a partial output"

    process = llamapipe(*argv, "--output", output, log=log)
    try:
        poll_until(
            process, lambda: bool(files_under(staging / "_prepare")), log, each=reader_sees_nothing
        )
    finally:
        kill_group(process)
    ledger.fault("sigkill_dedup")
    assert process.returncode == -9, log.read_text()[-3000:]
    assert not (staging / "_summary.json").exists(), "killed after the global pass, not in it"
    assert not output.exists()

    assert main([*argv, "--output", str(output)]) == 0
    assert tree(output) == tree(reference)
    assert tree(signatures) == tree(Path(f"{reference}.signatures"))
    assert not staging.exists()
    assert_conserved(output, ledger)


@pytest.mark.slow
def test_a_killed_dagster_run_rematerializes_to_the_same_bytes(
    sample_world: Path, tmp_path: Path, ledger: Ledger
):
    """SIGKILL the process group of `dagster asset materialize --select wikipedia` once the
    asset has committed a shard; materializing it again in the same instance resumes, and
    gives the bytes of an uninterrupted `llamapipe stage wikipedia` (same stage, same
    defaults). The code location is the asset alone (tests/wikipedia_location.py): the whole
    graph's would import torch first, a minute on a loaded 2-core machine."""
    home, root = tmp_path / "home", tmp_path / "root"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    root.mkdir()
    (root / "sample").symlink_to(sample_world)
    dumps = tmp_path / "dumps"  # two of the sample's four exports: two shards
    dumps.mkdir()
    for export in sorted((sample_world / "wikipedia").glob("*.xml.bz2"))[:2]:
        (dumps / export.name).symlink_to(export)
    reference = tmp_path / "reference"
    argv = ["stage", "wikipedia", "--input", str(dumps), "--workers", "1"]
    assert main([*argv, "--output", str(reference)]) == 0

    output = root / "stages" / "wikipedia" / "all"
    staging = Path(staging_path(str(output)))
    run_config = {
        "execution": {"config": {"in_process": {}}},
        "ops": {"wikipedia": {"config": {"dumps_dir": str(dumps)}}},
    }
    command = [
        *(BIN / "dagster", "asset", "materialize", "--select", "wikipedia"),
        *("-f", REPO / "tests" / "wikipedia_location.py"),
        *("--config-json", json.dumps(run_config)),
    ]
    env = {**os.environ, "DAGSTER_HOME": str(home), "LLAMAPIPE_DATA_ROOT": str(root)}

    def reader_sees_nothing() -> None:
        assert not output.exists(), "a reader saw a partial output"

    log = tmp_path / "killed.log"
    process = start(command, log, env)
    try:
        poll_until(process, lambda: bool(shard_records(staging)), log, each=reader_sees_nothing)
    finally:
        kill_group(process)
    ledger.fault("sigkill_dagster")
    assert process.returncode == -9, log.read_text()[-3000:]
    finished = {p.stem: identity(staging / p.stem) for p in shard_records(staging)}
    assert finished and not (staging / "_manifest.json").exists(), "not killed mid-stage"
    assert not output.exists()

    log = tmp_path / "again.log"
    again = start(command, log, env)
    assert again.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert tree(output) == tree(reference), "the Dagster asset and the CLI disagree"
    resumed = identities(output)
    assert {part: resumed[part] for part in finished} == finished, "finished shards redone"
    assert_conserved(output, ledger)
