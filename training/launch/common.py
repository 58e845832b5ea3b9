"""What the launch backends share: the program a launch runs and how its arguments are built,
NCCL's defaults, the job handle protocol (`Job`, `JobStatus`), the subprocess helpers the
handles query their scheduler with, following a job's logs to its end (`follow`, `supervise`),
and the checks every backend's settings run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TRAIN_MODULE = "training.train"  # the program a launch runs unless told another
# NCCL over InfiniBand: the default a multi-node A100 job wants; each is configurable.
NCCL_ENV = {"NCCL_IB_DISABLE": "0", "NCCL_DEBUG": "WARN"}
# How long a job's state may stay unknown (scheduler or API server busy, restarting,
# unreachable) before the launcher gives up on it; a failed query never cancels a job.
UNKNOWN_PATIENCE_S = 600.0


def default_torchrun() -> str:
    """The torchrun beside this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("torchrun")
    return str(beside) if beside.exists() else "torchrun"


def _program_args(config_path: str, module: str) -> list[str]:
    """`-m MODULE --config FILE`: every program a launcher runs (the trainer, the evaluation)
    takes one JSON config file."""
    return ["-m", module, "--config", config_path]


# --------------------------------------------------------------------------------------------
# job handles


@dataclass(frozen=True)
class JobStatus:
    state: str
    done: bool
    ok: bool = False


class Job(Protocol):
    description: str

    def poll(self) -> JobStatus: ...

    def cancel(self) -> None: ...

    def log_files(self) -> list[str]: ...


def _run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def _query(argv: Sequence[str]) -> str | None:
    """A state query's stdout, or None when it failed or hung."""
    try:
        done = _run(argv)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


class _Patience:
    """Tolerates an unknown state until it has lasted `UNKNOWN_PATIENCE_S`."""

    def __init__(self) -> None:
        self._since: float | None = None

    def exhausted(self, known: bool) -> bool:
        if known:
            self._since = None
            return False
        self._since = self._since or time.monotonic()
        return time.monotonic() - self._since > UNKNOWN_PATIENCE_S


def _checked(argv: Sequence[str], what: str) -> str:
    done = _run(argv)
    if done.returncode:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --------------------------------------------------------------------------------------------
# following a job


class LogTail:
    """New complete lines of a growing file, from where the last read stopped."""

    def __init__(self, path: str):
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


def follow(
    job: Job,
    on_line: Callable[[str], None],
    poll_interval_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Poll the job until it ends, passing each new line of its log files to `on_line`."""
    tails = [LogTail(path) for path in job.log_files()]
    while True:
        status = job.poll()
        for tail in tails:
            for line in tail.read(final=status.done):
                on_line(line)
        if status.done:
            return status
        sleep(poll_interval_s)


def supervise(
    job: Job,
    on_line: Callable[[str], None],
    poll_interval_s: float = 2.0,
) -> JobStatus:
    """`follow`, and cancel the job if following stops early for any reason: an exception,
    Ctrl-C, or the orchestrator terminating the run (a BaseException, caught by `finally`)."""
    finished = False
    try:
        status = follow(job, on_line, poll_interval_s)
        finished = True
        return status
    finally:
        if not finished:
            job.cancel()


# --------------------------------------------------------------------------------------------
# settings checks


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_names(env: Mapping[str, str]) -> dict[str, str]:
    """The variables, once their names are checked: a name is written unquoted in a script."""
    bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"invalid environment variable names: {bad}")
    return dict(env)


def _positive(settings: object, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(settings, name)}")
