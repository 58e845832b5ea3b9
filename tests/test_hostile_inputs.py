"""Every stage that parses raw input or reads Parquet, fed the hostile corpus
(tests/hostile_corpus.py) beside real good input from the sample world.

For each stage: the run completes; every hostile input yields the quarantine rows it must,
with their reasons; the good input's kept rows are exactly those of a run without the hostile
files; counts conserve, read back from the files; nothing is written outside the data root;
and the stage runs as a separate process under a memory cap and a CPU-time cap, so a bomb or
a recursive macro meets a limit of the stage's own, not the machine's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_corpus import (
    HostileSet,
    arxiv_set,
    books_set,
    commoncrawl_set,
    github_set,
    parquet_set,
    stackexchange_set,
    wikipedia_set,
)

pytestmark = pytest.mark.slow
LLAMAPIPE = Path(sys.executable).parent / "llamapipe"
MEMORY_CAP = 3 << 30  # address space of the stage process: a bomb must stop well below it
CPU_CAP_S = 300


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_CAP_S, CPU_CAP_S))


def write_inputs(hostile: HostileSet, directory: Path, with_hostile: bool) -> None:
    for name, source in hostile.good.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, directory / name)
    if with_hostile:
        for name, case in hostile.hostile.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(case.data)


def run_stage(hostile: HostileSet, root: Path, label: str, with_hostile: bool) -> Path:
    """`llamapipe stage` in its own process, bounded, in a sandbox of empty directories."""
    inputs, output = root / label / "input", root / "data" / "stages" / hostile.stage / label
    inputs.mkdir(parents=True)
    write_inputs(hostile, inputs, with_hostile)
    sandbox = {name: root / label / name for name in ("cwd", "home", "tmp")}
    for path in sandbox.values():
        path.mkdir()
    result = subprocess.run(
        [LLAMAPIPE, "stage", hostile.stage, "--input", inputs, "--output", output,
         "--workers", "1", *hostile.options],
        cwd=sandbox["cwd"], capture_output=True, text=True, timeout=2 * CPU_CAP_S,
        preexec_fn=_bounded,
        env={**os.environ, "HOME": str(sandbox["home"]), "TMPDIR": str(sandbox["tmp"])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    leftovers = [str(p) for path in sandbox.values() for p in path.rglob("*")]
    assert leftovers == [], "written outside the data root"
    return output


def read_rows(directory: Path) -> list[dict]:
    parts = sorted(directory.glob("part-*.parquet"))
    if not parts:
        return []
    return pa.concat_tables(
        [pq.read_table(p) for p in parts], promote_options="default"
    ).to_pylist()


def check(hostile: HostileSet, root: Path, ledger) -> None:
    """Into the ledger first, the cases as they are tried and the rows as read back, then the
    assertions: a case that fails is in the ledger's figures too."""
    ledger.hostile_case(hostile.stage, len(hostile.hostile))
    clean = run_stage(hostile, root, "clean", with_hostile=False)
    attacked = run_stage(hostile, root, "attacked", with_hostile=True)
    kept, dropped = read_rows(attacked), read_rows(attacked / "_dropped")
    n_in = json.loads((attacked / "_manifest.json").read_text())["counts"]["in"]
    ledger.records(n_in, len(kept), len(dropped))
    assert n_in == len(kept) + len(dropped)

    # Each hostile input added exactly its quarantine rows; the good input lost nothing.
    added = Counter(d["reason"] for d in dropped)
    added.subtract(Counter(d["reason"] for d in read_rows(clean / "_dropped")))
    expected = Counter()
    for case in hostile.hostile.values():
        expected.update(case.reasons)
    assert +added == expected
    good_kept = read_rows(clean)
    assert [row for row in kept if row in good_kept] == good_kept
    assert len(kept) - len(good_kept) == sum(case.kept for case in hostile.hostile.values())
    assert not any(root.rglob("evil.tex")) and not Path("/etc/evil.tex").exists()


RAW_SETS = {
    "commoncrawl": commoncrawl_set,
    "wikipedia": wikipedia_set,
    "stackexchange": stackexchange_set,
    "arxiv": arxiv_set,
    "books": books_set,
    "github": github_set,
}


@pytest.mark.parametrize("name", sorted(RAW_SETS))
def test_raw_inputs(name, sample_world, tmp_path, ledger):
    check(RAW_SETS[name](sample_world), tmp_path, ledger)


def llamapipe_stage(stage: str, source: Path, output: Path, *options: str) -> dict[str, Path]:
    subprocess.run(
        [LLAMAPIPE, "stage", stage, "--input", source, "--output", output, "--workers", "1",
         *options],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return {"part-00000.parquet": output / "part-00000.parquet"}


@pytest.fixture(scope="module")
def documents(sample_world, tmp_path_factory) -> dict[str, Path]:
    """Real contract Parquet: the documents of one sample WET archive."""
    wet = sample_world / "crawls" / "sample" / "wet" / "CC-SAMPLE-00000.warc.wet.gz"
    output = tmp_path_factory.mktemp("documents") / "cc_documents"
    return llamapipe_stage("cc_documents", wet, output, "--crawl", "sample")


@pytest.fixture(scope="module")
def languages(documents, tmp_path_factory) -> dict[str, Path]:
    """The same documents with their language: what C4's filter reads."""
    output = tmp_path_factory.mktemp("languages") / "cc_language"
    return llamapipe_stage("cc_language", documents["part-00000.parquet"].parent, output)


# Each Parquet stage and the fixture holding real input of the schema it reads.
PARQUET_STAGES = {
    "cc_line_dedup": "documents",
    "cc_language": "documents",
    "dedup_signatures": "documents",
    "mixture": "documents",
    "deduplicated": "documents",
    "c4": "languages",
}


@pytest.mark.parametrize("stage", sorted(PARQUET_STAGES))
def test_parquet_inputs(stage, request, tmp_path, ledger):
    good = request.getfixturevalue(PARQUET_STAGES[stage])
    check(parquet_set(stage, good), tmp_path, ledger)
