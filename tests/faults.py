"""Helpers of the fault tests (crash and resume, idempotency, disk faults): what an output tree
holds, what a reader of it sees at one instant, and a real `llamapipe` in a process group of its
own, watched and killed the way a crash kills it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
from conftest import REPO

BIN = Path(sys.executable).parent


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes): what "byte-identical" compares."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def identity(path: Path) -> tuple[int, int]:
    """(inode, mtime in ns): the same for a file renamed into place, new for one written again
    (a freed inode number can be reused at once; its new mtime tells it apart)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def identities(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> identity of every file under `root`: how a test tells a resumed shard
    from a recomputed one, and a reused output from a rewritten one, without hooking code."""
    return {str(p.relative_to(root)): identity(p) for p in root.rglob("*") if p.is_file()}


def view(root: Path) -> dict[str, tuple[int, int, int]]:
    """What a reader opening `root` now sees: relative path -> (inode, mtime, size); {} if
    absent.

    Walked through directory handles (os.fwalk), as a reader that opened the directory once
    would: a rename of `root` in the middle cannot mix two versions. A file deleted while we
    walk (the previous version being removed after the swap) is left out."""
    seen: dict[str, tuple[int, int, int]] = {}
    try:
        for directory, _, files, fd in os.fwalk(root):
            for name in files:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                path = os.path.relpath(os.path.join(directory, name), root)
                seen[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return {}
    return seen


def rows_read_back(output: Path) -> tuple[int, int, int]:
    """(rows in by the manifest, kept rows in the part files, dropped rows in `_dropped/`),
    counted from the Parquet footers: the figures the reliability ledger adds up."""
    counts = json.loads((output / "_manifest.json").read_text())["counts"]

    def rows(directory: Path) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.glob("*.parquet"))

    return counts["in"], rows(output), rows(output / "_dropped")


def start(command: Sequence[str | Path], log: Path, env: dict | None = None) -> subprocess.Popen:
    """`command` in a new session, so its worker processes share its process group and one
    killpg reaches them all (a crashed node takes the workers down with the driver)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(c) for c in command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def llamapipe(*args: str | Path, log: Path) -> subprocess.Popen:
    return start([BIN / "llamapipe", *args], log)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group: no handler runs, no file is closed or cleaned up."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def poll_until(
    process: subprocess.Popen,
    ready: Callable[[], bool],
    log: Path,
    each: Callable[[], None] = lambda: None,
    timeout: float = 300.0,
) -> None:
    """Run `each` (a reader's check) then `ready` every few milliseconds until `ready()`;
    fail if the process ends first, so a kill that comes too late is never a silent pass."""
    deadline = time.monotonic() + timeout
    while True:
        each()
        if ready():
            return
        if process.poll() is not None:
            raise AssertionError(
                f"exited {process.returncode} before the kill point:\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no kill point within {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)


def files_under(directory: Path, suffix: str = "") -> list[Path]:
    """Files under `directory` (recursively) ending in `suffix`; none if it does not exist."""
    found = []
    for parent, _, names in os.walk(directory):
        found.extend(Path(parent, n) for n in names if n.endswith(suffix))
    return sorted(found)
