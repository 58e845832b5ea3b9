"""Finding a stage's input shards, with fingerprints, and failing clearly when they are absent.

Raw archives are fingerprinted by content (sha256), upstream partitions by the part hashes in
their manifest, so a stage recomputes exactly when what it reads has changed.
"""

from __future__ import annotations

import posixpath

from curation.manifest import MANIFEST_NAME
from curation.runner import read_manifest
from curation.stage import ShardInput
from curation.storage import Storage

ARCHIVE_SUFFIXES = (".warc.gz", ".warc", ".warc.wet.gz", ".wet.gz", ".wet")
WIKI_DUMP_SUFFIXES = (".xml.bz2", ".xml")


class MissingInput(FileNotFoundError):
    """An input path that does not exist or holds nothing to read."""


def archive_shards(
    storage: Storage, directory: str, suffixes: tuple[str, ...] = ARCHIVE_SUFFIXES
) -> list[ShardInput]:
    """Every raw input file (WARC/WET archives by default) directly in `directory`, by name."""
    if not storage.is_dir(directory):
        raise MissingInput(f"input directory does not exist: {directory}")
    paths = [p for p in storage.list_files(directory) if p.endswith(suffixes)]
    if not paths:
        raise MissingInput(f"no input files ({', '.join(suffixes)}) in {directory}")
    return [file_shard(storage, p) for p in paths]


def file_shard(storage: Storage, path: str) -> ShardInput:
    if not storage.exists(path):
        raise MissingInput(f"input file does not exist: {path}")
    return ShardInput(
        name=posixpath.basename(path),
        path=path,
        fingerprint=storage.sha256(path),
        bytes=storage.size(path),
    )


def partition_shards(storage: Storage, partition: str) -> list[ShardInput]:
    """The kept part files of a finished upstream partition."""
    manifest = read_manifest(storage, partition)
    if manifest is None:
        raise MissingInput(
            f"no {MANIFEST_NAME} in {partition}: the upstream stage has not been materialized"
        )
    return [
        ShardInput(
            name=shard.part_name,
            path=posixpath.join(partition, shard.part_name),
            fingerprint=shard.part_sha256,
            bytes=shard.bytes_out,
        )
        for shard in manifest.shards
    ]
