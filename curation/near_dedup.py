"""`deduplicated`: exact and MinHash near-duplicate removal across every source and crawl.

Two stages. `dedup_signatures` (curation/dedup_signatures.py) computes one MinHash signature
(curation/minhash.py), content digest and word count per document of one upstream partition;
it is materialized once per partition (each crawl, each curated source), so a new crawl only
computes its own. `deduplicated` reads every partition with its signatures
(`dedup_corpus.corpus_inputs`) and writes the corpus without its duplicates.

The global pass, `Deduplicated.prepare`, is map-reduce over files under the run's work
directory (curation/dedup_buckets.py); every step runs through the shard executor and skips
what a killed run had finished:

1. Map, per input shard: LSH band keys of every signature (`bands` keys of `rows` values)
   plus one key from the content digest, so identical texts (whitespace aside) always meet,
   even without words. A combiner pairs the shard's own documents that share a key and passes
   on only the first per key and source class. Rows (key, document) are hash-partitioned by
   key into P bucket partitions, P = ceil(documents x (bands + 1) /
   `max_rows_per_bucket_partition`), so each reduce holds about that many rows at most (more
   only under skew, and the combiner caps one key at one row per shard and class): about 80
   bytes a row while grouping, plus the records (4 x num_perm + 20 bytes) of at most 65,536
   candidate pairs at a time while verifying, whatever the corpus size.
2. Reduce, per bucket partition: each bucket's members are paired with its first members
   (a star, `dedup_graph.star_pairs`, not all pairs), and each candidate pair is verified:
   the MinHash estimate of Jaccard similarity over the whole signature >= `threshold`, or
   identical digests. Sharing a band is not enough: two pages with a long boilerplate
   paragraph in common can share one and still be different documents. Verification uses
   the signature estimate, not the exact shingle sets (those would need every candidate's
   text at the reduce); its standard error near 0.72 at 112 permutations is about 0.04.
3. Cluster (in `prepare` itself): union-find over all verified edges. Its memory grows with
   the number of documents that have a duplicate (~150 bytes each in bench/bench_dedup.py),
   not with the corpus; still, it is the one step that no setting bounds. Each cluster keeps
   one document: by `source_priority` (earlier wins), then earliest crawl (curated sources
   have none and come first), then smallest id. Decisions are written per input shard.
4. `process`, the second map: one shard, its own decisions.

Why this priority: the curated sources are cleaner copies of what the web repeats (an
article and its scraped mirrors) and they are small, so dropping the web copy costs the web
crawl nothing while dropping the curated one would remove an article. Among web copies the
earliest crawl wins, so a page kept from an old crawl stays the survivor when a newer crawl
brings more copies of it.

Independent sources: `independent_sources` lists pairs of sources not deduplicated against
each other (no edge between them is ever made). The default is c4 with commoncrawl: the
paper's C4 is a second processing of the same crawls and both are in the mixture with their
own shares, so a page both keep must stay in both (they overlap by construction). A cluster
that links two independent sources through a third (a GitHub README also in both) keeps the
third and drops both (`dedup_graph.survivors`).

Output: kept rows in the contract schema plus every known annotation column (`language`,
`language_score`, `perplexity`, `bucket`, `wiki_prob`), null where a source has none, so every
part has one schema (other, unknown columns are not carried). Dropped rows carry `reason`
(`exact_duplicate` when their digest equals the survivor's, else `near_duplicate`),
`duplicate_of` (the survivor's id) and `duplicate_of_source`. Histograms: `cluster_size` (one
count per cluster) and `removed_by_source_pair` ("github<-commoncrawl": commoncrawl rows
dropped for a github survivor). The manifest's summary holds the pass's numbers and a few
example clusters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.dedup_buckets import BucketPlan, MapTask, ReduceTask, pair_counts, verified_edges
from curation.dedup_corpus import CorpusShard
from curation.dedup_graph import (
    ROW_MASK,
    SHARD_SHIFT,
    SourceClasses,
    connected_components,
    survivors,
)
from curation.dedup_signatures import SIGNATURE_SCHEMA, digest_matrix
from curation.documents import DOCUMENT_SCHEMA, drop_rows, schema_with
from curation.minhash import banding_for
from curation.stage import ShardInput, ShardOutput, Stage, state_field
from curation.storage import Storage
from curation.wikiref import WikiRefFilter

ANNOTATION_FIELDS = [  # every annotation column a stage of the graph adds, nullable
    f.with_nullable(True)
    for f in WikiRefFilter.output_schema
    if f.name not in DOCUMENT_SCHEMA.names
]
DEDUPLICATED_SCHEMA = schema_with(ANNOTATION_FIELDS)
DEFAULT_PRIORITY = ("wikipedia", "books", "arxiv", "stackexchange", "github", "c4", "commoncrawl")
DECISIONS = np.array(["kept", "exact_duplicate", "near_duplicate"])  # indexed by decision code

_SUMMARY = "cluster/_summary.json"  # written last: the cluster step is done
_EXAMPLES = 5
_EXAMPLE_MEMBERS = 4
_EXAMPLE_CHARS = 160


@dataclass
class Clusters:
    """Every document that has a duplicate: its key, cluster, attributes and decision."""

    keys: np.ndarray  # document keys, sorted
    component: np.ndarray  # per document, the index of its cluster's smallest key
    ids: pa.Array
    sources: pa.Array
    digests: np.ndarray
    crawls: list[str | None]  # per document

    def best_first(self, priority: Sequence[str]) -> np.ndarray:
        """Indices in keep-policy order: source priority, crawl (none first), id, key."""
        rank = pc.index_in(self.sources, pa.array(priority, pa.string()))
        crawl_order = {
            c: i for i, c in enumerate(sorted({c for c in self.crawls if c is not None}))
        }
        table = pa.table(
            {
                "rank": rank.fill_null(len(priority)),
                "crawl": [-1 if c is None else crawl_order[c] for c in self.crawls],
                "id": self.ids,
                "key": self.keys,
            }
        )
        order = [(name, "ascending") for name in table.column_names]
        return pc.sort_indices(table, sort_keys=order).to_numpy()

    def decisions(self, keeper: np.ndarray) -> np.ndarray:
        """Per document a code into `DECISIONS`: kept, exact_duplicate (the same digest as
        its survivor) or near_duplicate."""
        same = np.all(self.digests == self.digests[keeper], axis=1)
        kept = keeper == np.arange(len(keeper))
        return np.where(kept, 0, np.where(same, 1, 2)).astype(np.int8)


def load_clusters(storage: Storage, inputs: Sequence[CorpusShard], edges: np.ndarray) -> Clusters:
    """Clusters of the edges, with ids, sources and digests read from the signature parts
    of only the shards that have a document in one."""
    keys, component = connected_components(edges)
    tables, crawls = [], []
    bounds = np.searchsorted(keys >> SHARD_SHIFT, np.arange(len(inputs) + 1))
    columns = ["id", "source", "digest"]
    for index in np.flatnonzero(np.diff(bounds)):
        rows = (keys[bounds[index] : bounds[index + 1]] & ROW_MASK).astype(np.int64)
        shard = inputs[index]
        table = pq.read_table(shard.signatures, filesystem=storage.fs, columns=columns)
        tables.append(table.take(rows))
        crawls += [shard.crawl] * len(rows)
    empty = pa.schema([SIGNATURE_SCHEMA.field(name) for name in columns]).empty_table()
    table = pa.concat_tables([empty, *tables])
    return Clusters(
        keys,
        component,
        table.column("id").combine_chunks(),
        table.column("source").combine_chunks(),
        digest_matrix(table.column("digest")),
        crawls,
    )


def _decision_path(workdir: str, shard: ShardInput) -> str:
    key = hashlib.sha1(shard.name.encode()).hexdigest()[:20]
    return posixpath.join(workdir, "cluster", f"{key}.parquet")


def write_decisions(
    storage: Storage,
    workdir: str,
    inputs: Sequence[CorpusShard],
    clusters: Clusters,
    keeper: np.ndarray,
    decisions: np.ndarray,
) -> None:
    """One file per input shard: its rows that have a duplicate, their decision, the
    survivor they give way to, and each cluster's size once (on its smallest key)."""
    sizes = np.bincount(clusters.component, minlength=len(clusters.keys))
    bounds = np.searchsorted(clusters.keys >> SHARD_SHIFT, np.arange(len(inputs) + 1))
    storage.makedirs(posixpath.join(workdir, "cluster"))
    for index, shard in enumerate(inputs):
        members = np.arange(bounds[index], bounds[index + 1])
        table = pa.table(
            {
                "row": (clusters.keys[members] & ROW_MASK).astype(np.int64),
                "decision": pa.array(DECISIONS[decisions[members]], pa.string()),
                "kept_id": clusters.ids.take(keeper[members]),
                "kept_source": clusters.sources.take(keeper[members]),
                "cluster_size": sizes[clusters.component[members]],
                "counts_cluster": members == clusters.component[members],
            }
        )
        with storage.fs.open_output_stream(_decision_path(workdir, shard)) as f:
            pq.write_table(table.replace_schema_metadata({"rows": str(shard.rows)}), f)


