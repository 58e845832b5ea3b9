"""The code location loads, validates, and wires every stage with its checks."""

import os
import subprocess
import sys

from conftest import REPO
from dagster import AssetKey

from pipelines.definitions import defs


def test_dagster_definitions_validate_passes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed validation" in result.stdout + result.stderr


def test_every_stage_asset_is_partitioned_by_crawl_and_carries_conservation_checks():
    graph = defs.resolve_asset_graph()
    for name in ["cc_documents", "cc_language"]:
        assert graph.get(AssetKey(name)).partitions_def.name == "crawls"
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(name)}
        assert checks == {"counts_conserve", "output_schema"}
    job = defs.resolve_job_def("crawl")
    assert job.partitions_def.name == "crawls"
