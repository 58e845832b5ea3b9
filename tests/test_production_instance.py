"""The production instance (deploy/dagster.yaml) for real: a PostgreSQL server from Debian's
packages on 127.0.0.1, runs submitted to the queued run coordinator, `dagster-daemon run`
dequeuing and launching them, two language partitions of `perplexity_models` running at the
same time, each with the multiprocess executor.

Why Postgres: here five processes write the instance at once (the daemon, two run workers,
their step subprocesses; in a deployment also the web server). SQLite takes one writer at a
time and, under contention, answers "database is locked". This small workload can get through
on SQLite, so the test also reads the runs back from the server's own tables. Slow (minutes on
2 cores: each run worker and each step process imports the code location).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from conftest import REPO
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, materialize

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LANGUAGES = ["en", "fr"]
LOCKED = "database is locked"
CODE_LOCATION = ["-m", "pipelines.definitions", "-a", "defs"]
LOCATION = "llama-pipeline"
RUNS_TIMEOUT_S = 600


def postgres_bin() -> Path:
    """Debian's server binaries (initdb, pg_ctl), the newest major version; a clear failure
    where the package is missing: this test is part of `make test`, never skipped."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: run `make setup` "
            "(scripts/install_system_deps.sh installs Debian's postgresql package)"
        )
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "dagster"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    database: str = "dagster"

    def connection(self) -> dict[str, str | int]:
        """psycopg2's keyword arguments for the test's own queries."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
        }

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its connection from."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway server: initdb into a temporary directory with password authentication,
    listening on 127.0.0.1 only (its Unix socket in that directory), fsync off; stopped and
    removed afterwards. PostgreSQL refuses to run as root, so as root the server runs as
    Debian's `postgres` user, which owns the directory (made outside pytest's tmp tree, whose
    0700 parents that user could not enter)."""
    binaries = postgres_bin()
    server = Postgres(port=free_port())
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="llamapipe-postgres-"))
    data, log, password = root / "data", root / "server.log", root / "password"
    password.write_text(server.password)
    if as_owner:
        shutil.chown(root, "postgres")
        shutil.chown(password, "postgres")

    def run(command: list, owner: bool = True) -> None:
        env = {**os.environ, "PGPASSWORD": server.password}
        command = [*as_owner, *map(str, command)] if owner else list(map(str, command))
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        server_log = log.read_text() if log.exists() else ""
        assert result.returncode == 0, (command, result.stderr, server_log[-3000:])

    pg_ctl = [binaries / "pg_ctl", "-D", data, "-w"]
    try:
        run(
            [binaries / "initdb", "-D", data, "-U", server.user, "--pwfile", password]
            + ["--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"]
        )
        listen = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} -F"
        run([*pg_ctl, "-l", log, "-o", listen, "start"])
        client = ["-h", "127.0.0.1", "-p", server.port, "-U", server.user]
        run([binaries / "createdb", *client, server.database], owner=False)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            run([*pg_ctl, "-m", "fast", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def production_env(postgres, sample_world, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is, its connection variables, and a
    data root that reads the sample world through a symlink (nothing is written into the
    repository's data/). Also set in this process, so `DagsterInstance.get()` reads it."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    root = tmp_path_factory.mktemp("data")
    (root / "sample").symlink_to(sample_world)
    env = {
        **postgres.env(),
        "DAGSTER_HOME": str(home),
        "LLAMAPIPE_DATA_ROOT": str(root),
        # Shards inline: on 2 cores a pool of spawned workers only adds imports.
        "LLAMAPIPE_SHARD_WORKERS": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield {**os.environ}


@contextmanager
def process_group(command: list, env: dict[str, str], log: Path) -> Iterator[None]:
    """A long-running Dagster process in a session of its own, output to `log`; stopped with
    its whole process group, so what it started (run workers, step processes) stops too."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def wait_for_port(port: int, log: Path, timeout_s: float = 300) -> None:
    """The code server listens only once the code location has loaded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(1)
    pytest.fail(f"code server not listening on {port} after {timeout_s}s:\n{log.read_text()}")


def wait_until_finished(instance: DagsterInstance, run_ids: list[str], log: Path) -> None:
    """Poll the run storage until every run has finished (the daemon must have dequeued,
    launched and completed them); on timeout, fail with the statuses and the daemon's log."""
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        if all(run.is_finished for run in runs):
            return
        time.sleep(2)
    statuses = {run.run_id: run.status for run in runs}
    pytest.fail(f"runs not finished in {RUNS_TIMEOUT_S}s: {statuses}\n{log.read_text()[-4000:]}")


def test_instance_is_postgres_with_queue_retries_and_one_gpu_slot(production_env):
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        # The `pretrain` asset's pool gets the default limit the moment it is first used.
        instance.event_log_storage.initialize_concurrency_limit_to_default("gpu")
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1


def submit(workspace: Path, env: dict[str, str], language: str) -> subprocess.Popen:
    """`dagster job launch`: the run is created and handed to the instance's run coordinator
    (the queue), as the web UI or a sensor would; the daemon launches it."""
    return subprocess.Popen(
        [BIN / "dagster", "job", "launch", "-w", workspace, "-j", "perplexity_models"]
        + ["--run-id", str(uuid.uuid4()), "--tags", json.dumps({"dagster/partition": language})],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_partitions_run_concurrently_through_the_queue_and_the_daemon(
    postgres, production_env, tmp_path
):
    # The production layout: one code server, which the CLI, the daemon (and a web server)
    # reach over gRPC; the daemon's run launcher asks it to start each run's worker.
    port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
        f"      location_name: {LOCATION}\n"
    )
    code_server = [BIN / "dagster", "api", "grpc", *CODE_LOCATION, "-h", "127.0.0.1"]
    code_server += ["-p", str(port), "--location-name", LOCATION]
    daemon = [BIN / "dagster-daemon", "run", "-w", workspace]
    logs = {"code server": tmp_path / "code_server.log", "daemon": tmp_path / "daemon.log"}

    # While the code server loads: Wikipedia text, in this process (the perplexity models
    # read it), with the data root given explicitly (pipelines.resources reads the
    # environment once, at import).
    from assets.graph import STAGE_ASSETS
    from assets.resources import DataRoot
    from pipelines.resources import RESOURCES

    resources = {**RESOURCES, "data_root": DataRoot(root=production_env["LLAMAPIPE_DATA_ROOT"])}
    with (
        DagsterInstance.get() as instance,
        process_group(code_server, production_env, logs["code server"]),
    ):
        assert materialize(
            [STAGE_ASSETS["wikipedia"]], resources=resources, instance=instance
        ).success
        wait_for_port(port, logs["code server"])
        launches = [submit(workspace, production_env, language) for language in LANGUAGES]
        outputs = [launch.communicate(timeout=300)[0] for launch in launches]
        assert [launch.returncode for launch in launches] == [0, 0], outputs
        run_ids = [launch.args[launch.args.index("--run-id") + 1] for launch in launches]
        # No daemon yet: the coordinator only queues.
        statuses = {instance.get_run_by_id(run_id).status for run_id in run_ids}
        assert statuses == {DagsterRunStatus.QUEUED}

        with process_group(daemon, production_env, logs["daemon"]):
            wait_until_finished(instance, run_ids, logs["daemon"])

        for language, run_id in zip(LANGUAGES, run_ids, strict=True):
            run = instance.get_run_by_id(run_id)
            assert run.status == DagsterRunStatus.SUCCESS, (language, run.status)
            assert run.tags["dagster/partition"] == language
            # The multiprocess executor: each step ran in a subprocess of its own.
            workers = instance.all_logs(run_id, of_type=DagsterEventType.STEP_WORKER_STARTED)
            assert {event.step_key for event in workers} == {"lm_tokenizer", "kenlm_model"}
        stats = [instance.get_run_stats(run_id) for run_id in run_ids]
        assert max(s.start_time for s in stats) < min(s.end_time for s in stats), stats
        for asset in ["lm_tokenizer", "kenlm_model"]:
            assert set(LANGUAGES) <= instance.get_materialized_partitions(AssetKey(asset))
        events = [str(record) for run_id in run_ids for record in instance.all_logs(run_id)]

    # In the server's own tables, read with its own driver.
    with closing(psycopg2.connect(**postgres.connection())) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (run_ids,))
        assert dict(cursor.fetchall()) == dict.fromkeys(run_ids, "SUCCESS")

    # Nowhere: the CLI, the code server and its run workers, the daemon, the event log, the
    # step logs captured under DAGSTER_HOME.
    home_files = Path(production_env["DAGSTER_HOME"]).rglob("*")
    captured = [path.read_text(errors="replace") for path in home_files if path.is_file()]
    texts = [*outputs, *(log.read_text() for log in logs.values()), *events, *captured]
    assert not [text for text in texts if LOCKED in text]
