import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability import LEDGER, Ledger

from curation.core.storage import Storage

REPO = Path(__file__).resolve().parents[1]
REQUIRE_ALL = "LLAMAPIPE_REQUIRE_ALL"


def require(available: bool, reason: str) -> None:
    """Skip the test when the machine lacks a capability it needs (root, a tmpfs mount, Slurm):
    the one way a test here may skip. With LLAMAPIPE_REQUIRE_ALL=1 (CI sets it) the test fails
    instead, so a green CI run means every test ran, not that some quietly did not."""
    if available:
        return
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1: every test must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path))


@pytest.fixture(scope="session")
def sample_world() -> Path:
    """The embedded sample world at ./data/sample (built by `make`; built here if absent)."""
    from sample_world.build import build_sample_world

    return build_sample_world(REPO / "data" / "sample", REPO / ".cache" / "debian")


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    """The reliability ledger (tests/reliability.py) the summary prints at the end."""
    return LEDGER


def pytest_terminal_summary(terminalreporter) -> None:
    if LEDGER.hostile or LEDGER.faults or LEDGER.records_in:
        terminalreporter.section("reliability")
        for line in LEDGER.summary():
            terminalreporter.write_line(line)
    # Printed even at 0, so every log says how many tests did not run, and why. A skip report's
    # longrepr is (path, line, "Skipped: reason").
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(report.longrepr[2].removeprefix("Skipped: ") for report in skipped)
    terminalreporter.section("skipped")
    terminalreporter.write_line(f"skipped: {len(skipped)}")
    for reason, n in sorted(reasons.items()):
        terminalreporter.write_line(f"{n:5d}  {reason}")


@pytest.fixture(scope="session")
def sample_documents(sample_world, tmp_path_factory) -> Path:
    """`cc_documents` of the sample crawl (8 WET shards) through the CLI's defaults, made once:
    the uninterrupted run a killed one must match byte for byte, and input for later stages.
    Tests read it; a test that writes copies it first."""
    from pipelines.cli import main

    output = tmp_path_factory.mktemp("sample_documents") / "docs"
    wet = sample_world / "crawls" / "sample" / "wet"
    argv = ["stage", "cc_documents", "--crawl", "sample", "--input", str(wet), "--workers", "1"]
    assert main([*argv, "--output", str(output)]) == 0
    return output


@pytest.fixture(scope="session")
def s3_env() -> Iterator[dict[str, str]]:
    """An S3 server for the session (tests/object_store.py), its settings in this process's
    environment too, as a deployment would set them."""
    from object_store import s3_server

    with s3_server() as env, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="session")
def materialized(sample_world, tmp_path_factory) -> tuple[Path, Path]:
    """The sample graph (tests/sample_graph.py, what `make demo` runs before training) in a
    fresh Dagster instance and local data root, made once: the end-to-end tests read it, and
    the object-store run must match it byte for byte. (DAGSTER_HOME, the root's `stages/`.)"""
    from sample_graph import graph_env, materialize_sample_graph

    home = tmp_path_factory.mktemp("dagster_home")
    root = tmp_path_factory.mktemp("data")
    (root / "sample").symlink_to(sample_world)
    materialize_sample_graph(graph_env(home, str(root)))
    return home, root / "stages"
