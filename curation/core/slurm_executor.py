"""The shard map as a Slurm job array: one array task per item, behind `ShardExecutor`.

HPC sites often have Slurm and a shared filesystem but no Ray: CCNet and datatrove run their
data stages as job arrays there, and so does this executor. A map writes the function and
each item (pickled) into a run directory under `workdir`, which every node must see, and
submits one `sbatch --array` whose task N runs `python -m curation.core.slurm_executor
RUN_DIR` with `SLURM_ARRAY_TASK_ID=N`: it loads item N, applies the function and writes its
result, or the exception it raised, atomically beside it. The driver polls for the result
files and yields them as they come.

A task that ends without a result (its node was lost, it ran out of memory or time) is
resubmitted up to `retries` times, as an array of just those items; one that raised is not:
its exception is raised to the caller as itself, after every other item has finished, as the
process pool does. Each task's log is `RUN_DIR/logs/<job>_<task>.out`; the run directory is
removed after a map that succeeded and kept, and named in the error, after one that failed.
The tasks run this interpreter (a venv on the shared filesystem) in this working directory,
with this process's environment (`sbatch` exports it), so they run exactly this code.

Pickles travel here as they do inside a process pool or Ray, and are read only from a run
directory that `mkdtemp` made (mode 0700): nobody but its owner can have written a file in
it, and both sides check that before loading anything (`UntrustedRunDirectory`). This is the
one module of the project that reads a pickle (tests/test_safety.py).
Outputs do not depend on the executor: every stage names its outputs by item.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from curation.core.executor import task_name

T = TypeVar("T")
R = TypeVar("R")

FUNCTION_FILE = "function.pkl"
TASK_ID = "SLURM_ARRAY_TASK_ID"


@dataclass(frozen=True)
class SlurmExecutor:
    """Each item a task of a Slurm job array (see the module docstring).

    `workdir`: a directory every node mounts, for the run directories. `partition`, `mem`,
    `time` and `options` (more `#SBATCH` lines) go to sbatch as they are; `cpus_per_task`
    is what one item's stage uses; `max_parallel` caps the tasks running at once (0: as many
    as the cluster gives); `retries`: resubmissions of an item whose task left no result."""

    workdir: str
    partition: str = ""
    cpus_per_task: int = 1
    mem: str = ""
    time: str = "04:00:00"
    max_parallel: int = 0
    retries: int = 1
    options: tuple[str, ...] = ()
    poll_s: float = 1.0
    python: str = sys.executable
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    scancel: str = "scancel"

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        items = list(items)
        if not items:
            return
        run = ArrayRun.create(Path(self.workdir), fn, items)
        waiting = set(range(len(items)))
        resubmitted = 0
        failure: BaseException | None = None
        job = self._submit(run, sorted(waiting), _job_name(fn))
        try:
            while waiting:
                for index in sorted(waiting):
                    if (outcome := run.outcome(index)) is None:
                        continue
                    waiting.discard(index)
                    ok, value = outcome
                    if ok:
                        yield value
                    else:
                        failure = failure or value
                if not waiting or self._active(job):
                    time.sleep(self.poll_s if waiting else 0)
                    continue
                lost = [i for i in sorted(waiting) if run.outcome(i) is None]
                if not lost:
                    continue  # finished between the scan and the query: collect them
                if resubmitted >= self.retries:
                    waiting.clear()
                    failure = failure or TaskLost(job, lost, run.directory)
                    break
                resubmitted += 1
                job = self._submit(run, lost, _job_name(fn))
        finally:
            if waiting:  # the consumer stopped early, or this process is interrupted
                subprocess.run([self.scancel, job], capture_output=True, check=False)
        if failure is not None:
            raise failure
        shutil.rmtree(run.directory, ignore_errors=True)

    def _submit(self, run: ArrayRun, indices: Sequence[int], name: str) -> str:
        script = run.directory / f"array-{time.monotonic_ns()}.sbatch"
        script.write_text(self.script(run, indices, name))
        done = subprocess.run(
            [self.sbatch, "--parsable", str(script)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {script} failed: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def script(self, run: ArrayRun, indices: Sequence[int], name: str) -> str:
        """The array job's script: one task per index, the item's number its task id."""
        array = ",".join(map(str, indices))
        if self.max_parallel:
            array += f"%{self.max_parallel}"
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name={name}",
            f"#SBATCH --array={array}",
            "#SBATCH --ntasks=1",
            f"#SBATCH --cpus-per-task={self.cpus_per_task}",
            f"#SBATCH --time={self.time}",
            f"#SBATCH --output={run.directory}/logs/%A_%a.out",
            f"#SBATCH --chdir={os.getcwd()}",
            *([f"#SBATCH --partition={self.partition}"] if self.partition else []),
            *([f"#SBATCH --mem={self.mem}"] if self.mem else []),
            *(f"#SBATCH {option}" for option in self.options),
            f"exec {self.python} -m curation.core.slurm_executor {run.directory}",
        ]
        return "\n".join(lines) + "\n"

    def _active(self, job: str) -> bool:
        """Whether any task of the array is still pending or running."""
        argv = [self.squeue, "--noheader", "--jobs", job, "--format=%i"]
        done = subprocess.run(argv, capture_output=True, text=True)
        return done.returncode == 0 and bool(done.stdout.strip())


class UntrustedRunDirectory(PermissionError):
    """A run directory another user could have written into: nothing in it is loaded."""


class TaskLost(RuntimeError):
    """Tasks that ended without writing a result, after their retries."""

    def __init__(self, job: str, indices: Sequence[int], directory: Path):
        logs = directory / "logs"
        super().__init__(
            f"Slurm job {job}: the tasks of items {list(indices)} (positions in the map) ended "
            f"without a result (node lost, out of memory or time?); their logs are in {logs}"
        )


@dataclass(frozen=True)
class ArrayRun:
    """One map's files: the function, the items, their results and the tasks' logs."""

    directory: Path

    @staticmethod
    def create(workdir: Path, fn: Callable, items: Sequence) -> ArrayRun:
        workdir.mkdir(parents=True, exist_ok=True)
        run = ArrayRun(Path(tempfile.mkdtemp(prefix="map-", dir=workdir)))
        for name in ("items", "results", "logs"):
            (run.directory / name).mkdir()
        _write(run.directory / FUNCTION_FILE, fn)
        for index, item in enumerate(items):
            _write(run.item_path(index), item)
        return run

    def item_path(self, index: int) -> Path:
        return self.directory / "items" / f"{index:06d}.pkl"

    def result_path(self, index: int) -> Path:
        return self.directory / "results" / f"{index:06d}.pkl"

    def outcome(self, index: int) -> tuple[bool, object] | None:
        """(True, result) or (False, the exception), once the item's task wrote it."""
        path = self.result_path(index)
        return self.load(path) if path.exists() else None

    def load(self, path: Path) -> object:
        """A pickle of this run, once the directory is known to be its owner's alone."""
        status = self.directory.stat()
        if status.st_uid != os.getuid() or status.st_mode & 0o077:
            raise UntrustedRunDirectory(
                f"{self.directory} is not private to its owner (mode "
                f"{oct(status.st_mode & 0o777)}, uid {status.st_uid}): nothing in it is loaded"
            )
        with path.open("rb") as f:
            return pickle.load(f)

    def run_task(self, index: int) -> None:
        """What array task `index` does: apply the function to its item, keep the outcome."""
        fn = self.load(self.directory / FUNCTION_FILE)
        item = self.load(self.item_path(index))
        try:
            outcome: tuple[bool, object] = (True, fn(item))
        except Exception as exc:  # noqa: BLE001 - handed to the driver, which raises it
            outcome = (False, _picklable(exc))
        _write(self.result_path(index), outcome)


def _job_name(fn: Callable) -> str:
    """The array's name in squeue: the shard function's, in the characters sbatch keeps."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"llamapipe-{task_name(fn)}")[:64]


def _write(path: Path, value: object) -> None:
    """Pickle `value` to `path` atomically: a reader sees the whole file or none."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as f:
        pickle.dump(value, f)
    os.replace(partial, path)


def _picklable(exc: Exception) -> Exception:
    """The exception itself when it pickles, else a RuntimeError with its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send text instead
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"{type(exc).__name__} in a Slurm task:\n{text}")


if __name__ == "__main__":
    ArrayRun(Path(sys.argv[1])).run_task(int(os.environ[TASK_ID]))
