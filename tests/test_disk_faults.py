"""Disk full and read-only outputs: a stage that cannot write fails with one clear line that
names the path and the reason (CLI: exit 1, `llamapipe: error: cannot write PATH: REASON` on
stderr, no traceback), the previous complete output is left exactly as it was, nothing is
half-published, and a run after the fault is fixed resumes.

The faults are real filesystems, not mocks: a small tmpfs of the test's own, filled by the run
or remounted read-only. (The tests run as root, and root ignores permission bits, so chmod
cannot make a directory read-only for them.)
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from faults import BIN, files_under, identity, rows_read_back, tree
from reliability import Ledger

from curation.commoncrawl.documents import CCDocuments
from curation.core.inputs import archive_shards
from curation.core.manifest import read_manifest
from curation.core.runner import run_stage, staging_path
from curation.core.storage import OutputWriteError, Storage
from pipelines.cli import main


def remount(mount_point: Path, options: str) -> None:
    """Change a mounted tmpfs in place: `ro`, `rw`, or a new `size=` (its files stay)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test alone, unmounted after it whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    # mount's message without this test's own path: one reason, counted once per test.
    error = mounted.stderr.strip().replace(str(mount_point), "DISK")
    require(mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {error}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)]).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def archives(sample_world: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two input directories: the sample crawl's first WET archive, and its first two."""
    wet = sorted((sample_world / "crawls" / "sample" / "wet").iterdir())
    one, two = tmp_path / "one", tmp_path / "two"
    for directory, files in ((one, wet[:1]), (two, wet[:2])):
        directory.mkdir()
        for archive in files:
            (directory / archive.name).symlink_to(archive)
    return one, two


def cc_documents(source: Path, output: Path) -> list[str]:
    """The command line of `llamapipe stage cc_documents` from `source` into `output`."""
    return ["stage", "cc_documents", "--crawl", "sample", "--workers", "1",
            "--input", str(source), "--output", str(output)]  # fmt: skip


def llamapipe(*argv: str) -> subprocess.CompletedProcess:
    """The CLI in a process of its own: its exit status and stderr are what a user gets."""
    command = [str(BIN / "llamapipe"), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def assert_one_clear_line(result: subprocess.CompletedProcess, path: Path, reason: str) -> None:
    """Exit 1, no traceback, and one `llamapipe: error: cannot write PATH...: REASON` line."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("llamapipe:")]
    assert line.startswith(f"llamapipe: error: cannot write {path}"), line
    assert line.endswith(f": {reason}"), line


def test_a_read_only_output_fails_naming_the_path_and_keeps_the_previous_output(
    disk: Path, archives: tuple[Path, Path], ledger: Ledger
):
    """A previous output on a filesystem remounted read-only: the new run (another input, so
    another fingerprint) fails at its first write, through run_stage and through the CLI."""
    one, two = archives
    output = disk / "docs"
    assert main(cc_documents(one, output)) == 0
    previous = tree(output)
    remount(disk, "ro")
    ledger.fault("read_only", 2)  # hit twice: through run_stage, then through the CLI

    storage = Storage("/")
    inputs = archive_shards(storage, str(two))
    with pytest.raises(OutputWriteError) as failure:
        run_stage(CCDocuments(crawl="sample"), inputs, str(output), storage)
    assert failure.value.errno == errno.EROFS
    assert failure.value.filename.startswith(staging_path(str(output)))
    result = llamapipe(*cc_documents(two, output))
    assert_one_clear_line(result, Path(staging_path(str(output))), "Read-only file system")
    assert tree(output) == previous


def test_a_full_disk_fails_naming_the_file_keeps_the_previous_output_and_resumes(
    disk: Path, archives: tuple[Path, Path], tmp_path: Path, ledger: Ledger
):
    """The disk holds a previous output (archive 1) and room for one more part and a half:
    the new run (archives 1 and 2) commits its first shard and fails in the second. With room
    again, the next run redoes only the second and equals a run on a roomy disk."""
    one, two = archives
    reference, output = tmp_path / "reference", disk / "docs"
    assert main(cc_documents(two, reference)) == 0
    parts = [shard.bytes_out for shard in read_manifest(Storage("/"), str(reference)).shards]
    assert main(cc_documents(one, output)) == 0
    previous = tree(output)
    stat = os.statvfs(disk)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    remount(disk, f"size={(used + parts[0] + parts[1] // 2 + (64 << 10)) >> 10}k")
    ledger.fault("disk_full")

    result = llamapipe(*cc_documents(two, output))
    staging = Path(staging_path(str(output)))
    assert_one_clear_line(result, staging / "part-00001.parquet", "No space left on device")
    assert tree(output) == previous
    assert [p.name for p in files_under(staging / "_shards")] == ["part-00000.parquet.json"]
    assert not [p for p in files_under(staging) if ".tmp" in p.name], "partial files left"
    committed = identity(staging / "part-00000.parquet")

    remount(disk, "size=16m")
    assert main(cc_documents(two, output)) == 0
    assert tree(output) == tree(reference)
    assert identity(output / "part-00000.parquet") == committed, "finished shard redone"
    n_in, kept, dropped = rows_read_back(output)
    ledger.records(n_in, kept, dropped)
    assert n_in == kept + dropped
