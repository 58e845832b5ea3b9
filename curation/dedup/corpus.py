"""The inputs of global dedup: every upstream partition's parts, each with its signature part.

`deduplicated` reads many partitions at once (each crawl's commoncrawl and c4, every curated
source); part names repeat across them, so a shard is named `<group>/<part>`. Each shard
carries the path of the signature part of the same rows (`dedup_signatures` run over the same
partition: part i of one is part i of the other) and its crawl. That pairing is input, not
config: it is in the shard's fingerprint (both parts' hashes and the crawl), so the run
fingerprint changes when either part or the crawl label does.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from curation.core.inputs import MissingInput, parquet_parts
from curation.core.manifest import Manifest, fingerprint, read_manifest
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.dedup.signatures import MinHashSignatures


class StaleSignatures(ValueError):
    """Signatures that were not computed from the documents they are paired with."""


@dataclass(frozen=True)
class CorpusGroup:
    """One upstream partition: a unique name (e.g. "commoncrawl/CC-MAIN-2020-05"), where its
    documents and their signatures are, and its crawl (None for a curated source)."""

    name: str
    documents: str
    signatures: str
    crawl: str | None = None


@dataclass(frozen=True)
class CorpusShard(ShardInput):
    """A document part, the signature part of the same rows, its crawl and row count."""

    signatures: str = ""
    crawl: str | None = None
    rows: int = 0
    num_perm: int = 0


def corpus_inputs(storage: Storage, groups: Sequence[CorpusGroup]) -> list[CorpusShard]:
    """The shards of every group, in group then part order (the order of document keys).

    Fails clearly when a partition is missing, when a signature partition was computed from
    other documents than the ones beside it, or when two groups' signature configs differ."""
    names = [g.name for g in groups]
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"corpus group names repeat: {repeated}")
    shards, configs = [], {}
    for group in groups:
        documents = parquet_parts(storage, group.documents)
        signed = _finished(storage, group.signatures)
        _check_signed(group, documents, signed)
        configs[group.name] = signed.config
        for part, signature in zip(documents, signed.shards, strict=True):
            hashes = {"documents": part.fingerprint, "signatures": signature.part_sha256}
            shards.append(
                CorpusShard(
                    name=f"{group.name}/{part.name}",
                    path=part.path,
                    fingerprint=fingerprint(hashes | {"crawl": group.crawl}),
                    bytes=part.bytes,
                    signatures=posixpath.join(group.signatures, signature.part_name),
                    crawl=group.crawl,
                    rows=signature.n_in,
                    num_perm=signed.config["num_perm"],
                )
            )
    if len({json.dumps(c, sort_keys=True) for c in configs.values()}) > 1:
        raise ValueError(f"signature configs differ between corpus groups: {configs}")
    return shards


def _finished(storage: Storage, partition: str) -> Manifest:
    manifest = read_manifest(storage, partition)
    if manifest is None:
        raise MissingInput(f"no finished partition (no manifest) at {partition}")
    return manifest


def _check_signed(group: CorpusGroup, documents: list[ShardInput], signed: Manifest) -> None:
    """The signature run's inputs must be exactly the document partition's current parts."""
    if signed.stage != MinHashSignatures.name:
        raise StaleSignatures(f"{group.signatures} is a {signed.stage} partition, not signatures")
    parts = [[part.name, part.fingerprint] for part in documents]
    if [[i["name"], i["fingerprint"]] for i in signed.inputs] != parts:
        raise StaleSignatures(
            f"the signatures at {group.signatures} were computed from other documents than "
            f"those now at {group.documents}: materialize {MinHashSignatures.name} again"
        )
