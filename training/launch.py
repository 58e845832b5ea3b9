"""Launching the trainer: a torchrun command, an sbatch script, or a Kubeflow PyTorchJob.

Three backends, one shape. Each is configured by a frozen dataclass (`LocalSettings`,
`SlurmSettings`, `KubernetesSettings`); a pure function renders what it runs (an argv list, a
batch script, a manifest), and a small job handle (`LocalJob`, `SlurmJob`, `KubernetesJob`)
starts it, polls its state, names its log files and cancels it. `supervise` follows a job to
its end and cancels it when the caller is interrupted, so a stopped orchestrator never leaves
GPUs busy. Nothing here imports Dagster: the CLI and the Dagster resource share it, and the
Pipes variables reach the trainer as ordinary environment variables (`extra_env`).

Every command is an argv list run without a shell: configuration values never meet a shell
parser, except in the rendered batch script, where each one is quoted with `shlex.quote`.

The defaults describe the paper's hardware: nodes of 8 x A100 80GB, NCCL over InfiniBand.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

TRAIN_MODULE = "training.train"  # the program a launch runs unless told another
RDZV_PORT = 29500  # the head node's c10d rendezvous port on Slurm
OPERATOR_PORT = 23456  # the training operator's default MASTER_PORT ("pytorchjob-port")
GPU_RESOURCE = "nvidia.com/gpu"
# NCCL over InfiniBand: the default a multi-node A100 job wants; each is configurable.
NCCL_ENV = {"NCCL_IB_DISABLE": "0", "NCCL_DEBUG": "WARN"}


def default_torchrun() -> str:
    """The torchrun beside this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("torchrun")
    return str(beside) if beside.exists() else "torchrun"


def _program_args(config_path: str, module: str) -> list[str]:
    """`-m MODULE --config FILE`: every program a launcher runs (the trainer, the evaluation)
    takes one JSON config file."""
    return ["-m", module, "--config", config_path]


# --------------------------------------------------------------------------------------------
# local: torchrun on this machine (or one node of a hand-made multi-node run)


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
# slurm: an sbatch script with one `srun torchrun` task per node


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
) -> str:
    """The batch script. The head node, found at run time from the job's node list, hosts
    the c10d rendezvous that every node's torchrun joins; the job id names it. `extra_env`
    (the Pipes variables) is exported in the script, so the job does not depend on which
    variables the site lets sbatch propagate."""
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


# How long a job's state may stay unknown (scheduler or API server busy, restarting,
# unreachable) before the launcher gives up on it; a failed query never cancels a job.
UNKNOWN_PATIENCE_S = 600.0
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
# kubernetes: a Kubeflow PyTorchJob (training operator), one pod per node


@dataclass(frozen=True)
class Volume:
    """A PersistentVolumeClaim mounted in every pod. Mount the claim holding the data root
    at the same path as the Dagster process sees it: the config, the shards, the outputs and
    the Pipes message file are then addressed by the same paths on both sides."""

    name: str
    claim: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class KubernetesSettings:
    """A PyTorchJob: a Master pod and `nodes - 1` Worker pods, each running torchrun with
    one worker per GPU, rendezvousing (c10d) at the master's address and port, which the
    training operator puts in every pod's environment (MASTER_ADDR, MASTER_PORT)."""

    image: str = "llama-pipeline:latest"
    namespace: str = "default"
    nodes: int = 1
    gpus_per_node: int = 8
    nproc_per_node: int = 0  # 0: one per GPU (1 on CPU)
    cpu: str = ""  # per pod, requests = limits, e.g. "96"
    memory: str = ""  # per pod, e.g. "1000Gi"
    shm_size: str = "64Gi"  # /dev/shm for DataLoader workers and NCCL
    job_name: str = "llama-pretrain"
    volumes: Sequence[Volume] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    image_pull_policy: str = "IfNotPresent"
    nccl_ib_disable: bool = False
    nccl_socket_ifname: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    torchrun: str = "torchrun"  # inside the image
    context: str = ""  # kubectl context; "" renders the manifest without submitting
    kubectl: str = "kubectl"

    def __post_init__(self) -> None:
        _positive(self, "nodes")
        if self.gpus_per_node < 0 or self.nproc_per_node < 0:
            raise ValueError("gpus_per_node and nproc_per_node must be >= 0")
        if not _DNS_LABEL.fullmatch(self.job_name):
            raise ValueError(f"job_name {self.job_name!r} is not a DNS-1123 label")

    @property
    def workers_per_node(self) -> int:
        return self.nproc_per_node or self.gpus_per_node or 1


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def k8s_job_name(base: str, unique: str) -> str:
    """`base-<unique>` as a DNS-1123 label short enough for the operator's pod names."""
    suffix = re.sub(r"[^a-z0-9]", "", unique.lower())[:8]
    name = f"{base[: 39 - len(suffix)].rstrip('-')}-{suffix}" if suffix else base[:40]
    return name.strip("-")


