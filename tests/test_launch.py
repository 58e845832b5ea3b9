"""The launchers' rendered commands, scripts and manifests, and the job handles' lifecycle.

Fast: nothing here trains. The sbatch script is executed by bash with stand-ins for `srun` and
`scontrol`, so its quoting and variable expansion are checked, not only its text.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from dagster import AssetKey

from assets.launchers import (
    PROGRESS_LINE,
    KubernetesLauncherConfig,
    TrainingLauncher,
    VolumeConfig,
    launcher_mesh,
)
from assets.training import loss_decreased
from pipelines.definitions import defs
from training.config import TrainConfig
from training.launch import (
    GPU_RESOURCE,
    MESH_ANNOTATION,
    TRAIN_MODULE,
    JobStatus,
    KubernetesJob,
    KubernetesSettings,
    LocalJob,
    LocalSettings,
    LogTail,
    SlurmJob,
    SlurmSettings,
    Volume,
    follow,
    k8s_job_name,
    parse_sbatch_output,
    pytorchjob_state,
    render_pytorchjob,
    render_sbatch,
    supervise,
    torchrun_argv,
)
from training.launch import common as launch_common

CONFIG = "/shared/runs/tiny/launches/r1/config.json"
PIPES = {"DAGSTER_PIPES_CONTEXT": "eJyNkN2O+/=", "DAGSTER_PIPES_MESSAGES": 'it\'s "quoted" $HOME'}
TRAIN = ["-m", "training.train", "--config", CONFIG]


# --- local ----------------------------------------------------------------------------------


def test_torchrun_single_node_is_standalone():
    argv = torchrun_argv(LocalSettings(nproc_per_node=2, torchrun="torchrun"), CONFIG)
    assert argv == ["torchrun", "--standalone", "--nproc-per-node", "2", *TRAIN]


def test_torchrun_multi_node_uses_a_c10d_rendezvous():
    settings = LocalSettings(
        nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="head:29500", torchrun="torchrun"
    )
    argv = torchrun_argv(settings, CONFIG)
    assert argv[:3] == ["torchrun", "--nnodes", "2"]
    assert "--standalone" not in argv
    pairs = dict(zip(argv[1:-4:2], argv[2:-4:2], strict=True))
    assert pairs == {
        "--nnodes": "2",
        "--node-rank": "1",
        "--rdzv-backend": "c10d",
        "--rdzv-endpoint": "head:29500",
        "--rdzv-id": "llama-pretrain",
        "--nproc-per-node": "8",
    }
    assert argv[-4:] == TRAIN
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        LocalSettings(nnodes=2)


def test_every_backend_runs_the_program_it_is_given():
    """The evaluation is launched like the trainer: only `-m MODULE` changes."""
    program = ["-m", "training.evaluation.run", "--config", CONFIG]
    local = torchrun_argv(LocalSettings(torchrun="torchrun"), CONFIG, "training.evaluation.run")
    assert local[-4:] == program
    script = render_sbatch(SlurmSettings(), CONFIG, "/logs", module="training.evaluation.run")
    assert script.rstrip().endswith(" ".join(program))
    manifest = render_pytorchjob(
        KubernetesSettings(nodes=2), "eval-1", CONFIG, module="training.evaluation.run"
    )
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["containers"][0]["command"][-4:] == program


def test_default_torchrun_is_the_venvs():
    argv = torchrun_argv(LocalSettings(), CONFIG)
    assert argv[0] == str(Path(sys.executable).with_name("torchrun"))


# --- slurm ----------------------------------------------------------------------------------


def _sbatch_options(script: str) -> dict[str, str]:
    options = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = shlex.split(line[len("#SBATCH ") :])[0].partition("=")
            options[name] = value
    return options


def test_sbatch_script_defaults_are_the_papers_hardware(tmp_path):
    script = render_sbatch(SlurmSettings(partition="gpu", torchrun="torchrun"), CONFIG, "/logs")
    options = _sbatch_options(script)
    assert options == {
        "--job-name": "llama-pretrain",
        "--nodes": "1",
        "--ntasks-per-node": "1",
        "--gpus-per-node": "8",
        "--cpus-per-task": "64",
        "--time": "48:00:00",
        "--partition": "gpu",
        "--output": "/logs/slurm-%j.out",
        "--error": "/logs/slurm-%j.err",
        "--exclusive": "",
        "--signal": "TERM@120",
    }
    assert script.startswith("#!/bin/bash\n")
    assert "export NCCL_IB_DISABLE=0\n" in script
    assert "NCCL_SOCKET_IFNAME" not in script
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' in script
    srun = shlex.split(script.splitlines()[-1])
    assert srun[:4] == ["srun", "--ntasks-per-node=1", "--cpus-per-task=64", "--kill-on-bad-exit=1"]
    assert srun[4:] == [
        "torchrun",
        *("--nnodes", "$SLURM_NNODES", "--nproc-per-node", "8"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", "$head_node:29500"),
        *("--rdzv-id", "$SLURM_JOB_ID"),
        *TRAIN,
    ]


def test_sbatch_script_on_cpu_omits_gpus_and_sets_what_is_configured():
    settings = SlurmSettings(
        nodes=2,
        gpus_per_node=0,
        nproc_per_node=2,
        cpus_per_task=4,
        account="llm",
        qos="high",
        mem="0",
        exclusive=False,
        nccl_socket_ifname="ib0",
        nccl_ib_disable=True,
        env={"NCCL_IB_HCA": "mlx5"},
        setup=["module load cuda/12.4"],
        sbatch_options=["--constraint=a100"],
        workdir="/project",
    )
    script = render_sbatch(settings, CONFIG, "/logs", PIPES)
    options = _sbatch_options(script)
    assert "--gpus-per-node" not in options and "--exclusive" not in options
    assert options["--nodes"] == "2" and options["--cpus-per-task"] == "4"
    assert options["--account"] == "llm" and options["--qos"] == "high"
    assert options["--mem"] == "0" and options["--chdir"] == "/project"
    assert options["--constraint"] == "a100"
    assert "export NCCL_SOCKET_IFNAME=ib0\n" in script
    assert "export NCCL_IB_DISABLE=1\n" in script and "export NCCL_IB_HCA=mlx5\n" in script
    assert "\nmodule load cuda/12.4\n" in script
    assert "--nproc-per-node 2" in script


def test_sbatch_script_runs_srun_torchrun_with_the_head_node(tmp_path):
    """bash runs the script with stand-ins for scontrol and srun: every node's torchrun gets
    the first host of the node list, the job id, and the Pipes variables intact."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-017\\ngpu-018\\n'\n")
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': {k: os.environ.get(k) for k in "
        f"{sorted(PIPES)!r} + ['NCCL_IB_DISABLE']}}}}))\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = tmp_path / "train.sbatch"
    script.write_text(render_sbatch(SlurmSettings(torchrun="torchrun"), CONFIG, "/logs", PIPES))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-[017-018]"}
    env |= {"SLURM_NNODES": "2", "SLURM_JOB_ID": "4242"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    header, ran = done.stdout.splitlines()
    assert header == "llama-pretrain: job 4242 on 2 node(s), head gpu-017"
    ran = json.loads(ran)
    assert ran["argv"][3:] == [
        "torchrun",
        *("--nnodes", "2", "--nproc-per-node", "8"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu-017:29500"),
        *("--rdzv-id", "4242"),
        *TRAIN,
    ]
    assert ran["env"] == PIPES | {"NCCL_IB_DISABLE": "0"}


def test_sbatch_output_and_bad_settings():
    assert parse_sbatch_output("1234\n") == "1234"
    assert parse_sbatch_output("1234;cluster-a\n") == "1234"
    with pytest.raises(RuntimeError):
        parse_sbatch_output("sbatch: error: invalid partition")
    with pytest.raises(ValueError):
        SlurmSettings(nodes=0)


# --- kubernetes -----------------------------------------------------------------------------

# The part of the PyTorchJob CRD (kubeflow.org/v1) and of the core Pod spec the launcher
# relies on, as a JSON schema for jsonschema; the assertions below also check the fields that
# matter one by one.
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?|m)?$"}
_CONTAINER = {
    "type": "object",
    "required": ["name", "image", "command"],
    "properties": {
        "name": {"const": "pytorch"},
        "image": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "env": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                "additionalProperties": False,
            },
        },
        "resources": {
            "type": "object",
            "properties": {
                "limits": {"type": "object", "additionalProperties": _QUANTITY},
                "requests": {"type": "object", "additionalProperties": _QUANTITY},
            },
            "additionalProperties": False,
        },
        "volumeMounts": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "mountPath"]},
        },
        "ports": {
            "type": "array",
            "items": {"type": "object", "required": ["containerPort"]},
        },
    },
}
_REPLICA = {
    "type": "object",
    "required": ["replicas", "template"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 1},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": {
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "containers": {"type": "array", "items": _CONTAINER, "minItems": 1},
                        "volumes": {
                            "type": "array",
                            "items": {"type": "object", "required": ["name"]},
                        },
                    },
                }
            },
        },
    },
}
PYTORCHJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "PyTorchJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                "namespace": {"type": "string"},
            },
        },
        "spec": {
            "type": "object",
            "required": ["pytorchReplicaSpecs"],
            "properties": {
                "runPolicy": {"type": "object"},
                "pytorchReplicaSpecs": {
                    "type": "object",
                    "required": ["Master"],
                    "properties": {"Master": _REPLICA, "Worker": _REPLICA},
                    "additionalProperties": False,
                },
            },
        },
    },
}


