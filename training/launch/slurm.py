"""The Slurm backend: an sbatch script with one `srun torchrun` task per node, followed with
squeue (sacct once squeue has forgotten the job).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.launch.common import (
    NCCL_ENV,
    TRAIN_MODULE,
    JobStatus,
    _checked,
    _env_names,
    _Patience,
    _positive,
    _program_args,
    _query,
    _run,
    default_torchrun,
)

if TYPE_CHECKING:
    from training.mesh import MeshShape

RDZV_PORT = 29500  # the head node's c10d rendezvous port on Slurm


@dataclass(frozen=True)
class SlurmSettings:
    """One Slurm job: `nodes` nodes, one task each, and that task's torchrun starts one
    worker per GPU. `gpus_per_node=0` is a CPU job (`nproc_per_node` workers per node)."""

    nodes: int = 1
    gpus_per_node: int = 8  # A100 80GB nodes, as in the paper
    nproc_per_node: int = 0  # 0: one per GPU (1 on CPU)
    cpus_per_task: int = 64  # the whole node's share for torchrun and its workers
    mem: str = ""  # e.g. "0" (all of the node's memory); "" leaves the site default
    time: str = "48:00:00"  # a resubmitted job resumes from the latest checkpoint
    partition: str = ""
    account: str = ""
    qos: str = ""
    job_name: str = "llama-pretrain"
    exclusive: bool = True
    signal_before_end_s: int = 120  # SIGTERM this long before the time limit: checkpoint
    nccl_ib_disable: bool = False  # NCCL over InfiniBand unless disabled
    nccl_socket_ifname: str = ""  # bootstrap/socket interface, e.g. "ib0" or "^lo,docker0"
    rdzv_port: int = RDZV_PORT
    env: Mapping[str, str] = field(default_factory=dict)  # more exports, e.g. NCCL_IB_HCA
    setup: Sequence[str] = ()  # shell lines before srun: `module load ...`, `source .../activate`
    sbatch_options: Sequence[str] = ()  # more `#SBATCH` options, e.g. "--constraint=a100"
    torchrun: str = ""  # "" = default_torchrun(): the venv on the shared filesystem
    workdir: str = ""  # the job's --chdir; "" = where sbatch runs
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    sacct: str = "sacct"
    scancel: str = "scancel"

    def __post_init__(self) -> None:
        _positive(self, "nodes", "cpus_per_task")
        if self.gpus_per_node < 0 or self.nproc_per_node < 0:
            raise ValueError("gpus_per_node and nproc_per_node must be >= 0")
        _env_names(self.env)

    @property
    def workers_per_node(self) -> int:
        return self.nproc_per_node or self.gpus_per_node or 1


def slurm_log_paths(log_dir: str) -> tuple[str, str]:
    """The job's stdout and stderr files, `%j` standing for the job id."""
    return os.path.join(log_dir, "slurm-%j.out"), os.path.join(log_dir, "slurm-%j.err")


def render_sbatch(
    settings: SlurmSettings,
    config_path: str,
    log_dir: str,
    extra_env: Mapping[str, str] | None = None,
    module: str = TRAIN_MODULE,
    mesh: MeshShape | None = None,
) -> str:
    """The batch script. The head node, found at run time from the job's node list, hosts
    the c10d rendezvous that every node's torchrun joins; the job id names it. `extra_env`
    (the Pipes variables) is exported in the script, so the job does not depend on which
    variables the site lets sbatch propagate. `mesh`, the layout the trainer will build from
    the job's nodes x GPUs, is written into the script and its log."""
    s = settings
    stdout, stderr = slurm_log_paths(log_dir)
    options = [f"--job-name={s.job_name}", f"--nodes={s.nodes}", "--ntasks-per-node=1"]
    if s.gpus_per_node:
        options.append(f"--gpus-per-node={s.gpus_per_node}")
    options += [f"--cpus-per-task={s.cpus_per_task}", f"--time={s.time}"]
    options += [f"--{name}={value}" for name, value in _optional(s)]
    options += [f"--output={stdout}", f"--error={stderr}"]
    if s.exclusive:
        options.append("--exclusive")
    if s.signal_before_end_s:
        options.append(f"--signal=TERM@{s.signal_before_end_s}")
    options += list(s.sbatch_options)
    env = slurm_env(s) | _env_names(extra_env or {})
    torchrun = [
        s.torchrun or default_torchrun(),
        *("--nnodes", '"$SLURM_NNODES"', "--nproc-per-node", str(s.workers_per_node)),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", f'"$head_node:{s.rdzv_port}"'),
        *("--rdzv-id", '"$SLURM_JOB_ID"'),
    ]
    srun = ["srun", "--ntasks-per-node=1", f"--cpus-per-task={s.cpus_per_task}"]
    srun += ["--kill-on-bad-exit=1"]
    program = [shlex.quote(a) for a in _program_args(config_path, module)]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {shlex.quote(option)}" for option in options),
        "set -euo pipefail",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())),
        *s.setup,
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        'echo "llama-pretrain: job $SLURM_JOB_ID on $SLURM_NNODES node(s), head $head_node"',
        *([f'echo "llama-pretrain: mesh {mesh}"'] if mesh else []),
        " ".join([*srun, shlex.quote(torchrun[0]), *torchrun[1:], *program]),
    ]
    return "\n".join(lines) + "\n"


