"""The Kubernetes backend: a Kubeflow PyTorchJob (training operator), one pod per node,
applied and followed with kubectl.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.launch.common import (
    NCCL_ENV,
    TRAIN_MODULE,
    JobStatus,
    _checked,
    _Patience,
    _positive,
    _program_args,
    _query,
    _run,
)

if TYPE_CHECKING:
    from training.mesh import MeshShape

OPERATOR_PORT = 23456  # the training operator's default MASTER_PORT ("pytorchjob-port")
GPU_RESOURCE = "nvidia.com/gpu"
MESH_ANNOTATION = "llama-pipeline/mesh"  # the trainer's mesh, as `training.mesh` lays it out


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
    mesh: MeshShape | None = None,
) -> dict:
    """The PyTorchJob manifest as a dict (kubectl takes it as JSON). `mesh`, the layout the
    trainer will build from the job's nodes x GPUs, is recorded as an annotation."""
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
        "metadata": {
            "name": name,
            "namespace": s.namespace,
            "labels": labels,
            **({"annotations": {MESH_ANNOTATION: str(mesh)}} if mesh else {}),
        },
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
# the job handle


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