def _k8s(**changes) -> KubernetesSettings:
    base = {
        "image": "registry.example/llama-pipeline:1",
        "namespace": "llm",
        "nodes": 4,
        "cpu": "96",
        "memory": "1000Gi",
        "volumes": (Volume("data", "llama-data", "/shared"),),
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    }
    return KubernetesSettings(**(base | changes))


def _check_schema(manifest: dict) -> None:
    jsonschema.validate(manifest, PYTORCHJOB_SCHEMA)


def test_pytorchjob_manifest_has_master_workers_gpus_env_and_volumes():
    name = k8s_job_name("llama-pretrain", "9080b455-1234-43d2")
    manifest = render_pytorchjob(_k8s(), name, CONFIG, PIPES)
    manifest = json.loads(json.dumps(manifest))  # what kubectl receives: plain JSON
    _check_schema(manifest)
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "PyTorchJob"
    assert manifest["metadata"]["name"] == name == "llama-pretrain-9080b455"
    assert manifest["metadata"]["namespace"] == "llm"
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    for role, spec in replicas.items():
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"
        assert container["image"] == "registry.example/llama-pipeline:1"
        assert container["resources"]["limits"] == {
            GPU_RESOURCE: "8",
            "cpu": "96",
            "memory": "1000Gi",
        }
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env.items() >= (PIPES | {"NCCL_IB_DISABLE": "0"}).items()
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes  # every mount has its volume
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "llama-data"
        assert {"name": "data", "mountPath": "/shared", "readOnly": False} in container[
            "volumeMounts"
        ]
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        assert container["command"] == [
            "torchrun",
            *("--nnodes", "4", "--nproc-per-node", "8"),
            *("--rdzv-backend", "c10d", "--rdzv-endpoint", "$(MASTER_ADDR):$(MASTER_PORT)"),
            *("--rdzv-id", name),
            *TRAIN,
        ]
        assert ("ports" in container) == (role == "Master")


