"""The asset checks re-count the files, so they fail when the files and manifest disagree."""

import pyarrow.parquet as pq
from test_runner import Recording, make_shards

from assets.checks import counts_conserve, output_schema
from curation.documents import DOCUMENT_SCHEMA
from curation.runner import run_stage


def materialized(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 2)
    out = str(tmp_path / "out")
    return out, run_stage(Recording(log=str(tmp_path / "log")), shards, out, storage)


def test_conservation_passes_on_an_honest_partition(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    assert counts_conserve(storage, out, manifest, upstream_kept=10).passed
    assert output_schema(storage, out, manifest, DOCUMENT_SCHEMA).passed


def test_conservation_fails_when_a_row_goes_missing_from_the_files(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    part = f"{out}/part-00000.parquet"
    pq.write_table(pq.read_table(part).slice(1), part)
    result = counts_conserve(storage, out, manifest, upstream_kept=None)
    assert not result.passed
    assert "differ" in result.metadata["problems"].value


def test_conservation_fails_when_rows_are_lost_between_stages(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    result = counts_conserve(storage, out, manifest, upstream_kept=11)
    assert not result.passed
    assert "upstream kept 11" in result.metadata["problems"].value


def test_schema_check_fails_on_a_foreign_part_file(storage, tmp_path):
    out, manifest = materialized(storage, tmp_path)
    part = f"{out}/part-00001.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["meta"]), part)
    assert not output_schema(storage, out, manifest, DOCUMENT_SCHEMA).passed
