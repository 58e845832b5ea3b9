"""Publishing on an object store stays atomic as readers see it. S3 has no directory rename, so
`publish` (curation/core/runner.py) removes the previous version, copies the staging directory
with `_manifest.json` last, and readers find a partition only through its manifest
(curation/core/inputs.py `partition_shards`). A run SIGKILLed mid-publish on the S3 server of
tests/object_store.py must leave readers the previous complete partition or none, never a
manifest whose files are not all there; and a rerun publishes the complete partition.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from archives import ENGLISH, FRENCH, html_page, warc_bytes
from faults import kill_group, poll_until, start
from object_store import new_bucket
from store_publish import run

from curation.core.inputs import MissingInput, partition_shards
from curation.core.manifest import DROPPED_DIR, MANIFEST_NAME, Manifest, read_manifest
from curation.core.runner import staging_path
from curation.core.storage import Storage

SHARDS = 10  # 21 objects to copy: a copy phase of about a second on moto
CHILD = Path(__file__).with_name("store_publish.py")


@pytest.fixture
def store(s3_env) -> Storage:
    """A data root in a new bucket of the session's S3 server."""
    return Storage(f"s3://{new_bucket(s3_env)}/data")


def write_archives(storage: Storage, name: str, n: int) -> str:
    """`n` one-page WARC archives under `<root>/<name>/`; the directory."""
    directory = storage.path(name)
    storage.makedirs(directory)
    for i in range(n):
        page = html_page(f"https://x.example/{i}", f"T{i}", [ENGLISH, FRENCH])
        storage.write_bytes(posixpath.join(directory, f"s{i:03d}.warc.gz"), warc_bytes([page]))
    return directory


def listing(storage: Storage, directory: str) -> list[str]:
    """The relative names of every file under `directory`, from one recursive listing: what
    exists at (nearly) one instant, however many files there are; none if it is absent."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    infos = storage.fs.get_file_info(selector)
    return sorted(
        posixpath.relpath(i.path, directory) for i in infos if i.type == pafs.FileType.File
    )


def files(storage: Storage, directory: str) -> dict[str, bytes]:
    """Relative name -> bytes of every file under `directory` (none if absent)."""
    names = listing(storage, directory)
    return {n: storage.read_bytes(posixpath.join(directory, n)) for n in names}


def manifest_now(storage: Storage, output: str) -> Manifest | None:
    """`read_manifest`, with a manifest deleted between its existence check and its read
    (a publish removing the previous version) taken as what it is: no manifest. (pyarrow's
    S3 reports that as an OSError of "RESOURCE_NOT_FOUND", not FileNotFoundError.)"""
    try:
        return read_manifest(storage, output)
    except OSError:
        if storage.exists(posixpath.join(output, MANIFEST_NAME)):
            raise
        return None


def reader_view(storage: Storage, output: str) -> str | None:
    """What a reader finds at `output` now: None (not materialized: `partition_shards`
    refuses it), or the fingerprint of a partition whose every listed file is there.

    A file missing while the same manifest is there before and after looking is the partial
    partition readers must never see; a manifest gone by then means a newer publish overtook
    this reader (it removes the old version first), which is not one."""
    manifest = manifest_now(storage, output)
    if manifest is None:
        try:
            partition_shards(storage, output)
        except MissingInput as refused:
            assert "has not been materialized" in str(refused)
            return None
        return reader_view(storage, output)  # a manifest appeared meanwhile: look again
    names = [s.part_name for s in manifest.shards]
    listed = {*names, *(posixpath.join(DROPPED_DIR, n) for n in names)}
    missing = sorted(listed - set(listing(storage, output)))
    after = manifest_now(storage, output)
    if missing and after is not None and after.fingerprint == manifest.fingerprint:
        pytest.fail(f"a reader saw a partial partition: {missing} missing under {output}")
    return manifest.fingerprint


def assert_complete(storage: Storage, output: str, expected: dict[str, bytes], n: int) -> None:
    """The partition is published whole: byte-identical to `expected` (the killed run's
    finished staging directory), readable, its `n` parts listed, with no staging left."""
    assert files(storage, output) == expected
    assert reader_view(storage, output) is not None
    assert len(partition_shards(storage, output)) == n
    assert not storage.exists(staging_path(output))


def test_a_run_killed_while_copying_its_output_never_shows_a_partial_partition(
    store: Storage, tmp_path: Path
):
    """SIGKILL the publishing process once some, not all, of its part files are in the
    output: readers saw the previous version or nothing, then see nothing (no manifest), and
    a rerun publishes the complete partition."""
    output = store.path("stages", "cc_documents", "t")
    run(store, write_archives(store, "previous", 2), output)  # a previous complete version
    previous = reader_view(store, output)
    inputs, log = write_archives(store, "archives", SHARDS), tmp_path / "killed.log"
    seen = {previous}

    def look() -> None:
        seen.add(reader_view(store, output))

    def copying_kept_parts() -> bool:
        """Every dropped part copied (they come first) and some kept part: mid-copy of the
        new version, not the removal of the previous one (which has 2 of each)."""
        names = listing(store, output)
        dropped = [n for n in names if n.startswith(f"{DROPPED_DIR}/")]
        return len(dropped) == SHARDS and any(n.startswith("part-") for n in names)

    process = start([sys.executable, CHILD, store.root, inputs, output], log)
    try:
        poll_until(process, copying_kept_parts, log, each=look)
    finally:
        kill_group(process)
    assert process.returncode == -9, log.read_text()[-3000:]
    copied = store.list_files(output, ".parquet")
    assert 1 <= len(copied) < SHARDS, f"not killed mid-copy: {len(copied)} parts copied"
    assert seen <= {previous, None}
    assert reader_view(store, output) is None
    staged = files(store, staging_path(output))  # the killed run's finished output
    assert MANIFEST_NAME in staged and len(staged) == 2 * SHARDS + 1

    run(store, inputs, output)
    assert_complete(store, output, staged, SHARDS)


def test_a_run_killed_while_removing_the_previous_version_never_shows_it_partial(
    store: Storage, tmp_path: Path
):
    """The publishing process dies halfway through deleting the previous version (see
    tests/store_publish.py): readers see that version whole or not at all, never its manifest
    with files gone; a rerun publishes the complete partition."""
    output = store.path("stages", "cc_documents", "t")
    previous = run(store, write_archives(store, "previous", 2), output).fingerprint
    inputs, log = write_archives(store, "archives", 3), tmp_path / "killed.log"
    seen = {previous}

    process = start([sys.executable, CHILD, store.root, inputs, output, "--die-mid-delete"], log)
    try:
        while process.poll() is None:
            seen.add(reader_view(store, output))
    finally:
        kill_group(process)
    assert process.returncode == -9, log.read_text()[-3000:]
    assert files(store, output), "the previous version was not being removed"
    assert seen <= {previous, None}
    assert reader_view(store, output) is None
    staged = files(store, staging_path(output))

    run(store, inputs, output)
    assert_complete(store, output, staged, 3)