def test_pytorchjob_on_one_cpu_node_has_no_workers_and_no_gpus():
    manifest = render_pytorchjob(_k8s(nodes=1, gpus_per_node=0, cpu="", memory=""), "x", CONFIG)
    _check_schema(manifest)
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert list(replicas) == ["Master"]
    (container,) = replicas["Master"]["template"]["spec"]["containers"]
    assert "resources" not in container
    assert "--nproc-per-node" in container["command"]
    assert container["command"][container["command"].index("--nproc-per-node") + 1] == "1"


def test_job_names_are_dns_labels():
    assert k8s_job_name("llama-pretrain", "ABCD_ef01-2345") == "llama-pretrain-abcdef01"
    assert len(k8s_job_name("x" * 80, "1234567890")) <= 40
    with pytest.raises(ValueError):
        KubernetesSettings(job_name="Not_A_Label")


def test_pytorchjob_state_from_conditions():
    assert pytorchjob_state({}) == "Pending"
    running = {"conditions": [{"type": "Created", "status": "True"}]}
    running["conditions"].append({"type": "Running", "status": "True"})
    assert pytorchjob_state(running) == "Running"
    done = {"conditions": [*running["conditions"], {"type": "Succeeded", "status": "True"}]}
    assert pytorchjob_state(done) == "Succeeded"