def example_clusters(
    storage: Storage,
    inputs: Sequence[CorpusShard],
    clusters: Clusters,
    decisions: np.ndarray,
    order: np.ndarray,
) -> list[dict[str, Any]]:
    """The largest clusters (ties: smallest key first), best members first, each with id,
    source, crawl, decision and the start of its text: what a person checks the rules by."""
    sizes = np.bincount(clusters.component, minlength=len(clusters.keys))
    labels = np.flatnonzero(sizes)
    largest = labels[np.lexsort((labels, -sizes[labels]))][:_EXAMPLES]
    members: dict[int, list[int]] = {int(label): [] for label in largest}
    for i in order:
        chosen = members.get(int(clusters.component[i]))
        if chosen is not None and len(chosen) < _EXAMPLE_MEMBERS:
            chosen.append(int(i))
    shown = sorted(i for chosen in members.values() for i in chosen)
    texts = _text_starts(storage, inputs, clusters.keys[shown])
    return [
        {
            "size": int(sizes[label]),
            "documents": [
                {
                    "id": clusters.ids[i].as_py(),
                    "source": clusters.sources[i].as_py(),
                    "crawl": clusters.crawls[i],
                    "decision": str(DECISIONS[decisions[i]]),
                    "text": texts[int(clusters.keys[i])],
                }
                for i in chosen
            ],
        }
        for label, chosen in members.items()
    ]


