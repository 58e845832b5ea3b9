"""Finding a stage's input shards, with fingerprints, and failing clearly when they are absent.

Raw archives are fingerprinted by content (sha256), upstream partitions by the part hashes in
their manifest, so a stage recomputes exactly when what it reads has changed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from curation.core.manifest import MANIFEST_NAME, read_manifest
from curation.core.stage import ShardInput
from curation.core.storage import Storage

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


def contract_parts(storage: Storage, inputs: Sequence[ShardInput | str]) -> list[ShardInput]:
    """ShardInputs as given; a path is a Parquet file or a partition directory (its manifest's
    parts when it has one, else its `*.parquet` files by name)."""
    resolved: list[ShardInput] = []
    for item in inputs:
        if isinstance(item, ShardInput):
            resolved.append(item)
        elif storage.is_dir(item):
            resolved.extend(parquet_parts(storage, item))
        else:
            resolved.append(file_shard(storage, item))
    if not resolved:
        raise MissingInput("no input parts to read")
    return resolved


def parquet_parts(storage: Storage, directory: str) -> list[ShardInput]:
    """A directory of contract Parquet: a finished partition's parts (by its manifest), or
    any directory's `*.parquet` files by name."""
    if storage.exists(posixpath.join(directory, MANIFEST_NAME)):
        return partition_shards(storage, directory)
    paths = storage.list_files(directory, ".parquet")
    if not paths:
        raise MissingInput(f"no Parquet parts in {directory}")
    return [file_shard(storage, p) for p in paths]
