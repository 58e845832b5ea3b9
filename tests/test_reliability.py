"""The suite's own bookkeeping: the reliability ledger reports a loss when there is one, and a
test the machine cannot run is skipped and counted at the end, or fails where CI demands that
every test run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, REQUIRE_ALL
from reliability import Ledger


def test_a_lost_record_shows_even_beside_a_case_with_one_row_too_many():
    ledger = Ledger()
    ledger.records(10, kept=6, quarantined=3)
    ledger.records(5, kept=5, quarantined=1)
    assert ledger.summary()[-1] == "records checked: 15; records lost: 1; records extra: 1"


PROBE = """
from conftest import require

def test_runs():
    pass

def test_needs_a_widget():
    require(False, "no widget here")
"""


@pytest.mark.parametrize(
    ("require_all", "exit_code", "expected"),
    [
        ("", 0, ["skipped: 1", "    1  no widget here"]),
        ("1", 1, ["skipped: 0", f"no widget here ({REQUIRE_ALL}=1: every test must run)"]),
    ],
)
def test_a_missing_capability_is_a_counted_skip_or_in_ci_a_failure(
    tmp_path, require_all, exit_code, expected
):
    """A probe suite run with this suite's conftest: one test passes, one lacks its widget."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = os.environ | {"PYTHONPATH": str(REPO / "tests"), REQUIRE_ALL: require_all}
    argv = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == exit_code, result.stdout[-3000:]
    assert [line for line in expected if line not in result.stdout] == [], result.stdout[-3000:]
