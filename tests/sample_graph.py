"""The sample graph materialized by the real `dagster job execute`, as `make demo` runs it
(without training), into any data root: a local directory or an object store URI. One
function, so the local run and the S3 run execute the very same jobs with the same configs
and worker count, and their outputs can be compared byte for byte."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from conftest import REPO

BIN = Path(sys.executable).parent
LM_LANGUAGES = ["en"]  # the crawl's kept language
NO_TEXT_LANGUAGE = "bg"  # a language partition of the models without Wikipedia text
SHARD_WORKERS = "2"


def execute(job: str, env: dict[str, str], partition: str | None = None, *options: str) -> None:
    """One job through the CLI a user runs; its log's tail is the failure message."""
    tags = ["--tags", json.dumps({"dagster/partition": partition})] if partition else []
    command = [BIN / "dagster", "job", "execute", "-m", "pipelines.definitions", "-a", "defs"]
    result = subprocess.run(
        [*command, "-j", job, *tags, *options],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def graph_env(home: Path, root: str, **extra: str) -> dict[str, str]:
    """The environment of a run into `root` with a fresh Dagster instance at `home`; `extra`
    adds settings (an object store's endpoint, the local cache of fetched objects)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLAMAPIPE_DATA_ROOT": root,
        "LLAMAPIPE_SHARD_WORKERS": SHARD_WORKERS,
        **extra,
    }


def materialize_sample_graph(env: dict[str, str]) -> None:
    """What `make demo` runs before training, into `env`'s data root (which must hold the
    sample world under `sample/`): the reference, the sources, the perplexity models of the
    crawl's kept language (and of one language without text), the crawl, the corpus."""
    subprocess.run([BIN / "llamapipe", "crawls", "add", "sample"], env=env, check=True, timeout=120)
    execute("reference", env)
    execute("sources", env, None, "-c", "pipelines/sample/sources.yaml")
    for language in [*LM_LANGUAGES, NO_TEXT_LANGUAGE]:
        execute("perplexity_models", env, language, "-c", "pipelines/sample/perplexity_models.yaml")
    execute("crawl", env, "sample")
    execute("corpus", env, None, "-c", "pipelines/sample/corpus.yaml")


def same_outputs() -> ModuleType:
    """scripts/same_outputs.py (a script, not a package), whose `differences` knows what two
    runs may legitimately differ in."""
    path = REPO / "scripts" / "same_outputs.py"
    spec = importlib.util.spec_from_file_location("same_outputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
