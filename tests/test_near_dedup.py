"""Global dedup: signatures equal datasketch's; exact and near duplicates across sources and
crawls leave one survivor chosen by the policy; independent sources and shared boilerplate
survive; the result depends on neither worker count nor partition bound; stale signatures fail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from curation.core.documents import DOCUMENT_SCHEMA, drop_rows, schema_with
from curation.core.executor import LocalExecutor
from curation.core.inputs import file_shard, partition_shards
from curation.core.manifest import Manifest
from curation.core.runner import run_stage
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage
from curation.dedup import components as dedup_components
from curation.dedup.components import components_of, connected_components
from curation.dedup.corpus import CorpusGroup, StaleSignatures, corpus_inputs
from curation.dedup.graph import (
    BUCKET_ROW,
    SourceClasses,
    star_pairs,
    survivors,
)
from curation.dedup.minhash import (
    band_keys,
    ngram_hashes,
    shingle_hashes,
    signatures,
    word_hashes,
)
from curation.dedup.near_dedup import DEDUPLICATED_SCHEMA, Deduplicated
from curation.dedup.signatures import MinHashSignatures, signature_matrix

VOCABULARY = [f"w{i}" for i in range(5000)]
CRAWL_ANNOTATIONS = {
    "language": ("en", pa.string()),
    "language_score": (0.9, pa.float32()),
    "perplexity": (300.0, pa.float32()),
    "bucket": ("head", pa.string()),
}


def words(seed: int, n: int = 400) -> list[str]:
    return random.Random(seed).choices(VOCABULARY, k=n)


def text(seed: int, n: int = 400) -> str:
    return " ".join(words(seed, n))


def edited(seed: int, changes: int = 2) -> str:
    """The document `seed` with `changes` words replaced: a near duplicate (Jaccard ~0.95)."""
    ws = words(seed)
    for i in range(changes):
        ws[50 + 150 * i] = "edited"
    return " ".join(ws)


@dataclass(frozen=True)
class Ingest(Stage):
    """Writes raw Parquet files into a finished partition (with a manifest), unchanged."""

    name: ClassVar[str] = "ingest"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = pq.read_table(shard.path, filesystem=storage.fs)
        return ShardOutput(table.num_rows, table, drop_rows(table.slice(0, 0), self.name, []))


@dataclass(frozen=True)
class IngestAnnotated(Ingest):
    output_schema: ClassVar[pa.Schema] = schema_with(
        pa.field(name, kind) for name, (_, kind) in CRAWL_ANNOTATIONS.items()
    )


@dataclass
class World:
    """Upstream partitions with their signatures, written under one temporary root."""

    root: Path
    storage: Storage

    def partition(self, name: str, source: str, parts: list[list[tuple[str, str]]]) -> str:
        """A documents partition of `parts`, each a list of (id, text)."""
        raw = []
        for i, rows in enumerate(parts):
            path = self.root / "raw" / name / f"{i:03d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(
                [
                    {"id": d, "source": source, "text": t, "url": None, "meta": "{}"}
                    for d, t in rows
                ],
                schema=DOCUMENT_SCHEMA,
            )
            if source == "commoncrawl":  # the crawl branch carries annotation columns
                for column, (value, kind) in CRAWL_ANNOTATIONS.items():
                    table = table.append_column(column, pa.array([value] * len(rows), kind))
            pq.write_table(table, path)
            raw.append(file_shard(self.storage, str(path)))
        out = str(self.root / "stages" / name)
        stage = IngestAnnotated() if source == "commoncrawl" else Ingest()
        run_stage(stage, raw, out, self.storage)
        return out

    def sign(self, documents: str, name: str) -> str:
        out = str(self.root / "signatures" / name)
        run_stage(MinHashSignatures(), partition_shards(self.storage, documents), out, self.storage)
        return out

    def group(
        self, name: str, source: str, parts: list[list[tuple[str, str]]], crawl: str | None = None
    ) -> CorpusGroup:
        documents = self.partition(name, source, parts)
        return CorpusGroup(name, documents, self.sign(documents, name), crawl)

    def dedup(
        self,
        groups: list[CorpusGroup],
        out: str,
        stage: Deduplicated | None = None,
        workers: int = 1,
    ) -> Result:
        """Run the stage; check that counts conserve against the inputs and the files."""
        inputs = corpus_inputs(self.storage, groups)
        output = str(self.root / out)
        executor = LocalExecutor(workers)
        manifest = run_stage(stage or Deduplicated(), inputs, output, self.storage, executor)
        kept = pq.read_table(output)
        dropped = pq.read_table(str(Path(output) / "_dropped"))
        assert manifest.n_in == sum(s.rows for s in inputs) == kept.num_rows + dropped.num_rows
        assert manifest.kept == kept.num_rows
        return Result(manifest, kept, dropped)


@dataclass
class Result:
    manifest: Manifest
    kept: pa.Table
    dropped: pa.Table

    @property
    def kept_ids(self) -> list[str]:
        return self.kept.column("id").to_pylist()

    @property
    def removed(self) -> dict[str, tuple[str, str]]:
        return {
            r["id"]: (r["reason"], r["duplicate_of"])
            for r in self.dropped.select(["id", "reason", "duplicate_of"]).to_pylist()
        }


@pytest.fixture
def world(tmp_path, storage) -> World:
    return World(tmp_path, storage)


# --- signatures ---------------------------------------------------------------------------


def datasketch_signature(text: str, num_perm: int = 112, seed: int = 1) -> np.ndarray:
    """datasketch's own MinHash of the same shingles: the reference our batch must equal."""
    shingles, _ = ngram_hashes(*word_hashes([text]), 5)
    minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=int, scheme="affine32")
    minhash.update_batch((shingles >> np.uint64(32)).tolist())
    return minhash.hashvalues


