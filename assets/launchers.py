"""The `TrainingLauncher` resource: where and how the trainer (and any other torchrun program
of this project, such as a large model's evaluation) runs, reporting through Pipes.

The resource picks a backend (`local` torchrun, `slurm` sbatch, `kubernetes` PyTorchJob) and
holds each backend's settings; `training/launch.py` renders and runs the commands. Whatever the
backend, Dagster talks to the trainer the same way: the Pipes context travels in environment
variables (`PipesEnvContextInjector`) and rank 0 appends its messages to a file in the run's
launch directory (`PipesFileMessageReader`). That file is on the data root, which a cluster
mounts on every node, so the same channel works from a laptop, a Slurm login node or a pod.
The message file is kept after the run: it is the record of what the trainer reported.
"""

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dagster import (
    AssetExecutionContext,
    Config,
    ConfigurableResource,
    Failure,
    MetadataValue,
    PipesEnvContextInjector,
    PipesExecutionResult,
    PipesFileMessageReader,
    open_pipes_session,
)

from training.launch import (
    TRAIN_MODULE,
    Job,
    JobStatus,
    KubernetesJob,
    KubernetesSettings,
    LocalJob,
    LocalSettings,
    LogTail,
    SlurmJob,
    SlurmSettings,
    Volume,
    k8s_job_name,
    render_pytorchjob,
    render_sbatch,
    supervise,
    torchrun_argv,
)

MESSAGES_FILE = "pipes_messages.jsonl"
CONFIG_FILE = "config.json"
_FAILURE_TAIL = 40  # log lines attached to a failed launch
# training/metrics.py's `progress_line`, which rank 0 also logs through Pipes.
PROGRESS_LINE = re.compile(r"step \d+/\d+ \| loss ")


class LocalLauncherConfig(Config):
    """torchrun on the Dagster host (`LocalSettings`)."""

    nproc_per_node: int = LocalSettings.nproc_per_node
    nnodes: int = LocalSettings.nnodes
    node_rank: int = LocalSettings.node_rank
    rdzv_endpoint: str = LocalSettings.rdzv_endpoint
    rdzv_id: str = LocalSettings.rdzv_id
    torchrun: str = LocalSettings.torchrun
    grace_s: float = LocalSettings.grace_s


class SlurmLauncherConfig(Config):
    """An sbatch job (`SlurmSettings`); the defaults are nodes of 8 x A100 80GB over IB."""

    nodes: int = SlurmSettings.nodes
    gpus_per_node: int = SlurmSettings.gpus_per_node
    nproc_per_node: int = SlurmSettings.nproc_per_node
    cpus_per_task: int = SlurmSettings.cpus_per_task
    mem: str = SlurmSettings.mem
    time: str = SlurmSettings.time
    partition: str = SlurmSettings.partition
    account: str = SlurmSettings.account
    qos: str = SlurmSettings.qos
    job_name: str = SlurmSettings.job_name
    exclusive: bool = SlurmSettings.exclusive
    signal_before_end_s: int = SlurmSettings.signal_before_end_s
    nccl_ib_disable: bool = SlurmSettings.nccl_ib_disable
    nccl_socket_ifname: str = SlurmSettings.nccl_socket_ifname
    rdzv_port: int = SlurmSettings.rdzv_port
    env: dict[str, str] = {}
    setup: list[str] = []
    sbatch_options: list[str] = []
    torchrun: str = SlurmSettings.torchrun
    workdir: str = SlurmSettings.workdir


class VolumeConfig(Config):
    name: str
    claim: str
    mount_path: str
    read_only: bool = False


class KubernetesLauncherConfig(Config):
    """A Kubeflow PyTorchJob (`KubernetesSettings`); submitted only with a kubectl context."""

    image: str = KubernetesSettings.image
    namespace: str = KubernetesSettings.namespace
    nodes: int = KubernetesSettings.nodes
    gpus_per_node: int = KubernetesSettings.gpus_per_node
    nproc_per_node: int = KubernetesSettings.nproc_per_node
    cpu: str = KubernetesSettings.cpu
    memory: str = KubernetesSettings.memory
    shm_size: str = KubernetesSettings.shm_size
    job_name: str = KubernetesSettings.job_name
    volumes: list[VolumeConfig] = []
    node_selector: dict[str, str] = {}
    service_account: str = KubernetesSettings.service_account
    image_pull_policy: str = KubernetesSettings.image_pull_policy
    nccl_ib_disable: bool = KubernetesSettings.nccl_ib_disable
    nccl_socket_ifname: str = KubernetesSettings.nccl_socket_ifname
    env: dict[str, str] = {}
    torchrun: str = KubernetesSettings.torchrun
    context: str = KubernetesSettings.context


@dataclass(frozen=True)
class Launch:
    """One launch of the trainer: what ran, how it ended, what rank 0 reported."""

    backend: str
    description: str
    launch_dir: str
    status: JobStatus
    reported: Sequence[PipesExecutionResult]
    opened_channels: int


