from pathlib import Path

import pytest
from reliability import LEDGER, Ledger

from curation.storage import Storage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path))


@pytest.fixture(scope="session")
def sample_world() -> Path:
    """The embedded sample world at ./data/sample (built by `make`; built here if absent)."""
    from curation.sample.build import build_sample_world

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
