"""The `TrainingLauncher` resource: where and how the trainer (and any other torchrun program
of this project, such as a large model's evaluation) runs, reporting through Pipes.

The resource picks a backend (`local` torchrun, `slurm` sbatch, `kubernetes` PyTorchJob) and
holds each backend's settings; `training/launch/` renders and runs the commands. Whatever the
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
    ConfigurableResource,
    Failure,
    MetadataValue,
    PipesEnvContextInjector,
    PipesExecutionResult,
    PipesFileMessageReader,
    open_pipes_session,
)

from assets.config import build, config_class, nested_config
from training.config import TrainConfig
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
from training.mesh import MeshShape

MESSAGES_FILE = "pipes_messages.jsonl"
CONFIG_FILE = "config.json"
_FAILURE_TAIL = 40  # log lines attached to a failed launch
# training/metrics.py's `progress_line`, which rank 0 also logs through Pipes.
PROGRESS_LINE = re.compile(r"step \d+/\d+ \| loss ")


LocalLauncherConfig = config_class(
    "LocalLauncherConfig", LocalSettings, doc="torchrun on the Dagster host (`LocalSettings`)."
)
SlurmLauncherConfig = config_class(
    "SlurmLauncherConfig",
    SlurmSettings,
    doc="An sbatch job (`SlurmSettings`); the defaults are nodes of 8 x A100 80GB over IB.",
)
VolumeConfig = nested_config(Volume)
KubernetesLauncherConfig = config_class(
    "KubernetesLauncherConfig",
    KubernetesSettings,
    doc="A Kubeflow PyTorchJob (`KubernetesSettings`); submitted only with a kubectl context.",
)


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
        return build(LocalSettings, self.local, **_overrides("nnodes", nodes, nproc_per_node))

    def slurm_settings(self, nodes: int = 0, nproc_per_node: int = 0) -> SlurmSettings:
        return build(SlurmSettings, self.slurm, **_overrides("nodes", nodes, nproc_per_node))

    def kubernetes_settings(self, nodes: int = 0, nproc_per_node: int = 0) -> KubernetesSettings:
        overrides = _overrides("nodes", nodes, nproc_per_node)
        return build(KubernetesSettings, self.kubernetes, **overrides)

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
            job = self._start(context, env, config_json, launch_dir, nodes, nproc_per_node, module)
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
        config_json: str,
        launch_dir: str,
        nodes: int,
        nproc_per_node: int,
        module: str,
    ) -> Job:
        config_path = os.path.join(launch_dir, CONFIG_FILE)
        if self.backend == "local":
            settings = self.local_settings(nodes, nproc_per_node)
            mesh = launcher_mesh(config_json, module, settings.nnodes, settings.nproc_per_node)
            argv = torchrun_argv(settings, config_path, module)
            context.log.info(f"command: {argv}" + (f"; mesh {mesh}" if mesh else ""))
            log_path = os.path.join(launch_dir, "torchrun.log")
            return LocalJob(argv, env, log_path, settings.grace_s)
        if self.backend == "slurm":
            settings = self.slurm_settings(nodes, nproc_per_node)
            mesh = launcher_mesh(config_json, module, settings.nodes, settings.workers_per_node)
            script = os.path.join(launch_dir, "train.sbatch")
            body = render_sbatch(settings, config_path, launch_dir, env, module, mesh)
            _write_atomic(script, body)
            context.log.info(f"sbatch script: {script}")
            return SlurmJob(settings, script, launch_dir)
        settings = self.kubernetes_settings(nodes, nproc_per_node)
        mesh = launcher_mesh(config_json, module, settings.nodes, settings.workers_per_node)
        name = k8s_job_name(settings.job_name, context.run.run_id)
        manifest = os.path.join(launch_dir, "pytorchjob.json")
        document = render_pytorchjob(settings, name, config_path, env, module, mesh)
        _write_atomic(manifest, json.dumps(document, indent=2) + "\n")
        context.log.info(f"PyTorchJob manifest: {manifest}")
        return KubernetesJob(settings, name, manifest)


def launcher_mesh(config_json: str, module: str, nodes: int, per_node: int) -> MeshShape | None:
    """The trainer's mesh on this job's nodes x processes (None for another program), so that a
    TP degree the nodes cannot hold fails here, before anything is queued."""
    if module != TRAIN_MODULE:
        return None
    config = TrainConfig.from_json(config_json)
    return MeshShape.of_job(nodes, per_node, config.tensor_parallel, config.data_parallel_replicate)


def _overrides(nodes_field: str, nodes: int, nproc_per_node: int) -> dict[str, int]:
    """One run's `nodes`/`nproc_per_node` over the backend's settings (0: not overridden)."""
    given = {nodes_field: nodes, "nproc_per_node": nproc_per_node}
    return {name: value for name, value in given.items() if value}


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