def _optional(s: SlurmSettings) -> list[tuple[str, str]]:
    values = [("partition", s.partition), ("account", s.account), ("qos", s.qos)]
    values += [("mem", s.mem), ("chdir", s.workdir)]
    return [(name, value) for name, value in values if value]


def slurm_env(settings: SlurmSettings) -> dict[str, str]:
    """NCCL's transport settings: InfiniBand on, an optional socket interface."""
    env = dict(NCCL_ENV, NCCL_IB_DISABLE="1" if settings.nccl_ib_disable else "0")
    if settings.nccl_socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = settings.nccl_socket_ifname
    return env | dict(settings.env)


def sbatch_argv(settings: SlurmSettings, script_path: str) -> list[str]:
    return [settings.sbatch, "--parsable", script_path]


def parse_sbatch_output(stdout: str) -> str:
    """`sbatch --parsable` prints `jobid` or `jobid;cluster`."""
    job_id = stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise RuntimeError(f"sbatch printed no job id: {stdout!r}")
    return job_id


def squeue_argv(settings: SlurmSettings, job_id: str) -> list[str]:
    return [settings.squeue, "--noheader", "--states=all", "--jobs", job_id, "--format=%T"]


def sacct_argv(settings: SlurmSettings, job_id: str) -> list[str]:
    return [settings.sacct, "--noheader", "--parsable2", "-X", "--jobs", job_id, "-o", "State"]


def scancel_argv(settings: SlurmSettings, job_id: str) -> list[str]:
    return [settings.scancel, job_id]


SLURM_ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
}


# --------------------------------------------------------------------------------------------
# the job handle


class SlurmJob:
    """A submitted batch job, followed with squeue (sacct once squeue has forgotten it)."""

    def __init__(self, settings: SlurmSettings, script_path: str, log_dir: str):
        self._settings = settings
        self.job_id = parse_sbatch_output(_checked(sbatch_argv(settings, script_path), "sbatch"))
        self.description = f"Slurm job {self.job_id}"
        self._logs = [p.replace("%j", self.job_id) for p in slurm_log_paths(log_dir)]
        self._patience = _Patience()

    def state(self) -> str:
        """squeue's state, or sacct's once squeue has forgotten the job (MinJobAge)."""
        for argv in (squeue_argv, sacct_argv):
            words = (_query(argv(self._settings, self.job_id)) or "").split()
            if words:
                return words[0].rstrip("+")  # sacct: "CANCELLED by 0", "FAILED+"
        return "UNKNOWN"

    def poll(self) -> JobStatus:
        state = self.state()
        if state == "UNKNOWN" and not self._patience.exhausted(known=False):
            return JobStatus(state, done=False)  # slurmctld busy or restarting: ask again
        self._patience.exhausted(known=True)
        if state in SLURM_ACTIVE:
            return JobStatus(state, done=False)
        return JobStatus(state, done=True, ok=state == "COMPLETED")

    def cancel(self) -> None:
        _run(scancel_argv(self._settings, self.job_id))

    def log_files(self) -> list[str]:
        return list(self._logs)