def test_kubernetes_submits_only_with_a_context(tmp_path):
    with pytest.raises(RuntimeError, match="no kubectl context"):
        KubernetesJob(_k8s(), "x", str(tmp_path / "pytorchjob.json"))


# --- the resource's settings ----------------------------------------------------------------


def test_resource_builds_backend_settings_with_run_overrides():
    launcher = TrainingLauncher(
        backend="kubernetes",
        kubernetes=KubernetesLauncherConfig(
            nodes=2, volumes=[VolumeConfig(name="data", claim="pvc", mount_path="/shared")]
        ),
    )
    settings = launcher.kubernetes_settings(nodes=8, nproc_per_node=4)
    assert settings.nodes == 8 and settings.workers_per_node == 4
    assert settings.volumes == (Volume("data", "pvc", "/shared"),)
    assert launcher.slurm_settings() == SlurmSettings()
    assert launcher.local_settings(nproc_per_node=3).nproc_per_node == 3


# --- job handles ----------------------------------------------------------------------------


def test_log_tail_returns_complete_lines_only(tmp_path):
    path = tmp_path / "log"
    tail = LogTail(str(path))
    assert tail.read() == []
    path.write_bytes(b"one\ntw")
    assert tail.read() == ["one"]
    with open(path, "ab") as stream:
        stream.write(b"o\nthree")
    assert tail.read() == ["two"]
    assert tail.read(final=True) == ["three"]


def _local_job(tmp_path, code: str) -> LocalJob:
    argv = [sys.executable, "-u", "-c", code]
    return LocalJob(argv, {"MARK": "from-env"}, str(tmp_path / "job.log"), grace_s=5)


def test_local_job_streams_its_log_and_reports_its_exit(tmp_path):
    job = _local_job(tmp_path, "import os; print('hello', os.environ['MARK']); raise SystemExit(3)")
    lines = []
    status = follow(job, lines.append, poll_interval_s=0.05)
    assert status == JobStatus("EXITED 3", done=True, ok=False)
    assert lines == ["hello from-env"]


def test_interrupted_supervision_cancels_the_job(tmp_path):
    """Ctrl-C (or Dagster terminating the run) while following: the job's process group gets
    SIGTERM, as scancel or a PyTorchJob delete would stop a cluster job."""
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('sigterm'), sys.exit(143)))\n"
        "print('started')\n"
        "while True: time.sleep(0.05)\n"
    )
    job = _local_job(tmp_path, code)

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        supervise(job, interrupt, poll_interval_s=0.05)
    assert job.poll() == JobStatus("EXITED 143", done=True, ok=False)
    assert (tmp_path / "job.log").read_text() == "started\nsigterm\n"
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pid, 0)  # the whole group is gone