def k8s_command(
    settings: KubernetesSettings, name: str, config_path: str, module: str = TRAIN_MODULE
) -> list[str]:
    """torchrun with the c10d rendezvous at the master pod. `$(VAR)` is expanded by the
    kubelet from the container's environment, where the operator put MASTER_ADDR/PORT."""
    return [
        settings.torchrun,
        *("--nnodes", str(settings.nodes), "--nproc-per-node", str(settings.workers_per_node)),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", "$(MASTER_ADDR):$(MASTER_PORT)"),
        *("--rdzv-id", name),
        *_program_args(config_path, module),
    ]


def render_pytorchjob(
    settings: KubernetesSettings,
    name: str,
    config_path: str,
    extra_env: Mapping[str, str] | None = None,
    module: str = TRAIN_MODULE,
) -> dict:
    """The PyTorchJob manifest as a dict (kubectl takes it as JSON)."""
    s = settings
    env = {"PYTHONUNBUFFERED": "1"} | dict(NCCL_ENV)
    env["NCCL_IB_DISABLE"] = "1" if s.nccl_ib_disable else "0"
    if s.nccl_socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = s.nccl_socket_ifname
    env |= dict(s.env) | dict(extra_env or {})
    labels = {"app.kubernetes.io/name": "llama-pipeline", "llama-pipeline/job": name}
    command = k8s_command(s, name, config_path, module)
    replicas = {"Master": _replica(s, command, env, labels, 1, master=True)}
    if s.nodes > 1:
        replicas["Worker"] = _replica(s, command, env, labels, s.nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": s.namespace, "labels": labels},
        "spec": {
            # No restarts: a failed run fails the Dagster step, which decides what to do.
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
            "pytorchReplicaSpecs": replicas,
        },
    }


def _replica(
    s: KubernetesSettings,
    command: Sequence[str],
    env: Mapping[str, str],
    labels: Mapping[str, str],
    replicas: int,
    master: bool = False,
) -> dict:
    resources: dict[str, dict[str, str]] = {"limits": {}, "requests": {}}
    if s.gpus_per_node:
        resources["limits"][GPU_RESOURCE] = str(s.gpus_per_node)
    for key, value in (("cpu", s.cpu), ("memory", s.memory)):
        if value:
            resources["limits"][key] = resources["requests"][key] = value
    mounts = [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in s.volumes
    ]
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    volumes = [
        {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}}
        for v in s.volumes
    ]
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": s.shm_size}})
    container = {
        "name": "pytorch",  # the operator looks the container up by this name
        "image": s.image,
        "imagePullPolicy": s.image_pull_policy,
        "command": list(command),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": mounts,
    }
    if any(resources.values()):
        container["resources"] = {k: v for k, v in resources.items() if v}
    if master:
        container["ports"] = [{"name": "pytorchjob-port", "containerPort": OPERATOR_PORT}]
    pod: dict = {"containers": [container], "volumes": volumes}
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    if s.service_account:
        pod["serviceAccountName"] = s.service_account
    return {
        "replicas": replicas,
        "restartPolicy": "Never",
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
    }


def kubectl_base(settings: KubernetesSettings) -> list[str]:
    return [settings.kubectl, "--context", settings.context, "--namespace", settings.namespace]


def kubectl_apply_argv(settings: KubernetesSettings, manifest_path: str) -> list[str]:
    return [*kubectl_base(settings), "apply", "-f", manifest_path]


def kubectl_get_argv(settings: KubernetesSettings, name: str) -> list[str]:
    return [*kubectl_base(settings), "get", "pytorchjob", name, "-o", "json"]


def kubectl_delete_argv(settings: KubernetesSettings, name: str) -> list[str]:
    return [*kubectl_base(settings), "delete", "pytorchjob", name, "--ignore-not-found"]


def pytorchjob_state(status: Mapping) -> str:
    """The job's state from its conditions: Succeeded or Failed once either is true, else
    the latest true condition (Created, Running, Restarting), else Pending."""
    true = [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]
    for final in ("Succeeded", "Failed"):
        if final in true:
            return final
    return true[-1] if true else "Pending"


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


class KubernetesJob:
    """An applied PyTorchJob, followed through its conditions. Its logs are the pods'
    (`kubectl logs`); rank 0 also logs through Pipes."""

    def __init__(self, settings: KubernetesSettings, name: str, manifest_path: str):
        if not settings.context:
            raise RuntimeError(
                f"no kubectl context configured: apply {manifest_path} yourself, or set "
                "the launcher's kubernetes.context"
            )
        self._settings = settings
        self.name = name
        _checked(kubectl_apply_argv(settings, manifest_path), "kubectl apply")
        self.description = f"PyTorchJob {settings.namespace}/{name} ({settings.context})"
        self._patience = _Patience()

    def poll(self) -> JobStatus:
        stdout = _query(kubectl_get_argv(self._settings, self.name))
        if self._patience.exhausted(known=stdout is not None):
            return JobStatus("UNKNOWN", done=True)
        if stdout is None:
            return JobStatus("UNKNOWN", done=False)
        state = pytorchjob_state(json.loads(stdout).get("status") or {})
        return JobStatus(state, done=state in ("Succeeded", "Failed"), ok=state == "Succeeded")

    def cancel(self) -> None:
        _run(kubectl_delete_argv(self._settings, self.name))

    def log_files(self) -> list[str]:
        return []


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