def test_signatures_equal_datasketch_per_document():
    texts = [
        text(1),
        "Ünïcode ÉTÉ, café — naïve façade. Ещё один текст на русском языке здесь.",
        "four words only here",  # fewer than 5 words: one shingle of all of them
        "",
        "!!! ... ???",  # no words at all
        text(2, 250_000),  # over a megabyte: its own word-hashing chunk
        text(3, 7),
    ]
    values, n_words = signatures(texts, 112, 1)
    assert n_words.tolist() == [400, 13, 4, 0, 0, 250_000, 7]  # the lone dash is a word
    for row, document in zip(values, texts, strict=True):
        assert np.array_equal(row, datasketch_signature(document))
    assert np.array_equal(
        signatures(texts[1:2], 64, 7)[0][0], datasketch_signature(texts[1], 64, 7)
    )


def test_shingles_ignore_case_spacing_and_ascii_punctuation_only():
    base = signatures(["the quick brown fox jumps over the lazy dog"], 112, 1)[0]
    same = signatures(["The  QUICK brown-fox, jumps\nover (the) lazy dog!"], 112, 1)[0]
    other = signatures(["the quick brown fox jumps over the lazy cat"], 112, 1)[0]
    assert np.array_equal(base, same) and not np.array_equal(base, other)
    assert len(shingle_hashes("four words only here")) == 1
    assert len(shingle_hashes("one two three four five six")) == 2


def test_band_keys_match_exactly_when_a_band_matches():
    values = signatures([text(1), edited(1), text(2)], 112, 1)[0]
    keys = band_keys(values, 14, 8)
    for band in range(14):
        same = np.array_equal(
            values[0, band * 8 : band * 8 + 8], values[1, band * 8 : band * 8 + 8]
        )
        assert (keys[0, band] == keys[1, band]) == same
    assert not np.intersect1d(keys[0], keys[2]).size
    swapped = band_keys(values[:, [*range(8, 16), *range(8)]], 2, 8)
    assert swapped[0, 0] != keys[0, 1]  # the band index is part of the key


def test_signature_stage_writes_one_row_per_document(world, storage):
    documents = world.partition("docs", "github", [[("a", text(1)), ("b", ""), ("c", text(1))]])
    table = pq.read_table(world.sign(documents, "docs"))
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    assert table.column("n_words").to_pylist() == [400, 0, 400]
    digests = table.column("digest").to_pylist()
    assert len(digests[0]) == 20 and digests[0] == digests[2] != digests[1]
    matrix = signature_matrix(table.column("signature"), 112)
    assert np.array_equal(matrix[0], datasketch_signature(text(1)))


