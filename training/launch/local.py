"""The local backend: torchrun on this machine (or one node of a hand-made multi-node run),
as a child process in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training.launch.common import (
    TRAIN_MODULE,
    JobStatus,
    _positive,
    _program_args,
    default_torchrun,
)


@dataclass(frozen=True)
class LocalSettings:
    """torchrun on this machine. One node: `--standalone`. Several nodes (the same command on
    each, with its own `node_rank`): a c10d rendezvous at `rdzv_endpoint` (host:port)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = "llama-pretrain"
    torchrun: str = ""  # "" = default_torchrun()
    grace_s: float = 60.0  # after SIGTERM (the trainer checkpoints), before SIGKILL

    def __post_init__(self) -> None:
        _positive(self, "nproc_per_node", "nnodes")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("a multi-node local run needs rdzv_endpoint (host:port)")


def torchrun_argv(
    settings: LocalSettings, config_path: str, module: str = TRAIN_MODULE
) -> list[str]:
    """`torchrun --standalone --nproc-per-node N -m training.train --config FILE`, or the
    multi-node form with an explicit rendezvous."""
    argv = [settings.torchrun or default_torchrun()]
    if settings.nnodes == 1 and not settings.rdzv_endpoint:
        argv += ["--standalone"]
    else:
        argv += ["--nnodes", str(settings.nnodes), "--node-rank", str(settings.node_rank)]
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", settings.rdzv_endpoint]
        argv += ["--rdzv-id", settings.rdzv_id]
    argv += ["--nproc-per-node", str(settings.nproc_per_node)]
    return argv + _program_args(config_path, module)


# --------------------------------------------------------------------------------------------
# the job handle


class LocalJob:
    """torchrun as a child process in its own process group, output into a log file."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: str, grace_s: float):
        self.description = f"torchrun (local), log {log_path}"
        self._log_path = log_path
        self._grace_s = grace_s
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                list(argv),
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one group: torchrun and its workers
            )
        self.pid = self._process.pid

    def poll(self) -> JobStatus:
        code = self._process.poll()
        if code is None:
            return JobStatus("RUNNING", done=False)
        return JobStatus(f"EXITED {code}", done=True, ok=code == 0)

    def cancel(self) -> None:
        """SIGTERM to the group (the trainer writes a checkpoint), SIGKILL after the grace."""
        if self._process.poll() is not None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self._process.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self._process.wait()

    def log_files(self) -> list[str]:
        return [self._log_path]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
