"""Idempotency and determinism: the same config and input give the same bytes however often
they run and on however many workers; a config change gives a new fingerprint, and a stage
below recomputes exactly when what it reads has changed.

Proven elsewhere and not repeated here: forced reruns and 1 vs 2 workers for cc_documents
(test_runner.py), C4, exact dedup, GitHub, mixture, near dedup (also its partition bound),
the tokenizer and the token shards; a config change re-fingerprinting one stage
(test_runner.py). Here: a Dagster asset forced twice, a config change seen downstream, and the
worker count for the line-dedup group pass and language id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import identities, tree

from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.langid import LanguageId
from curation.commoncrawl.line_dedup import LineDedup
from curation.core.executor import LocalExecutor
from curation.core.inputs import archive_shards, partition_shards
from curation.core.manifest import Manifest
from curation.core.runner import current_manifest, run_stage
from curation.core.stage import Stage
from curation.core.storage import Storage


def rewritten(before: dict[str, tuple], after: dict[str, tuple]) -> bool:
    """Every file is a new one: the run really recomputed, it did not reuse."""
    return before.keys() == after.keys() and all(before[p] != after[p] for p in before)


@pytest.mark.slow
def test_a_dagster_asset_forced_twice_gives_the_same_bytes_then_is_reused(sample_world, tmp_path):
    """`arxiv` materialized, then again with `force: true` (every file rewritten, the same
    bytes: parts, manifest and the funnel plot), then again without: reused, not touched."""
    from dagster import DagsterInstance, materialize

    from assets.graph import STAGE_ASSETS
    from assets.resources import DataRoot, ShardExecutorResource

    root = tmp_path / "root"
    root.mkdir()
    (root / "sample").symlink_to(sample_world)
    resources = {
        "data_root": DataRoot(root=str(root)),
        "shard_executor": ShardExecutorResource(workers=1),
    }
    output = root / "stages" / "arxiv" / "all"
    plots = Path(f"{output}.plots")

    with DagsterInstance.ephemeral() as instance:

        def materialized(force: bool) -> bool:
            """Materialize; whether the asset reported its output reused."""
            config = {"ops": {"arxiv": {"config": {"force": force}}}}
            result = materialize(
                [STAGE_ASSETS["arxiv"]], resources=resources, instance=instance, run_config=config
            )
            assert result.success
            (event,) = result.asset_materializations_for_node("arxiv")
            return event.metadata["reused"].value

        assert not materialized(force=False)
        first, first_plots, first_files = tree(output), tree(plots), identities(output)
        assert not materialized(force=True)
        assert tree(output) == first and tree(plots) == first_plots
        assert rewritten(first_files, second_files := identities(output))
        assert materialized(force=False)
        assert identities(output) == second_files


def test_a_config_change_recomputes_what_reads_the_changed_output_and_nothing_else(
    sample_world, tmp_path
):
    """cc_documents -> cc_line_dedup on two archives. Unchanged config: both current. A value
    that changes the kept rows: a new fingerprint, and the line dedup below is stale until it
    runs again. A value that changes no kept row: a new fingerprint for cc_documents, but the
    same parts, so the stage below stays current (it fingerprints what it reads)."""
    storage = Storage("/")
    wet = tmp_path / "wet"
    wet.mkdir()
    for archive in sorted((sample_world / "crawls" / "sample" / "wet").iterdir())[:2]:
        (wet / archive.name).symlink_to(archive)
    raw = archive_shards(storage, str(wet))
    docs, lines = str(tmp_path / "docs"), str(tmp_path / "lines")

    def downstream_current() -> Manifest | None:
        """cc_line_dedup's output if it is current for what cc_documents holds now."""
        return current_manifest(LineDedup(), partition_shards(storage, docs), lines, storage)

    first = run_stage(CCDocuments(crawl="sample"), raw, docs, storage)
    below = run_stage(LineDedup(), partition_shards(storage, docs), lines, storage)
    files = identities(Path(docs))
    assert run_stage(CCDocuments(crawl="sample"), raw, docs, storage) == first
    assert identities(Path(docs)) == files and downstream_current() == below

    stricter = run_stage(CCDocuments(crawl="sample", min_chars=2000), raw, docs, storage)
    assert stricter.fingerprint != first.fingerprint and stricter.kept < first.kept
    assert downstream_current() is None
    again = run_stage(LineDedup(), partition_shards(storage, docs), lines, storage)
    assert again.fingerprint != below.fingerprint and again.n_in == stricter.kept

    roomier = CCDocuments(crawl="sample", min_chars=2000, max_record_bytes=64 << 20)
    unchanged_rows = run_stage(roomier, raw, docs, storage)
    assert unchanged_rows.fingerprint != stricter.fingerprint
    assert unchanged_rows.output_fingerprint == stricter.output_fingerprint
    assert downstream_current() == again


@pytest.mark.parametrize(
    "stage", [LineDedup(group_size=2), LanguageId()], ids=lambda stage: stage.name
)
def test_two_workers_and_a_forced_rerun_write_the_same_bytes(
    stage: Stage, sample_documents: Path, tmp_path: Path
):
    """Three parts of the sample's documents, once inline, then forced again on two worker
    processes into the same output: every file rewritten, not one byte different. Line dedup
    with groups of two shards runs its global pass over two groups."""
    storage = Storage("/")
    inputs = partition_shards(storage, str(sample_documents))[:3]
    output = tmp_path / "out"
    run_stage(stage, inputs, str(output), storage, LocalExecutor(1))
    once, files = tree(output), identities(output)
    run_stage(stage, inputs, str(output), storage, LocalExecutor(2), force=True)
    assert tree(output) == once
    assert rewritten(files, identities(output))