# --- the graph ----------------------------------------------------------------------------


def bucket_rows(rows: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=BUCKET_ROW)


def test_star_pairs_link_each_member_to_the_first_compatible_one():
    classes = SourceClasses.from_pairs([("c4", "commoncrawl")])
    c4, cc, other = classes.of(["c4", "commoncrawl", "github"])
    # bucket 7: cc doc 1 first, then c4 docs 2 and 3, a github doc 4; bucket 9 alone
    rows = bucket_rows([(7, 3, c4), (7, 1, cc), (9, 5, other), (7, 2, c4), (7, 4, other)])
    pairs, heads = star_pairs(rows, classes.compatible)
    # to the first c4 (2): 3 and 4; to the first cc (1): 4; to the first github (4): 1, 2, 3.
    # Never a c4 document with a commoncrawl one, and bucket 9 has no pair.
    assert pairs.tolist() == [[1, 4], [2, 3], [2, 4], [3, 4]]
    assert heads.tolist() == [False, True, True, True, True]


def test_components_and_survivors_follow_the_policy_order():
    nodes, component = connected_components(np.array([[10, 11], [12, 11], [20, 21]], np.uint64))
    assert nodes.tolist() == [10, 11, 12, 20, 21] and component.tolist() == [0, 0, 0, 3, 3]
    independent = SourceClasses.from_pairs([("c4", "commoncrawl")]).independent
    classes = np.array([1, 2, 0, 2, 2], np.uint8)  # c4, commoncrawl, github, cc, cc
    best_first = np.array([2, 0, 1, 4, 3])
    # the github node is best and takes both independent sources with it
    assert survivors(component, best_first, classes, independent).tolist() == [2, 2, 2, 4, 4]
    # without github, c4 and commoncrawl each keep their own
    only = np.array([0, 1])
    pair_component = np.array([0, 0])
    assert survivors(pair_component, only, classes[:2], independent).tolist() == [0, 1]


