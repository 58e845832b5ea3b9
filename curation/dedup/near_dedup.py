"""`deduplicated`: exact and MinHash near-duplicate removal across every source and crawl.

Two stages. `dedup_signatures` (curation/dedup/signatures.py) computes one MinHash signature
(curation/dedup/minhash.py), content digest and word count per document of one upstream partition;
it is materialized once per partition (each crawl, each curated source), so a new crawl only
computes its own. `deduplicated` reads every partition with its signatures
(`dedup_corpus.corpus_inputs`) and writes the corpus without its duplicates.

The global pass, `Deduplicated.prepare`, is map-reduce over files under the run's work
directory (curation/dedup/buckets.py); every step runs through the shard executor and skips
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
3. Cluster (curation/dedup/components.py), map-reduce as well: the documents on a verified
   edge are hash-partitioned into P = ceil(2 x verified edge rows /
   `max_rows_per_cluster_partition`) partitions, each with its documents' edges, and labelled
   with their component's smallest key by rounds of min-label propagation with pointer
   jumping (three maps a round; the rounds grow with the log of the longest chain of near
   duplicates, not with the corpus: 2 on the sample world). Each cluster keeps one document:
   by `source_priority` (earlier wins), then earliest crawl (curated sources have none and
   come first), then smallest id; it is chosen in the partition of the cluster's label, from
   each input shard's best few members per cluster and source class, and the decisions go
   back to a file per input shard. What one task holds is bounded by configuration, not by
   the number of documents with a duplicate: a node partition about
   `max_rows_per_cluster_partition` edge rows (16 bytes each) while gathering them, then its
   documents' labels and one slice of another partition's rows at a time; a label partition
   4 members per cluster and class of its share of clusters; an input shard's task that
   shard's rows. More only under skew: a document's edges all sit in its partition (the star
   pairing of step 2 keeps those few).
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

from curation.commoncrawl.wikiref import WikiRefFilter
from curation.core.documents import DOCUMENT_SCHEMA, drop_rows, schema_with
from curation.core.executor import ShardExecutor
from curation.core.screening import read_shard
from curation.core.stage import ShardInput, ShardOutput, Stage, state_field
from curation.core.storage import Storage
from curation.dedup.buckets import BucketPlan, MapTask, ReduceTask, edge_files, pair_counts
from curation.dedup.components import DECISIONS, ClusterPlan, ShardFiles, cluster, decision_path
from curation.dedup.corpus import CorpusShard
from curation.dedup.graph import ROW_MASK, SHARD_SHIFT, SourceClasses
from curation.dedup.minhash import banding_for

ANNOTATION_FIELDS = [  # every annotation column a stage of the graph adds, nullable
    f.with_nullable(True)
    for f in WikiRefFilter.output_schema
    if f.name not in DOCUMENT_SCHEMA.names
]
DEDUPLICATED_SCHEMA = schema_with(ANNOTATION_FIELDS)
DEFAULT_PRIORITY = ("wikipedia", "books", "arxiv", "stackexchange", "github", "c4", "commoncrawl")

_SUMMARY = "cluster/_summary.json"  # written last: the cluster step is done
_EXAMPLE_CHARS = 160


def _decision_path(workdir: str, shard: ShardInput) -> str:
    return decision_path(posixpath.join(workdir, "cluster"), shard.name)


def shard_files(inputs: Sequence[CorpusShard]) -> tuple[ShardFiles, ...]:
    """What the cluster step reads of each shard; crawls as their rank in name order (the
    keep policy's order: earliest first), curated sources (no crawl) before all of them."""
    crawls = sorted({shard.crawl for shard in inputs if shard.crawl is not None})
    return tuple(
        ShardFiles(
            shard.name,
            shard.signatures,
            -1 if shard.crawl is None else crawls.index(shard.crawl),
            shard.rows,
        )
        for shard in inputs
    )


def example_clusters(
    storage: Storage, inputs: Sequence[CorpusShard], examples: list[dict]
) -> list[dict[str, Any]]:
    """The largest clusters (ties: smallest key first), best members first, each with id,
    source, crawl, decision and the start of its text: what a person checks the rules by."""
    keys = sorted(document["key"] for example in examples for document in example["documents"])
    texts = _text_starts(storage, inputs, np.array(keys, np.uint64))
    return [
        {
            "size": example["size"],
            "documents": [
                {
                    "id": document["id"],
                    "source": document["source"],
                    "crawl": inputs[document["key"] >> int(SHARD_SHIFT)].crawl,
                    "decision": document["decision"],
                    "text": texts[document["key"]],
                }
                for document in example["documents"]
            ],
        }
        for example in examples
    ]


def _text_starts(storage: Storage, inputs: Sequence[CorpusShard], keys: np.ndarray) -> dict:
    """The first characters of the documents `keys` (sorted), whitespace squeezed."""
    starts: dict[int, str] = {}
    shards = keys >> SHARD_SHIFT
    for shard in np.unique(shards):
        chosen = keys[shards == shard]
        table = read_shard(DOCUMENT_SCHEMA, inputs[int(shard)], storage, ["text"])
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
    `max_rows_per_bucket_partition` and `max_rows_per_cluster_partition` bound the rows one
    task of the bucket and cluster steps holds, so memory does not grow with the corpus.
    """

    name: ClassVar[str] = "deduplicated"
    version: ClassVar[str] = "1"
    output_schema: ClassVar[pa.Schema] = DEDUPLICATED_SCHEMA
    input_schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA

    threshold: float = 0.72
    bands: int = 14
    rows: int = 8
    max_rows_per_bucket_partition: int = 2_000_000
    max_rows_per_cluster_partition: int = 2_000_000
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
        for bound in ("max_rows_per_bucket_partition", "max_rows_per_cluster_partition"):
            if getattr(self, bound) < 1:
                raise ValueError(f"{bound} must be positive")

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
            summary = self.cluster(plan, inputs, storage, executor)
            storage.write_bytes(summary_path, json.dumps(summary).encode())
        summary = storage.read_bytes(summary_path).decode()
        return dataclasses.replace(self, workdir=workdir, pass_summary=summary)

    def cluster_plan(
        self, plan: BucketPlan, inputs: Sequence[CorpusShard], storage: Storage, edges: int
    ) -> ClusterPlan:
        """The cluster step's plan: P partitions so that each gathers about
        `max_rows_per_cluster_partition` of the 2 x `edges` edge rows (both directions)."""
        return ClusterPlan(
            storage,
            posixpath.join(plan.workdir, "components"),
            max(1, math.ceil(2 * edges / self.max_rows_per_cluster_partition)),
            tuple(edge_files(plan, len(inputs))),
            shard_files(inputs),
            self.source_priority,
            plan.classes,
            posixpath.join(plan.workdir, "cluster"),
        )

    def cluster(
        self,
        plan: BucketPlan,
        inputs: Sequence[CorpusShard],
        storage: Storage,
        executor: ShardExecutor,
    ) -> dict:
        """Clusters of the verified edges, a decision file per shard, and the summary."""
        pairs = pair_counts(storage, plan, len(inputs))
        clusters = self.cluster_plan(plan, inputs, storage, pairs["verified"])
        found = cluster(clusters, executor)
        return {
            "bands": plan.bands,
            "rows": plan.rows,
            "threshold": plan.threshold,
            "bucket_partitions": plan.partitions,
            "cluster_partitions": clusters.partitions,
            "cluster_rounds": found.rounds,
            "candidate_pairs": pairs["candidates"],
            "verified_pairs": pairs["verified"],
            "clusters": found.clusters,
            "documents_in_clusters": found.documents,
            "example_clusters": example_clusters(storage, inputs, found.examples),
        }

    def summary(self) -> dict[str, Any]:
        """The pass in numbers and a few example clusters, for the manifest."""
        return json.loads(self.pass_summary) if self.pass_summary else {}

    def process(self, shard: ShardInput, storage: Storage) -> ShardOutput:
        table = read_shard(self, shard, storage)
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
