"""The runner's promises: atomic publish, resume after a failure, reuse, determinism."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from archives import ENGLISH, FRENCH, html_page, warc_bytes, write

from curation.commoncrawl.documents import CCDocuments
from curation.core.documents import DOCUMENT_SCHEMA, Document, documents_table, drop_rows
from curation.core.executor import LocalExecutor
from curation.core.inputs import archive_shards
from curation.core.runner import run_stage, staging_path
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage


@dataclass(frozen=True)
class Recording(Stage):
    """Keeps even-length texts; logs each shard it processes; fails on the shard named in
    the marker file (outside the config, so the fingerprint stays the same)."""

    name: ClassVar[str] = "recording"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    log: str
    fail_marker: str = ""

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        with open(self.log, "a") as f:
            f.write(shard.name + "\n")
        if os.path.exists(self.fail_marker) and Path(self.fail_marker).read_text() == shard.name:
            raise RuntimeError(f"injected failure on {shard.name}")
        table = pq.read_table(shard.path, filesystem=storage.fs)
        even = [len(t) % 2 == 0 for t in table.column("text").to_pylist()]
        kept, odd = table.filter(pa.array(even)), table.filter(pa.array([not e for e in even]))
        return ShardOutput(table.num_rows, kept, drop_rows(odd, self.name, ["odd"] * odd.num_rows))


def make_shards(storage: Storage, directory: str, n: int) -> list[ShardInput]:
    storage.makedirs(directory)
    shards = []
    for i in range(n):
        docs = [Document(f"{i}-{j}", "t", "x" * (j + i), None) for j in range(5)]
        path = f"{directory}/in-{i}.parquet"
        with storage.fs.open_output_stream(path) as f:
            pq.write_table(documents_table(docs), f)
        shards.append(ShardInput(f"in-{i}.parquet", path, f"fp{i}", storage.size(path)))
    return shards


def tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def processed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_output_is_published_whole_with_manifest_and_no_staging_left(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 3)
    out = tmp_path / "out"
    manifest = run_stage(Recording(log=str(tmp_path / "log")), shards, str(out), storage)
    assert sorted(tree(out)) == [
        "_dropped/part-00000.parquet",
        "_dropped/part-00001.parquet",
        "_dropped/part-00002.parquet",
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert not os.path.exists(staging_path(str(out)))
    assert manifest.n_in == 15 and manifest.kept + sum(manifest.dropped.values()) == 15


def test_a_failed_run_resumes_only_the_missing_shards_and_matches_a_clean_run(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 3)
    log, marker = tmp_path / "log", tmp_path / "fail"
    stage = Recording(log=str(log), fail_marker=str(marker))
    run_stage(stage, shards, str(tmp_path / "clean"), storage)
    log.unlink()

    marker.write_text("in-2.parquet")
    resumed = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="injected failure on in-2"):
        run_stage(stage, shards, str(resumed), storage)
    assert not resumed.exists()  # nothing half-done is visible
    assert sorted(processed(log)) == ["in-0.parquet", "in-1.parquet", "in-2.parquet"]

    marker.unlink()
    log.unlink()
    run_stage(stage, shards, str(resumed), storage)
    assert processed(log) == ["in-2.parquet"]
    assert tree(resumed) == tree(tmp_path / "clean")


def test_a_staging_directory_of_another_fingerprint_is_started_over(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 3)
    log, marker, out = tmp_path / "log", tmp_path / "fail", tmp_path / "out"
    marker.write_text("in-2.parquet")
    with pytest.raises(RuntimeError, match="injected failure on in-2"):
        run_stage(Recording(log=str(log), fail_marker=str(marker)), shards, str(out), storage)
    marker.unlink()
    log.unlink()
    other = Recording(log=str(log), fail_marker=str(marker) + ".b")  # another fingerprint
    run_stage(other, shards, str(out), storage)
    assert sorted(processed(log)) == ["in-0.parquet", "in-1.parquet", "in-2.parquet"]
    assert sorted(os.listdir(tmp_path)) == ["in", "log", "out"]  # no staging left behind


def test_current_output_is_reused_and_a_config_change_recomputes(storage, tmp_path):
    shards = make_shards(storage, str(tmp_path / "in"), 2)
    log, out = tmp_path / "log", str(tmp_path / "out")
    first = run_stage(Recording(log=str(log)), shards, out, storage)
    run_stage(Recording(log=str(log)), shards, out, storage)
    assert len(processed(log)) == 2  # second run reused the output
    forced = run_stage(Recording(log=str(log)), shards, out, storage, force=True)
    assert len(processed(log)) == 4
    assert forced.fingerprint == first.fingerprint
    other = run_stage(Recording(log=str(log) + ".b"), shards, out, storage)
    assert other.fingerprint != first.fingerprint


def test_worker_count_and_reruns_do_not_change_a_byte(storage, tmp_path):
    pages = [html_page(f"https://x.example/{i}", f"T{i}", [ENGLISH, FRENCH]) for i in range(12)]
    for i in range(3):
        write(tmp_path / "in" / f"s{i}.warc.gz", warc_bytes(pages[i * 4 : i * 4 + 4]))
    shards = archive_shards(storage, str(tmp_path / "in"))
    stage = CCDocuments(crawl="t", input_format="warc")
    run_stage(stage, shards, str(tmp_path / "one"), storage, LocalExecutor(1))
    run_stage(stage, shards, str(tmp_path / "two"), storage, LocalExecutor(2))
    once = tree(tmp_path / "one")
    assert once == tree(tmp_path / "two")
    run_stage(stage, shards, str(tmp_path / "one"), storage, LocalExecutor(2), force=True)
    assert once == tree(tmp_path / "one")


def test_object_store_roots_publish_by_copy_with_the_manifest(tmp_path):
    storage = Storage("memory://bucket/data")
    shards = make_shards(storage, storage.path("in"), 2)
    out = storage.path("stages", "recording", "sample")
    manifest = run_stage(Recording(log=str(tmp_path / "log")), shards, out, storage)
    assert not storage.is_local
    assert storage.exists(f"{out}/_manifest.json")
    parts = [f"{out}/part-00000.parquet", f"{out}/part-00001.parquet"]
    assert storage.list_files(out, ".parquet") == parts
    assert not storage.exists(staging_path(out))
    assert manifest.kept == pq.read_table(f"{out}", filesystem=storage.fs).num_rows


@dataclass(frozen=True)
class ReadsEverything(Recording):
    """A stage whose global pass reads every input it is given, as line dedup's does."""

    input_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    def prepare(self, inputs, storage, workdir, executor):
        for shard in inputs:
            pq.read_table(shard.path, filesystem=storage.fs)
        return self


def test_an_unreadable_input_is_quarantined_and_stays_out_of_a_resumed_global_pass(
    storage, tmp_path
):
    shards = make_shards(storage, str(tmp_path / "in"), 3)
    empty = tmp_path / "in" / "in-3.parquet"
    empty.write_bytes(b"")
    shards.append(ShardInput("in-3.parquet", str(empty), "fp3", 0))
    marker, out = tmp_path / "fail", str(tmp_path / "out")
    marker.write_text("in-1.parquet")
    stage = ReadsEverything(log=str(tmp_path / "log"), fail_marker=str(marker))
    with pytest.raises(RuntimeError, match="injected"):  # the quarantine row is committed
        run_stage(stage, shards, out, storage)
    marker.unlink()
    manifest = run_stage(stage, shards, out, storage)  # resumed: its pass must skip the file
    (quarantined,) = pq.read_table(f"{out}/_dropped/part-00003.parquet").to_pylist()
    assert (quarantined["id"], quarantined["reason"]) == ("in-3.parquet", "unreadable_parquet")
    assert manifest.n_in == 15 + 1 and manifest.shards[3].dropped == {"unreadable_parquet": 1}