def union_find(edges: np.ndarray) -> dict[int, int]:
    """The reference: each node's component's smallest node, by a plain union-find."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges.tolist():
        low, high = sorted((root(a), root(b)))
        parent[high] = low
    return {node: root(node) for node in parent}


def graph_shapes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, int]:
    """Document-key edges of every shape at once, some repeated or reversed: a chain of sorted
    keys and one of shuffled keys (n nodes each), a star, many small components (pairs, some
    joined), and a sparse random graph. Returns them and the longest chain's length."""
    keys = np.unique(
        (rng.integers(0, 40, 8 * n, dtype=np.uint64) << np.uint64(32))
        + rng.integers(0, 1 << 20, 8 * n, dtype=np.uint64)
    )
    keys = rng.permutation(keys)
    chunks = np.split(keys[: 7 * n], np.cumsum([n, n, n, 2 * n])[:4])
    sorted_chain, shuffled_chain, star, small, sparse = chunks
    sorted_chain = np.sort(sorted_chain)
    parts = [
        np.stack([sorted_chain[:-1], sorted_chain[1:]], axis=1),
        np.stack([shuffled_chain[:-1], shuffled_chain[1:]], axis=1),
        np.stack([np.full(n - 1, star[n // 2]), np.delete(star, n // 2)], axis=1),
        small[: len(small) // 2 * 2].reshape(-1, 2),
        small[: len(small) // 3 * 3].reshape(-1, 3)[:, [0, 2]],
        sparse[rng.integers(0, len(sparse), (len(sparse) * 2 // 3, 2))],
    ]
    edges = np.concatenate(parts)
    edges = np.concatenate([edges, edges[rng.integers(0, len(edges), n)][:, ::-1]])
    return rng.permutation(edges[edges[:, 0] != edges[:, 1]]), n


@pytest.mark.parametrize(
    ("nodes", "partitions", "workers"), [(600, 1, 1), (600, 3, 1), (600, 16, 1), (6, 3, 2)]
)
def test_partitioned_components_equal_union_find(nodes, partitions, workers):
    edges, longest = graph_shapes(np.random.default_rng(nodes + partitions), nodes)
    found, labels, rounds = components_of(edges, partitions, LocalExecutor(workers))
    expected = union_find(edges)
    assert found.tolist() == sorted(expected)
    assert labels.tolist() == [expected[node] for node in found.tolist()]
    assert rounds <= np.ceil(np.log2(longest)) + 2  # pointer jumping: not one per link


# --- the stage ----------------------------------------------------------------------------

X, Y, Z, W = text(10), text(11), text(12), text(13)
CRAWL_A, CRAWL_B = "CC-MAIN-2019-04", "CC-MAIN-2020-05"


def policy_world(world: World) -> list[CorpusGroup]:
    """Groups in the order opposite to the policy, so input order never picks the survivor."""
    return [
        world.group(
            "commoncrawl/b",
            "commoncrawl",
            [
                [
                    ("a-z", edited(12, 1)),
                    ("cc-b-x", "\n".join(X.split())),
                    ("cc-b-y", edited(11, 3)),
                ],
                [("w-2", W), ("w-1", W), ("cc-b-u", text(20))],
            ],
            CRAWL_B,
        ),
        world.group(
            "commoncrawl/a",
            "commoncrawl",
            [
                [("cc-a-x", X), ("cc-a-y", Y), ("z-late", Z)],
                [("cc-a-u", text(21)), ("p-1", "?! ..."), ("p-2", " ?!\n...")],  # no words
            ],
            CRAWL_A,
        ),
        world.group("github/all", "github", [[("gh-y", edited(11)), ("gh-v", text(22))], []]),
        world.group("wikipedia/all", "wikipedia", [[("wiki-x", X), ("wiki-u", text(23))]]),
    ]


def test_one_survivor_per_cluster_by_source_then_crawl_then_id(world):
    result = world.dedup(policy_world(world), "out")
    assert result.removed == {
        "cc-b-x": ("exact_duplicate", "wiki-x"),  # whitespace aside, the same text
        "cc-a-x": ("exact_duplicate", "wiki-x"),  # wikipedia before commoncrawl
        "cc-a-y": ("near_duplicate", "gh-y"),  # github before commoncrawl
        "cc-b-y": ("near_duplicate", "gh-y"),
        "a-z": ("near_duplicate", "z-late"),  # the earlier crawl before the smaller id
        "w-2": ("exact_duplicate", "w-1"),  # same crawl: the smaller id, not the first row
        "p-2": ("exact_duplicate", "p-1"),  # no shingles: only the digest key finds it
    }
    assert sorted(result.kept_ids) == sorted(
        ["cc-b-u", "w-1", "cc-a-u", "p-1", "z-late", "gh-y", "gh-v", "wiki-x", "wiki-u"]
    )
    histograms = result.manifest.histograms
    assert histograms["removed_by_source_pair"] == {
        "wikipedia<-commoncrawl": 2,
        "github<-commoncrawl": 2,
        "commoncrawl<-commoncrawl": 3,
    }
    assert histograms["cluster_size"] == {"3": 2, "2": 3}
    summary = result.manifest.summary
    assert summary["clusters"] == 5 and summary["documents_in_clusters"] == 12
    biggest = summary["example_clusters"][0]
    assert biggest["size"] == 3 and biggest["documents"][0]["decision"] == "kept"
    assert biggest["documents"][0]["text"] == " ".join(biggest["documents"][0]["text"].split())


def test_output_keeps_annotations_in_one_schema(world):
    result = world.dedup(policy_world(world), "out")
    assert result.kept.schema.remove_metadata().equals(DEDUPLICATED_SCHEMA)
    rows = {r["id"]: r for r in result.kept.to_pylist()}
    assert rows["z-late"]["language"] == "en" and rows["z-late"]["perplexity"] == 300.0
    assert rows["gh-y"]["language"] is None and rows["z-late"]["wiki_prob"] is None
    assert set(result.dropped.column("duplicate_of_source").to_pylist()) == {
        "wikipedia",
        "github",
        "commoncrawl",
    }


def test_the_result_depends_on_neither_workers_nor_the_partition_bound(world):
    groups = policy_world(world)
    one = world.dedup(groups, "one", Deduplicated(), workers=1)
    many = world.dedup(groups, "many", Deduplicated(max_rows_per_bucket_partition=20), workers=2)
    assert one.manifest.summary["bucket_partitions"] == 1
    assert many.manifest.summary["bucket_partitions"] > 4
    assert one.kept.equals(many.kept) and one.dropped.equals(many.dropped)
    assert [s.part_sha256 for s in one.manifest.shards] == [
        s.part_sha256 for s in many.manifest.shards
    ]


def mixed_world(world: World) -> list[CorpusGroup]:
    """The policy world, plus c4 and a source outside the priority list: "q" is a cluster whose
    best document (c4) is independent of one member (commoncrawl), linked through a third."""
    q = text(14)
    return policy_world(world) + [
        world.group("c4/a", "c4", [[("c4-x", X), ("c4-q", q)]], CRAWL_A),
        world.group("forum/all", "forum", [[("forum-q", edited(14))]]),
        world.group("commoncrawl/c", "commoncrawl", [[("cc-c-q", q)]], "CC-MAIN-2021-01"),
    ]


def test_a_tiny_cluster_bound_changes_nothing_but_the_partitions(world, monkeypatch):
    groups = mixed_world(world)
    default = world.dedup(groups, "default")
    # and slices combined two at a time, candidates merged after every one
    monkeypatch.setattr(dedup_components, "_SLICES", 2)
    monkeypatch.setattr(dedup_components, "_MERGE_ROWS", 1)
    tiny = world.dedup(groups, "tiny", Deduplicated(max_rows_per_cluster_partition=2))
    assert default.removed == {
        "cc-b-x": ("exact_duplicate", "wiki-x"),
        "cc-a-x": ("exact_duplicate", "wiki-x"),
        "c4-x": ("exact_duplicate", "wiki-x"),
        "cc-a-y": ("near_duplicate", "gh-y"),
        "cc-b-y": ("near_duplicate", "gh-y"),
        "a-z": ("near_duplicate", "z-late"),
        "w-2": ("exact_duplicate", "w-1"),
        "p-2": ("exact_duplicate", "p-1"),
        "forum-q": ("near_duplicate", "c4-q"),  # c4 is kept, and so is cc-c-q (independent)
    }
    assert {"c4-q", "cc-c-q"} <= set(default.kept_ids)
    one, many = default.manifest.summary, tiny.manifest.summary
    assert one.pop("cluster_partitions") == 1 and many.pop("cluster_partitions") > 8
    assert one == many and one["cluster_rounds"] >= 2
    assert default.kept.equals(tiny.kept) and default.dropped.equals(tiny.dropped)
    assert default.manifest.histograms == tiny.manifest.histograms
    assert [s.part_sha256 for s in default.manifest.shards] == [
        s.part_sha256 for s in tiny.manifest.shards
    ]


def test_a_killed_cluster_step_resumes_from_its_finished_rounds(world, storage, tmp_path):
    inputs = corpus_inputs(storage, mixed_world(world))
    workdir = tmp_path / "work"
    stage = Deduplicated(max_rows_per_cluster_partition=2)
    first = stage.prepare(inputs, storage, str(workdir), LocalExecutor(1))
    assert first.summary()["cluster_rounds"] >= 2
    decisions = {p: p.read_bytes() for p in (workdir / "cluster").glob("*.parquet")}
    # killed in round 1: after its labels, with one partition's spread still unwritten
    components = workdir / "components"
    finished = (
        "edges-in/",
        "edges/",
        "nodes/",
        "round-000/",
        "round-001/labels/",
        "round-001/spread/",
    )
    lost = [workdir / "cluster" / "_summary.json", *decisions]
    for path in components.rglob("*"):
        name = path.relative_to(components).as_posix()
        if path.is_file() and (
            not name.startswith(finished) or name.startswith("round-001/spread/000002")
        ):
            lost.append(path)
    for path in lost:
        path.unlink()
    kept = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    again = stage.prepare(inputs, storage, str(workdir), LocalExecutor(1))
    assert again.summary() == first.summary()
    assert {p: p.read_bytes() for p in decisions} == decisions
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_distinct_documents_sharing_boilerplate_are_kept(world):
    boilerplate = words(30, 300)
    a = " ".join(boilerplate + words(31, 300))
    b = " ".join(words(32, 300) + boilerplate)
    groups = [
        world.group("github/all", "github", [[("a", a), ("b", b), ("n1", Y), ("n2", edited(11))]])
    ]
    # 56 bands of 2 rows: a pair at Jaccard 1/3 shares a band almost surely (1 - 0.89^56)
    result = world.dedup(groups, "out", Deduplicated(bands=56, rows=2))
    assert sorted(result.kept_ids) == ["a", "b", "n1"]
    assert result.removed == {"n2": ("near_duplicate", "n1")}
    summary = result.manifest.summary
    assert summary["candidate_pairs"] > summary["verified_pairs"] == 1


def test_independent_sources_are_not_deduplicated_against_each_other(world):
    t = text(40)
    groups = [
        world.group("commoncrawl/a", "commoncrawl", [[("cc-x", X), ("cc-t", t)]], CRAWL_A),
        world.group("c4/a", "c4", [[("c4-x", X), ("c4-x2", X), ("c4-t", t)]], CRAWL_A),
        world.group("github/all", "github", [[("gh-t", t)]]),
    ]
    result = world.dedup(groups, "independent")
    assert result.removed == {
        "c4-x2": ("exact_duplicate", "c4-x"),  # within c4 still deduplicated
        "cc-t": ("exact_duplicate", "gh-t"),  # both give way to a third source
        "c4-t": ("exact_duplicate", "gh-t"),
    }
    assert "cc-x" in result.kept_ids and "c4-x" in result.kept_ids
    dependent = world.dedup(groups, "dependent", Deduplicated(independent_sources=()))
    assert dependent.removed["cc-x"] == ("exact_duplicate", "c4-x")


def test_banding_can_be_derived_from_a_threshold():
    assert Deduplicated().banding(112) == (14, 8)
    assert Deduplicated(threshold=0.72, bands=0).banding(112) == (12, 9)
    with pytest.raises(ValueError, match="exceed"):
        Deduplicated(bands=20, rows=8).banding(112)
    with pytest.raises(ValueError, match="two different sources"):
        Deduplicated(independent_sources=(("c4", "c4"),))


def test_signatures_of_other_documents_are_refused(world, storage):
    group = world.group("github/all", "github", [[("a", text(1)), ("b", text(2))]])
    world.partition("github/all", "github", [[("a", text(1)), ("b", text(3))]])  # re-made
    with pytest.raises(StaleSignatures, match="computed from other documents"):
        corpus_inputs(storage, [group])


def test_misaligned_signature_rows_are_refused(world, storage):
    group = world.group("github/all", "github", [[("a", text(1)), ("b", text(2))]])
    part = Path(group.signatures) / "part-00000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.take([1, 0]), part)  # same rows, other order: the manifest can't tell
    with pytest.raises(StaleSignatures, match="not aligned"):
        world.dedup([group], "out")


def test_group_names_must_be_unique(world, storage):
    group = world.group("github/all", "github", [[("a", text(1))]])
    with pytest.raises(ValueError, match="repeat"):
        corpus_inputs(storage, [group, group])


def test_a_resumed_pass_reuses_every_finished_file(world, storage, tmp_path):
    inputs = corpus_inputs(storage, policy_world(world))
    workdir = str(tmp_path / "work")
    stage = Deduplicated(max_rows_per_bucket_partition=20)
    first = stage.prepare(inputs, storage, workdir, LocalExecutor(1))
    files = {p: p.stat().st_mtime_ns for p in Path(workdir).rglob("*") if p.is_file()}
    again = stage.prepare(inputs, storage, workdir, LocalExecutor(1))
    assert {p: p.stat().st_mtime_ns for p in Path(workdir).rglob("*") if p.is_file()} == files
    assert again.summary() == first.summary() and first.summary()["clusters"] == 5
