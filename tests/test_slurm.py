"""The Slurm launcher and the Slurm shard executor on a real one-node Slurm cluster that this
module starts on localhost.

The cluster: munged with its own key and socket, slurmctld and slurmd from a minimal
slurm.conf in a temporary directory (free ports, state and spool there too). Process tracking
by /proc (proctrack/linuxproc) and no task plugin: no cgroups needed, so it runs in an
unprivileged container as long as the tests run as root (slurmd starts jobs as their user).
Packages: slurmd slurmctld slurm-client munge (scripts/install_system_deps.sh).
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from conftest import REPO, require
from crawl_stages import differing, materialized_crawl_stages
from dagster import DagsterInstance, materialize
from object_store import new_bucket
from slurm_tasks import die_once
from test_pretrain_asset import TRAIN, build_shards

from assets.launchers import MESSAGES_FILE, SlurmLauncherConfig, TrainingLauncher
from assets.resources import DataRoot, ShardExecutorResource
from assets.training import LOSS_DECREASED, pretrain
from curation.core.slurm_executor import SlurmExecutor, TaskLost

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Cluster:
    conf: str
    root: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _slurm_conf(root: Path, cpus: int) -> str:
    return f"""\
ClusterName=llamapipe-test
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def _stop(pid_file: Path) -> None:
    """SIGTERM the daemon named by its pid file, SIGKILL if it lingers."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _active_jobs() -> list[str]:
    done = subprocess.run(["squeue", "--noheader", "--format=%i"], capture_output=True, text=True)
    return done.stdout.split()


def _job_state(job_id: str) -> str:
    argv = ["squeue", "--noheader", "--states=all", "--jobs", job_id, "--format=%T"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[Cluster]:
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    install = "bash scripts/install_system_deps.sh"
    require(not missing, f"needs Slurm and munge ({', '.join(missing)} missing): {install}")
    require(os.geteuid() == 0, "slurmd must run as root to start jobs")
    root = tmp_path_factory.mktemp("slurm")
    for name in ("munge", "state", "spool", "log"):
        (root / name).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge = root / "munge"
    started = subprocess.run(
        [
            _sbin("munged"),
            "--force",  # we are root, on purpose
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, os.cpu_count() or 1))
    env = os.environ | {"SLURM_CONF": str(conf)}
    try:
        # Both daemonize; their pid files are how they are stopped.
        subprocess.run([_sbin("slurmctld"), "-f", str(conf)], env=env, check=True)
        subprocess.run([_sbin("slurmd"), "-f", str(conf), "-N", "localhost"], env=env, check=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(conf))

            def idle() -> bool:
                argv = ["sinfo", "--noheader", "--Node", "--format=%N %T"]
                return subprocess.run(argv, capture_output=True, text=True).stdout.split() == [
                    "localhost",
                    "idle",
                ]

            _wait(idle, 60, "the Slurm node to be idle")
            yield Cluster(str(conf), root)
            for job in _active_jobs():
                subprocess.run(["scancel", job], check=False)
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            _stop(root / pid_file)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> DataRoot:
    return build_shards(tmp_path_factory.mktemp("slurm-data"))


def _launcher(nproc: int, poll: float = 1.0) -> TrainingLauncher:
    cpu_job = SlurmLauncherConfig(
        gpus_per_node=0,
        nproc_per_node=nproc,
        cpus_per_task=min(2, os.cpu_count() or 1),
        time="00:15:00",
        exclusive=False,
        nccl_ib_disable=True,
    )
    return TrainingLauncher(backend="slurm", slurm=cpu_job, poll_interval_s=poll)


def test_pretrain_runs_as_a_slurm_job(slurm, data_root):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [pretrain],
        resources={"data_root": data_root, "training_launcher": _launcher(nproc=2)},
        run_config={"ops": {"pretrain": {"config": TRAIN | {"run_name": "slurm"}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("pretrain")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    launch = metadata["launch"]
    assert launch["backend"] == "slurm" and launch["state"] == "COMPLETED"
    assert launch["job"].startswith("Slurm job ")
    assert launch["pipes_channels_opened"] == 1
    assert metadata["steps"] == 40 and metadata["world_size"] == 2
    assert metadata["final_loss"] < 5.5
    assert "data:image/png;base64," in metadata["loss_curve"]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == LOSS_DECREASED and check.passed

    launch_dir = Path(launch["launch_dir"])
    script = (launch_dir / "train.sbatch").read_text()
    assert "#SBATCH --nodes=1\n" in script and "#SBATCH --ntasks-per-node=1\n" in script
    assert "--gpus-per-node" not in script
    job_id = launch["job"].split()[-1]
    assert "head localhost" in (launch_dir / f"slurm-{job_id}.out").read_text()
    messages = [json.loads(line) for line in (launch_dir / MESSAGES_FILE).read_text().splitlines()]
    assert [m["method"] for m in messages].count("report_asset_materialization") == 1

    # The job's log file streamed into the Dagster log as it grew.
    logs = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any(f"[slurm] llama-pretrain: job {job_id} on 1 node(s)" in m for m in logs)
    assert not _active_jobs()


# Run in a child process so that the test can interrupt it as a terminated run would be.
CHILD = """
import sys
from dagster import materialize
from assets.resources import DataRoot
from assets.training import pretrain
from test_slurm import TRAIN, _launcher

