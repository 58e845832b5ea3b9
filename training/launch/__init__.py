"""Launching the trainer: a torchrun command, an sbatch script, or a Kubeflow PyTorchJob.

Three backends, one shape, one module each (`local`, `slurm`, `kubernetes`), and `common` for
what they share. Each backend is configured by a frozen dataclass (`LocalSettings`,
`SlurmSettings`, `KubernetesSettings`); a pure function renders what it runs (an argv list, a
batch script, a manifest), and a small job handle (`LocalJob`, `SlurmJob`, `KubernetesJob`)
starts it, polls its state, names its log files and cancels it. `supervise` follows a job to
its end and cancels it when the caller is interrupted, so a stopped orchestrator never leaves
GPUs busy. Nothing here imports Dagster: the CLI and the Dagster resource share it, and the
Pipes variables reach the trainer as ordinary environment variables (`extra_env`).

Every command is an argv list run without a shell: configuration values never meet a shell
parser, except in the rendered batch script, where each one is quoted with `shlex.quote`.

The defaults describe the paper's hardware: nodes of 8 x A100 80GB, NCCL over InfiniBand.

Callers import from here. The patience for a job whose state cannot be read,
`common.UNKNOWN_PATIENCE_S`, is read at call time from `training.launch.common`: change it
there, not on this package.
"""

from training.launch.common import (
    NCCL_ENV,
    TRAIN_MODULE,
    Job,
    JobStatus,
    LogTail,
    default_torchrun,
    follow,
    supervise,
)
from training.launch.kubernetes import (
    GPU_RESOURCE,
    MESH_ANNOTATION,
    OPERATOR_PORT,
    KubernetesJob,
    KubernetesSettings,
    Volume,
    k8s_command,
    k8s_job_name,
    kubectl_apply_argv,
    kubectl_base,
    kubectl_delete_argv,
    kubectl_get_argv,
    pytorchjob_state,
    render_pytorchjob,
)
from training.launch.local import LocalJob, LocalSettings, torchrun_argv
from training.launch.slurm import (
    RDZV_PORT,
    SLURM_ACTIVE,
    SlurmJob,
    SlurmSettings,
    parse_sbatch_output,
    render_sbatch,
    sacct_argv,
    sbatch_argv,
    scancel_argv,
    slurm_env,
    slurm_log_paths,
    squeue_argv,
)

__all__ = [
    "GPU_RESOURCE",
    "MESH_ANNOTATION",
    "NCCL_ENV",
    "OPERATOR_PORT",
    "RDZV_PORT",
    "SLURM_ACTIVE",
    "TRAIN_MODULE",
    "Job",
    "JobStatus",
    "KubernetesJob",
    "KubernetesSettings",
    "LocalJob",
    "LocalSettings",
    "LogTail",
    "SlurmJob",
    "SlurmSettings",
    "Volume",
    "default_torchrun",
    "follow",
    "k8s_command",
    "k8s_job_name",
    "kubectl_apply_argv",
    "kubectl_base",
    "kubectl_delete_argv",
    "kubectl_get_argv",
    "parse_sbatch_output",
    "pytorchjob_state",
    "render_pytorchjob",
    "render_sbatch",
    "sacct_argv",
    "sbatch_argv",
    "scancel_argv",
    "slurm_env",
    "slurm_log_paths",
    "squeue_argv",
    "supervise",
    "torchrun_argv",
]