def _text_starts(storage: Storage, inputs: Sequence[CorpusShard], keys: np.ndarray) -> dict:
    """The first characters of the documents `keys` (sorted), whitespace squeezed."""
    starts: dict[int, str] = {}
    shards = keys >> SHARD_SHIFT
    for shard in np.unique(shards):
        chosen = keys[shards == shard]
        path = inputs[int(shard)].path
        table = pq.read_table(path, filesystem=storage.fs, columns=["text"])
        texts = table.column("text").take((chosen & ROW_MASK).astype(np.int64)).to_pylist()
        for key, text in zip(chosen, texts, strict=True):
            starts[int(key)] = " ".join(text.split())[:_EXAMPLE_CHARS]
    return starts


def conform(table: pa.Table) -> pa.Table:
    """The table in `DEDUPLICATED_SCHEMA`: annotation columns a source lacks become nulls."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in DEDUPLICATED_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=DEDUPLICATED_SCHEMA)


@dataclass(frozen=True)
class Deduplicated(Stage):
    """Exact and MinHash near-duplicates removed across every source and crawl: one document
    kept per cluster, by source priority, then earliest crawl, then smallest id.

    `bands` x `rows` signature values make the LSH banding (14 x 8: the S-curve rises
    through 1/2 near Jaccard 0.72); set either to 0 to derive both from `threshold` for the
    signatures' num_perm (datasketch's optimum). `threshold` is always the verification bound.
    """

    name: ClassVar[str] = "deduplicated"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DEDUPLICATED_SCHEMA

    threshold: float = 0.72
    bands: int = 14
    rows: int = 8
    max_rows_per_bucket_partition: int = 2_000_000
    source_priority: tuple[str, ...] = DEFAULT_PRIORITY
    independent_sources: tuple[tuple[str, str], ...] = (("c4", "commoncrawl"),)
    workdir: str = state_field()
    pass_summary: str = state_field()

    def __post_init__(self) -> None:
        # JSON from the command line gives lists; the config is tuples either way.
        object.__setattr__(self, "source_priority", tuple(self.source_priority))
        pairs = tuple(tuple(pair) for pair in self.independent_sources)
        object.__setattr__(self, "independent_sources", pairs)
        SourceClasses.from_pairs(pairs)
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.max_rows_per_bucket_partition < 1:
            raise ValueError("max_rows_per_bucket_partition must be positive")

    def banding(self, num_perm: int) -> tuple[int, int]:
        """(bands, rows) as configured, or derived from `threshold` when either is 0."""
        if self.bands and self.rows:
            bands, rows = self.bands, self.rows
        else:
            bands, rows = banding_for(self.threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"{bands} bands x {rows} rows exceed the {num_perm} signature values")
        return bands, rows

    def plan(self, inputs: Sequence[ShardInput], workdir: str) -> BucketPlan:
        if not all(isinstance(shard, CorpusShard) for shard in inputs):
            raise TypeError(f"{self.name} reads corpus_inputs() shards, with their signatures")
        widths = sorted({shard.num_perm for shard in inputs})
        if len(widths) != 1:
            raise ValueError(f"the inputs' signatures have different num_perm: {widths}")
        bands, rows = self.banding(widths[0])
        total = sum(shard.rows for shard in inputs) * (bands + 1)
        return BucketPlan(
            workdir=workdir,
            num_perm=widths[0],
            bands=bands,
            rows=rows,
            threshold=self.threshold,
            partitions=max(1, math.ceil(total / self.max_rows_per_bucket_partition)),
            classes=SourceClasses.from_pairs(self.independent_sources),
        )

    def prepare(self, inputs, storage, workdir, executor) -> Deduplicated:
        plan = self.plan(inputs, workdir)
        plan.makedirs(storage)
        list(executor.map_unordered(MapTask(plan, storage), list(enumerate(inputs))))
        reduce = ReduceTask(plan, storage, len(inputs))
        list(executor.map_unordered(reduce, range(plan.partitions)))
        summary_path = posixpath.join(workdir, _SUMMARY)
        if not storage.exists(summary_path):  # a resumed run keeps the clusters
            summary = self.cluster(plan, inputs, storage)
            storage.write_bytes(summary_path, json.dumps(summary).encode())
        summary = storage.read_bytes(summary_path).decode()
        return dataclasses.replace(self, workdir=workdir, pass_summary=summary)

    def cluster(self, plan: BucketPlan, inputs: Sequence[CorpusShard], storage: Storage) -> dict:
        """Clusters of the verified edges, a decision file per shard, and the summary."""
        clusters = load_clusters(storage, inputs, verified_edges(storage, plan, len(inputs)))
        order = clusters.best_first(self.source_priority)
        classes = plan.classes.of(clusters.sources)
        keeper = survivors(clusters.component, order, classes, plan.classes.independent)
        decisions = clusters.decisions(keeper)
        write_decisions(storage, plan.workdir, inputs, clusters, keeper, decisions)
        pairs = pair_counts(storage, plan, len(inputs))
        return {
            "bands": plan.bands,
            "rows": plan.rows,
            "threshold": plan.threshold,
            "bucket_partitions": plan.partitions,
            "candidate_pairs": pairs["candidates"],
            "verified_pairs": pairs["verified"],
            "clusters": len(np.unique(clusters.component)),
            "documents_in_clusters": len(clusters.keys),
            "example_clusters": example_clusters(storage, inputs, clusters, decisions, order),
        }

    def summary(self) -> dict[str, Any]:
        """The pass in numbers and a few example clusters, for the manifest."""
        return json.loads(self.pass_summary) if self.pass_summary else {}

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = pq.read_table(shard.path, filesystem=storage.fs)
        decisions = pq.read_table(_decision_path(self.workdir, shard), filesystem=storage.fs)
        if int(decisions.schema.metadata[b"rows"]) != table.num_rows:
            raise RuntimeError(f"{shard.name} changed since the dedup pass")
        table = conform(table)
        removed = decisions.filter(pc.not_equal(decisions.column("decision"), DECISIONS[0]))
        drop = np.zeros(table.num_rows, dtype=bool)
        drop[removed.column("row").to_numpy()] = True
        rows, reasons = removed.column("row"), removed.column("decision").to_pylist()
        dropped = drop_rows(table.take(rows), self.name, reasons)
        dropped = dropped.append_column("duplicate_of", removed.column("kept_id"))
        dropped = dropped.append_column("duplicate_of_source", removed.column("kept_source"))
        firsts = decisions.filter(decisions.column("counts_cluster"))
        kept_sources = removed.column("kept_source").to_pylist()
        pairs = zip(kept_sources, dropped.column("source").to_pylist(), strict=True)
        return ShardOutput(
            n_in=table.num_rows,
            kept=table.filter(pa.array(~drop)),
            dropped=dropped,
            histograms={
                "cluster_size": Counter(str(n) for n in firsts.column("cluster_size").to_pylist()),
                "removed_by_source_pair": Counter(f"{kept}<-{lost}" for kept, lost in pairs),
            },
        )