class TrainingLauncher(ConfigurableResource):
    """Runs `python -m MODULE --config FILE` under torchrun on the chosen backend (the trainer,
    `training.train`, unless told another) and follows it to its end: its log files stream into
    the Dagster log, and an interrupted or failed step cancels the job (SIGTERM to torchrun,
    `scancel`, or deleting the PyTorchJob). `nodes`/`nproc_per_node` passed to `run` override
    the backend's settings for one run."""

    backend: Literal["local", "slurm", "kubernetes"] = "local"
    local: LocalLauncherConfig = LocalLauncherConfig()
    slurm: SlurmLauncherConfig = SlurmLauncherConfig()
    kubernetes: KubernetesLauncherConfig = KubernetesLauncherConfig()
    poll_interval_s: float = 2.0

    def local_settings(self, nodes: int = 0, nproc_per_node: int = 0) -> LocalSettings:
        values = self.local.model_dump()
        if nodes:
            values["nnodes"] = nodes
        if nproc_per_node:
            values["nproc_per_node"] = nproc_per_node
        return LocalSettings(**values)

    def slurm_settings(self, nodes: int = 0, nproc_per_node: int = 0) -> SlurmSettings:
        values = _overridden(self.slurm.model_dump(), nodes, nproc_per_node)
        values["setup"] = tuple(values["setup"])
        values["sbatch_options"] = tuple(values["sbatch_options"])
        return SlurmSettings(**values)

    def kubernetes_settings(self, nodes: int = 0, nproc_per_node: int = 0) -> KubernetesSettings:
        values = _overridden(self.kubernetes.model_dump(), nodes, nproc_per_node)
        values["volumes"] = tuple(Volume(**v) for v in values["volumes"])
        return KubernetesSettings(**values)

    def run(
        self,
        context: AssetExecutionContext,
        config_json: str,
        launch_dir: str,
        nodes: int = 0,
        nproc_per_node: int = 0,
        module: str = TRAIN_MODULE,
    ) -> Launch:
        """Write the program's config into `launch_dir`, launch, follow, and return what
        happened; a job that did not complete raises `Failure` with the end of its logs."""
        os.makedirs(launch_dir, exist_ok=True)
        config_path = os.path.join(launch_dir, CONFIG_FILE)
        _write_atomic(config_path, config_json)
        reader = PipesFileMessageReader(os.path.join(launch_dir, MESSAGES_FILE), cleanup_file=False)
        with open_pipes_session(context, PipesEnvContextInjector(), reader) as session:
            env = dict(session.get_bootstrap_env_vars())
            job = self._start(context, env, config_path, launch_dir, nodes, nproc_per_node, module)
            context.log.info(f"launched {job.description}")
            log = _log_line(
                context, self.backend, lambda: session.message_handler.received_opened_message
            )
            try:
                status = supervise(job, log, self.poll_interval_s)
            except BaseException:  # interrupted or failed while following: supervise cancelled
                context.log.warning(f"cancelled {job.description}")
                raise
        context.log.info(f"{job.description} ended: {status.state}")
        if not status.ok:
            raise Failure(
                description=f"{module} as {job.description} did not complete: {status.state} "
                "(the end of its logs is in log_tail)",
                metadata={"log_tail": MetadataValue.md(_tail_md(job.log_files()))},
            )
        return Launch(
            backend=self.backend,
            description=job.description,
            launch_dir=launch_dir,
            status=status,
            reported=session.get_reported_results(),
            opened_channels=count_opened(os.path.join(launch_dir, MESSAGES_FILE)),
        )

    def _start(
        self,
        context: AssetExecutionContext,
        env: Mapping[str, str],
        config_path: str,
        launch_dir: str,
        nodes: int,
        nproc_per_node: int,
        module: str,
    ) -> Job:
        if self.backend == "local":
            settings = self.local_settings(nodes, nproc_per_node)
            argv = torchrun_argv(settings, config_path, module)
            context.log.info(f"command: {argv}")
            log_path = os.path.join(launch_dir, "torchrun.log")
            return LocalJob(argv, env, log_path, settings.grace_s)
        if self.backend == "slurm":
            settings = self.slurm_settings(nodes, nproc_per_node)
            script = os.path.join(launch_dir, "train.sbatch")
            _write_atomic(script, render_sbatch(settings, config_path, launch_dir, env, module))
            context.log.info(f"sbatch script: {script}")
            return SlurmJob(settings, script, launch_dir)
        settings = self.kubernetes_settings(nodes, nproc_per_node)
        name = k8s_job_name(settings.job_name, context.run.run_id)
        manifest = os.path.join(launch_dir, "pytorchjob.json")
        document = render_pytorchjob(settings, name, config_path, env, module)
        _write_atomic(manifest, json.dumps(document, indent=2) + "\n")
        context.log.info(f"PyTorchJob manifest: {manifest}")
        return KubernetesJob(settings, name, manifest)


def _overridden(values: dict, nodes: int, nproc_per_node: int) -> dict:
    if nodes:
        values["nodes"] = nodes
    if nproc_per_node:
        values["nproc_per_node"] = nproc_per_node
    return values


def _log_line(
    context: AssetExecutionContext, backend: str, piped: Callable[[], bool]
) -> Callable[[str], None]:
    """Forward a job log line, except the progress lines rank 0 already sent through Pipes."""

    def log(line: str) -> None:
        if line.strip() and not (PROGRESS_LINE.match(line) and piped()):
            context.log.info(f"[{backend}] {line}")

    return log


def _tail_md(paths: Sequence[str]) -> str:
    parts = []
    for path in paths:
        lines = LogTail(path).read(final=True)[-_FAILURE_TAIL:]
        parts.append(f"`{path}`\n\n```\n" + "\n".join(lines) + "\n```")
    return "\n\n".join(parts) or "(no log files)"


def count_opened(messages_path: str) -> int:
    """How many writers opened the Pipes channel: 1 when only rank 0 did."""
    try:
        with open(messages_path, encoding="utf-8") as stream:
            return sum(
                1 for line in stream if line.strip() and json.loads(line)["method"] == "opened"
            )
    except FileNotFoundError:
        return 0


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(tmp, path)