config = TRAIN | {"run_name": "cancel", "max_steps": 100000, "checkpoint_interval": 100000}
result = materialize(
    [pretrain],
    resources={"data_root": DataRoot(root=sys.argv[1]), "training_launcher": _launcher(1, 0.5)},
    run_config={"ops": {"pretrain": {"config": config}}},
    raise_on_error=False,
)
print("success:", result.success, flush=True)
"""


def test_interrupting_the_run_cancels_the_slurm_job(slurm, data_root, tmp_path, ledger):
    """Ctrl-C in the Dagster process (what terminating a run does to the step) scancels the
    job; the trainer gets SIGTERM and leaves a checkpoint to resume from."""
    run_dir = Path(data_root.stage_dir("pretrain", "all")) / "runs" / "cancel"
    log = open(tmp_path / "child.log", "w")  # noqa: SIM115 (the child writes it)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, data_root.root],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO / "tests")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Interrupt once the trainer is inside its loop (it has logged a step).
        metrics = run_dir / "metrics.jsonl"  # created empty before the first step
        _wait(lambda: metrics.exists() and metrics.read_text().strip(), 180, "a logged step")
        (job_id,) = _active_jobs()
        assert _job_state(job_id) == "RUNNING"
        child.send_signal(signal.SIGINT)
        ledger.fault("slurm_cancel")
        assert child.wait(60) == 0
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    output = (tmp_path / "child.log").read_text()
    assert "success: False" in output
    assert f"cancelled Slurm job {job_id}" in output
    _wait(lambda: not _active_jobs(), 90, "the cancelled job to leave the queue")
    assert _job_state(job_id) == "CANCELLED"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "preempted"
    assert (run_dir / "checkpoints" / "latest").exists()


# --- the shard executor -----------------------------------------------------------------------


def test_a_shard_map_runs_as_an_array_and_a_failure_surfaces_as_itself(slurm, tmp_path):
    executor = SlurmExecutor(str(tmp_path / "work"), time="00:05:00", poll_s=0.5)
    assert sorted(executor.map_unordered(math.sqrt, [4, 9, 16])) == [2.0, 3.0, 4.0]
    assert list((tmp_path / "work").iterdir()) == [], "a map that succeeded leaves nothing"

    finished = []
    with pytest.raises(ValueError, match="math domain error"):
        for value in executor.map_unordered(math.sqrt, [25, -1, 36]):
            finished.append(value)
    assert sorted(finished) == [5.0, 6.0], "every other item finished first"
    (run,) = (tmp_path / "work").iterdir()  # kept, with the tasks' logs, after a failure
    assert len(list((run / "logs").iterdir())) == 3
    assert not _active_jobs()


def test_a_task_that_left_no_result_is_resubmitted_once(slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))  # sbatch exports it to the tasks
    markers = tmp_path / "markers"
    markers.mkdir()
    retried = SlurmExecutor(str(tmp_path / "work"), time="00:05:00", poll_s=0.5, retries=1)
    assert sorted(retried.map_unordered(partial(die_once, markers), [1, 2, 3])) == [2, 4, 6]

    for marker in markers.iterdir():
        marker.unlink()
    strict = SlurmExecutor(str(tmp_path / "strict"), time="00:05:00", poll_s=0.5, retries=0)
    with pytest.raises(TaskLost, match=r"items \[0, 1\] \(positions in the map\) ended"):
        list(strict.map_unordered(partial(die_once, markers), [1, 2]))


def test_crawl_stages_materialized_on_slurm_equal_the_process_pool(
    slurm, sample_world, tmp_path, s3_env
):
    """Through Dagster, as a cluster deployment runs them: the shard executor resource set to
    Slurm and the data root on an object store (tests/object_store.py; the array tasks read
    and write it with the driver's environment, which sbatch exports) write byte for byte
    what the process pool writes on a disk."""
    on_slurm = ShardExecutorResource(kind="slurm", slurm_workdir=str(tmp_path / "slurm-work"))
    store = f"s3://{new_bucket(s3_env)}/data"
    slurm_files = materialized_crawl_stages(sample_world, store, on_slurm)
    local = ShardExecutorResource(kind="local", workers=2)
    local_files = materialized_crawl_stages(sample_world, tmp_path / "local", local)
    assert len(local_files) >= 3 * 8
    assert differing(slurm_files, local_files) == []
    assert not _active_jobs()