def test_cancel_kills_a_job_that_ignores_sigterm(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    job = LocalJob([sys.executable, "-c", code], {}, str(tmp_path / "job.log"), grace_s=0.5)
    time.sleep(0.3)
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 10
    assert job.poll().state == f"EXITED {-signal.SIGKILL}"


# --- misc -----------------------------------------------------------------------------------


def test_loss_decreased_compares_first_and_last_windows():
    falling = [{"step": i, "loss": 10.0 - i / 10} for i in range(40)]
    ok, details = loss_decreased(falling)
    assert ok and details["window"] == 10 and details["first"] > details["last"]
    assert not loss_decreased(list(reversed(falling)))[0]
    assert not loss_decreased(falling[:1])[0]
    assert loss_decreased([{"loss": None}, *falling[:8]])[1]["records"] == 8


def test_progress_lines_are_recognized():
    line = "step 40/200 | loss 6.2877 | lr 1.00e-03 | grad norm 1.524 | 3,531 tok/s | mfu -"
    assert PROGRESS_LINE.match(line)
    assert not PROGRESS_LINE.match("Traceback (most recent call last):")


def test_pretrain_is_in_the_gpu_pool_after_the_token_shards():
    assets_def = defs.resolve_assets_def("pretrain")
    assert assets_def.op.pool == "gpu"
    assert defs.resolve_assets_def("evaluation").op.pool == "gpu"
    assert AssetKey("tokenized_shards") in assets_def.dependency_keys
    job = defs.resolve_job_def("train")
    assert set(job.graph.node_dict) == {"pretrain", "evaluation", "hf_export"}
    assert isinstance(defs.resources["training_launcher"], TrainingLauncher)


def test_environment_names_are_checked_before_they_reach_a_script():
    with pytest.raises(ValueError, match="invalid environment variable names"):
        render_sbatch(SlurmSettings(), CONFIG, "/logs", {"X; rm -rf /": "1"})
    with pytest.raises(ValueError, match="invalid environment variable names"):
        SlurmSettings(env={"A B": "1"})


def _fake_slurm(tmp_path: Path) -> SlurmSettings:
    """Stand-ins for the Slurm commands: the job's state is whatever `state` holds; an empty
    file makes squeue fail, as an unreachable slurmctld does."""
    state, calls = tmp_path / "state", tmp_path / "calls"
    tools = {
        "sbatch": "echo \"sbatch $*\" >> {calls}; echo '77;cluster'",
        "squeue": "[ -s {state} ] || exit 1; cat {state}",
        "sacct": "exit 1",
        "scancel": 'echo "scancel $*" >> {calls}',
    }
    paths = {}
    for name, body in tools.items():
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + body.format(state=state, calls=calls) + "\n")
        path.chmod(0o755)
        paths[name] = str(path)
    state.write_text("PENDING\n")
    return SlurmSettings(**paths)


def test_slurm_job_follows_squeue_and_tolerates_a_busy_controller(tmp_path, monkeypatch):
    settings = _fake_slurm(tmp_path)
    job = SlurmJob(settings, "/x/train.sbatch", "/logs")
    assert job.job_id == "77" and job.log_files() == ["/logs/slurm-77.out", "/logs/slurm-77.err"]
    assert job.poll() == JobStatus("PENDING", done=False)
    (tmp_path / "state").write_text("")  # squeue fails: not an end
    assert job.poll() == JobStatus("UNKNOWN", done=False)
    (tmp_path / "state").write_text("RUNNING\n")
    assert job.poll() == JobStatus("RUNNING", done=False)
    (tmp_path / "state").write_text("TIMEOUT\n")
    assert job.poll() == JobStatus("TIMEOUT", done=True, ok=False)
    (tmp_path / "state").write_text("COMPLETED\n")
    assert job.poll() == JobStatus("COMPLETED", done=True, ok=True)
    job.cancel()
    assert (tmp_path / "calls").read_text() == "sbatch --parsable /x/train.sbatch\nscancel 77\n"

    monkeypatch.setattr(launch_common, "UNKNOWN_PATIENCE_S", 0.5)
    (tmp_path / "state").write_text("")
    assert job.poll() == JobStatus("UNKNOWN", done=False)  # the first unknown starts the clock
    time.sleep(0.6)
    assert job.poll() == JobStatus("UNKNOWN", done=True, ok=False)


def test_launchers_render_the_trainers_mesh_and_refuse_one_the_nodes_cannot_hold():
    config = TrainConfig(tensor_parallel=8, data_parallel_replicate=2).to_json()
    mesh = launcher_mesh(config, TRAIN_MODULE, 4, 8)
    assert str(mesh) == "dp_replicate 2 x dp_shard 2 x tp 8"
    assert launcher_mesh(config, "training.evaluation.run", 4, 8) is None

    script = render_sbatch(SlurmSettings(nodes=4, torchrun="torchrun"), CONFIG, "/logs", mesh=mesh)
    assert 'echo "llama-pretrain: mesh dp_replicate 2 x dp_shard 2 x tp 8"' in script
    manifest = json.loads(json.dumps(render_pytorchjob(_k8s(), "x", CONFIG, mesh=mesh)))
    _check_schema(manifest)
    assert manifest["metadata"]["annotations"] == {MESH_ANNOTATION: str(mesh)}

    with pytest.raises(ValueError, match="within one node"):
        launcher_mesh(TrainConfig(tensor_parallel=16).to_json(), TRAIN_MODULE, 4, 8)
    with pytest.raises(ValueError, match="do not split"):
        launcher_mesh(config, TRAIN_MODULE, 3, 8)  # 24 GPUs: not 2 replicas of whole TP groups
