"""The cluster step of global dedup, over files: connected components of the verified edges,
one survivor per component, and every input shard's decisions.

Every step is a map through the shard executor, over hash partitions or over input shards; a
task reads and writes only its own files, and one whose last file exists is skipped, so a
killed run keeps every round and partition it had finished. Tasks pass rows to each other
through `Exchange` files: a sender writes one file with a slice per receiver; a receiver reads
its slice of every sender's file, one slice at a time.

Components (`label_components`). The documents on an edge (nodes) are hash-partitioned into
P partitions (`core.arrays.partition_of`); each holds its nodes' edges, both directions, and a
label per node, first the node itself. Labels only ever decrease and always name a node of the
same component. A round is three maps:

1. spread: every edge (a, b) sends a's label to b; each node's `lowest` is the smallest of its
   label and those it receives;
2. ask: every node whose label is another node asks that node (in its partition) for its
   label, telling it its lowest;
3. answer: an asked node lowers its label to the lowest it is told (`hooked`: its whole tree
   hooks onto the smallest label any member saw) and answers with it; the next spread starts
   from the smaller of each node's hooked label and its answer (pointer jumping).

A round that changes no label leaves both ends of every edge with the same label, so each
component has a single label, a node of it; its smallest node carries that label, which is no
larger than the node itself: it is the smallest node. Pointer jumping doubles how far a label
travels per round: the rounds grow with the log of the longest path (a path of sorted keys
takes about log2 of its length), not with the path.

Survivors (the rest of `cluster`). Whom a member gives way to depends only on its component and
source class (`dedup_graph.survivors`: the component's best document is kept; a member gives
way to the first kept document in keep-policy order that its class may be linked with), so
each component needs only the best document of each class:

1. members: each node partition sends (node, label) to the node's input shard;
2. candidates, per input shard: its clustered rows' ids, sources and digests (one read of its
   signature part); per (component, class) the best `EXAMPLE_MEMBERS` (4) in keep-policy order,
   with the group's size, go to the label's partition;
3. choose, per label partition: the best of each (component, class) over all shards, merged
   as slices arrive; `survivors` among the best of each class gives each class its survivor,
   sent back to the shards that sent the class;
4. decide, per input shard: each clustered row's decision, survivor and cluster size, in the
   file `process` reads (`decision_path`).

Memory. P = ceil(2 x verified edge rows / `max_rows_per_cluster_partition`) (each row counts:
the bucket step finds a pair in several partitions), so a node partition gathers about that
many edge rows at most, then holds its nodes (at most as many) in a few uint64 arrays plus one
slice at a time. A label partition holds at most `EXAMPLE_MEMBERS` candidates per (component,
class) of its labels, plus as many unmerged ones (at least 65,536). A shard task holds the
shard's clustered rows: the shard's own size, as in the bucket map. More only under skew: all
of a node's edges are in its partition, and the bucket step's star pairing links a document
to at most (bands + 1) x (its shard's rows + shards x classes) others.

Long because the cluster step is one algorithm in rounds of maps (split, gather, spread,
ask and answer, choose) over one set of partition files: split over modules, each round would
need the files' layout spelled out again.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.arrays import load_array, partition_of, save_array
from curation.core.exchange import Exchange
from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.storage import Storage
from curation.dedup.graph import ROW_MASK, SHARD_SHIFT, SourceClasses, survivors

DECISIONS = np.array(["kept", "exact_duplicate", "near_duplicate"])  # indexed by decision code
EXAMPLE_MEMBERS = 4  # candidates kept per (component, class): what an example cluster shows
EXAMPLES = 5  # example clusters in the summary
_MERGE_ROWS = 1 << 16  # candidates read (at least) before they are merged into the best ones
_SLICES = 256  # slices read into one table at a time (`_combined`)
_DIGEST = pa.binary(20)  # dedup_signatures.DIGEST_BYTES; not imported: it loads datasketch

EDGE = pa.schema([("a", pa.uint64()), ("b", pa.uint64())])
LABEL = pa.schema([("node", pa.uint64()), ("label", pa.uint64())])
ASK = pa.schema([("node", pa.uint64()), ("label", pa.uint64()), ("lowest", pa.uint64())])
MEMBER = pa.schema(
    [("row", pa.int64()), ("label", pa.uint64()), ("cls", pa.uint8()), ("digest", _DIGEST)]
)
CANDIDATE = pa.schema(
    [
        ("label", pa.uint64()),
        ("cls", pa.uint8()),
        ("rank", pa.int32()),  # index in the source priority
        ("crawl", pa.int32()),  # index among the inputs' crawls, -1 for none
        ("id", pa.string()),
        ("key", pa.uint64()),
        ("source", pa.string()),
        ("digest", _DIGEST),
        ("count", pa.int64()),  # the group's members, on its first row; 0 on the others
    ]
)
TARGET = pa.schema(
    [
        ("label", pa.uint64()),
        ("cls", pa.uint8()),
        ("kept_key", pa.uint64()),
        ("kept_id", pa.string()),
        ("kept_source", pa.string()),
        ("kept_digest", _DIGEST),
        ("size", pa.int64()),
    ]
)
_GROUP = [("label", "ascending"), ("cls", "ascending")]
_POLICY = [("rank", "ascending"), ("crawl", "ascending"), ("id", "ascending"), ("key", "ascending")]


# --- files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardFiles:
    """What the cluster step needs of an input shard (not `CorpusShard`, whose module would
    make every worker import datasketch)."""

    name: str
    signatures: str
    crawl: int  # index among the inputs' sorted crawls; -1 for a curated source (none)
    rows: int


@dataclass(frozen=True)
class ClusterPlan:
    """What every task of one cluster step agrees on, and where its files are."""

    storage: Storage
    workdir: str
    partitions: int
    edge_files: tuple[str, ...]  # the bucket step's edge arrays (m x 2 document keys)
    shards: tuple[ShardFiles, ...] = ()
    priority: tuple[str, ...] = ()
    classes: SourceClasses = field(default_factory=lambda: SourceClasses.from_pairs(()))
    decisions: str = ""  # the folder of the decision files

    def exchange(self, name: str, senders: int, receivers: int, schema: pa.Schema) -> Exchange:
        folder = posixpath.join(self.workdir, name)
        return Exchange(self.storage, folder, senders, receivers, schema)

    def edges_in(self) -> Exchange:  # both directions of each bucket-step edge, by first node
        return self.exchange("edges-in", len(self.edge_files), self.partitions, EDGE)

    def edges(self) -> Exchange:  # a partition's distinct edges, sliced by second node
        return self.exchange("edges", self.partitions, self.partitions, EDGE)

    def spread(self, r: int) -> Exchange:
        return self.exchange(_round(r, "spread"), self.partitions, self.partitions, LABEL)

    def asks(self, r: int) -> Exchange:
        return self.exchange(_round(r, "asks"), self.partitions, self.partitions, ASK)

    def answers(self, r: int) -> Exchange:
        return self.exchange(_round(r, "answers"), self.partitions, self.partitions, LABEL)

    def members(self) -> Exchange:
        return self.exchange("members", self.partitions, len(self.shards), LABEL)

    def candidates(self) -> Exchange:
        return self.exchange("candidates", len(self.shards), self.partitions, CANDIDATE)

    def targets(self) -> Exchange:
        return self.exchange("targets", self.partitions, len(self.shards), TARGET)

    def path(self, name: str, index: int, suffix: str = "npy") -> str:
        return posixpath.join(self.workdir, name, f"{index:06d}.{suffix}")

    def exists(self, name: str, index: int) -> bool:
        return self.storage.exists(self.path(name, index))

    def save(self, name: str, index: int, array: np.ndarray) -> None:
        self.storage.makedirs(posixpath.join(self.workdir, name))
        save_array(self.storage, self.path(name, index), array)

    def load(self, name: str, index: int) -> np.ndarray:
        return load_array(self.storage, self.path(name, index))


def decision_path(folder: str, shard_name: str) -> str:
    key = hashlib.sha1(shard_name.encode()).hexdigest()[:20]
    return posixpath.join(folder, f"{key}.parquet")


def _round(r: int, name: str) -> str:
    return f"round-{r:03d}/{name}"


def _table(schema: pa.Schema, **columns) -> pa.Table:
    """A table of `schema` from numpy or Arrow columns."""
    arrays = []
    for f in schema:
        value = columns[f.name]
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        if not isinstance(value, pa.Array):
            value = pa.array(value, f.type)
        arrays.append(value.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _combined(tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """The tables, every `_SLICES` of them combined into one: a receiver of many small slices
    (one per input shard, say) then holds their rows, not a buffer and objects per slice."""
    pending = []
    for table in tables:
        pending.append(table)
        if len(pending) == _SLICES:
            yield pa.concat_tables(pending).combine_chunks()
            pending = []
    if pending:
        yield pa.concat_tables(pending).combine_chunks()


def _concat(schema: pa.Schema, tables: Iterable[pa.Table]) -> pa.Table:
    return pa.concat_tables([schema.empty_table(), *_combined(tables)])


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def _lower(nodes: np.ndarray, values: np.ndarray, keys: np.ndarray, new: np.ndarray) -> None:
    """values[node] = min(values[node], new) for every (key, new), keys among `nodes` (sorted)."""
    np.minimum.at(values, np.searchsorted(nodes, keys), new)


def _each(executor: ShardExecutor, task, count: int) -> list:
    return list(executor.map_unordered(task, range(count)))


# --- components -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitEdges:
    """One edge file of the bucket step: both directions of every edge, each to the partition
    of its first node."""

    plan: ClusterPlan

    def __call__(self, index: int) -> int:
        out = self.plan.edges_in()
        if not out.done(index):
            pairs = load_array(self.plan.storage, self.plan.edge_files[index]).reshape(-1, 2)
            a = np.concatenate([pairs[:, 0], pairs[:, 1]])
            b = np.concatenate([pairs[:, 1], pairs[:, 0]])
            out.send(index, _table(EDGE, a=a, b=b), partition_of(a, self.plan.partitions))
        return index


@dataclass(frozen=True)
class GatherEdges:
    """A node partition's distinct edges (by second node's partition), its nodes, and their
    first labels: themselves."""

    plan: ClusterPlan

    def __call__(self, partition: int) -> int:
        plan = self.plan
        if plan.exists(_round(0, "labels"), partition):
            return partition
        edges = _concat(EDGE, plan.edges_in().gather(partition))
        pairs = np.stack([_column(edges, "a"), _column(edges, "b")], axis=1)
        pairs = np.unique(pairs, axis=0) if len(pairs) else pairs
        nodes = np.unique(pairs[:, 0])
        plan.save("nodes", partition, nodes)
        edges = _table(EDGE, a=pairs[:, 0], b=pairs[:, 1])
        plan.edges().send(partition, edges, partition_of(pairs[:, 1], plan.partitions))
        plan.save(_round(0, "labels"), partition, nodes)
        return partition


@dataclass(frozen=True)
class Spread:
    """Round step 1: the partition's labels (after the round before: each node's hooked label
    or the answer to its ask, the smaller), then each edge (a, b) sends a's label to b.
    Returns how many of the partition's labels the round before changed."""

    plan: ClusterPlan
    round: int

    def __call__(self, partition: int) -> int:
        plan, r = self.plan, self.round
        nodes = plan.load("nodes", partition)
        labels = self._labels(partition, nodes)
        out = plan.spread(r)
        if not out.done(partition):
            edges = plan.edges()
            slices = (edges.read(partition, q) for q in range(plan.partitions))
            out.write(partition, (self._messages(nodes, labels, e) for e in slices))
        before = plan.load(_round(r - 1, "labels"), partition) if r else labels
        return int(np.count_nonzero(labels != before))

    def _labels(self, partition: int, nodes: np.ndarray) -> np.ndarray:
        plan, name = self.plan, _round(self.round, "labels")
        if plan.exists(name, partition):
            return plan.load(name, partition)
        labels = plan.load(_round(self.round - 1, "hooked"), partition)
        for answers in plan.answers(self.round - 1).gather(partition):
            _lower(nodes, labels, _column(answers, "node"), _column(answers, "label"))
        plan.save(name, partition, labels)
        return labels

    @staticmethod
    def _messages(nodes: np.ndarray, labels: np.ndarray, edges: pa.Table) -> pa.Table:
        sent = labels[np.searchsorted(nodes, _column(edges, "a"))]
        return _table(LABEL, node=_column(edges, "b"), label=sent)


@dataclass(frozen=True)
class Ask:
    """Round step 2: each node's lowest label (its own or a neighbour's); each node whose label
    is another node asks that node for its label, telling it that lowest."""

    plan: ClusterPlan
    round: int

    def __call__(self, partition: int) -> int:
        plan, r = self.plan, self.round
        out = plan.asks(r)
        if out.done(partition):
            return partition
        nodes, labels = plan.load("nodes", partition), plan.load(_round(r, "labels"), partition)
        lowest = labels.copy()
        for messages in plan.spread(r).gather(partition):
            _lower(nodes, lowest, _column(messages, "node"), _column(messages, "label"))
        plan.save(_round(r, "lowest"), partition, lowest)
        asking = labels != nodes
        asks = _table(ASK, node=nodes[asking], label=labels[asking], lowest=lowest[asking])
        out.send(partition, asks, partition_of(labels[asking], plan.partitions))
        return partition


@dataclass(frozen=True)
class Answer:
    """Round step 3: each asked node lowers its label to the lowest it is told, hooking its
    tree onto the smallest label any member saw, then answers every ask with it. The asks are
    read twice, a slice at a time: once to hook, once to answer."""

    plan: ClusterPlan
    round: int

    def __call__(self, partition: int) -> int:
        plan, r = self.plan, self.round
        out = plan.answers(r)
        if out.done(partition):
            return partition
        nodes, hooked = plan.load("nodes", partition), plan.load(_round(r, "lowest"), partition)
        asks = plan.asks(r)
        for told in asks.gather(partition):
            _lower(nodes, hooked, _column(told, "label"), _column(told, "lowest"))
        plan.save(_round(r, "hooked"), partition, hooked)
        answers = (self._answers(nodes, hooked, told) for told in asks.gather(partition))
        out.write(partition, answers)
        return partition

    @staticmethod
    def _answers(nodes: np.ndarray, hooked: np.ndarray, asks: pa.Table) -> pa.Table:
        labels = hooked[np.searchsorted(nodes, _column(asks, "label"))]
        return _table(LABEL, node=_column(asks, "node"), label=labels)


def label_components(plan: ClusterPlan, executor: ShardExecutor) -> int:
    """Labels every node of the plan's edges with its component's smallest node, and returns
    the rounds that took: the labels are the files of round `rounds` (`final_labels`)."""
    _each(executor, SplitEdges(plan), len(plan.edge_files))
    _each(executor, GatherEdges(plan), plan.partitions)
    r = 0
    while True:
        changed = sum(executor.map_unordered(Spread(plan, r), range(plan.partitions)))
        if r and not changed:
            return r
        _each(executor, Ask(plan, r), plan.partitions)
        _each(executor, Answer(plan, r), plan.partitions)
        r += 1


def final_labels(plan: ClusterPlan, rounds: int, partition: int) -> tuple[np.ndarray, np.ndarray]:
    return plan.load("nodes", partition), plan.load(_round(rounds, "labels"), partition)


def components_of(
    edges: np.ndarray, partitions: int = 1, executor: ShardExecutor | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """`label_components` of an edge array, in a temporary directory: the nodes (sorted), each
    one's label (its component's smallest node) and the rounds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        path = posixpath.join(tmp, "edges.npy")
        save_array(storage, path, np.asarray(edges, np.uint64).reshape(-1, 2))
        plan = ClusterPlan(storage, posixpath.join(tmp, "components"), partitions, (path,))
        rounds = label_components(plan, executor or LocalExecutor(1))
        parts = [final_labels(plan, rounds, p) for p in range(partitions)]
    nodes = np.concatenate([nodes for nodes, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    order = np.argsort(nodes)
    return nodes[order], labels[order], rounds


def connected_components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents on `edges` (sorted keys) and, for each, its component: the index (into
    those documents) of the component's smallest key.

    This is the cluster step's own computation over hash-partitioned files
    (`label_components`) with one partition, in this process and a temporary
    directory: there is no second, in-memory implementation to keep in step with it."""
    nodes, labels, _ = components_of(edges)
    return nodes, np.searchsorted(nodes, labels)


# --- survivors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Members:
    """Survivors step 1: a node partition's final labels, each sent to its node's shard."""

    plan: ClusterPlan
    rounds: int

    def __call__(self, partition: int) -> int:
        out = self.plan.members()
        if not out.done(partition):
            nodes, labels = final_labels(self.plan, self.rounds, partition)
            shards = (nodes >> SHARD_SHIFT).astype(np.int64)
            out.send(partition, _table(LABEL, node=nodes, label=labels), shards)
        return partition


@dataclass(frozen=True)
class Candidates:
    """Survivors step 2, per input shard: its clustered rows with their class and digest (kept
    for step 4), and its best candidates per (component, class), sent to the label's partition.
    """

    plan: ClusterPlan

    def __call__(self, index: int) -> int:
        plan = self.plan
        out = plan.candidates()
        if out.done(index):
            return index
        rows = self._clustered(index)
        labels, sources, digests = (
            rows.column("label"),
            rows.column("source"),
            rows.column("digest"),
        )
        classes = plan.classes.of(sources)
        members = _table(MEMBER, row=rows.column("row"), label=labels, cls=classes, digest=digests)
        _save_table(plan.storage, plan.path("members", index, "arrow"), members)
        priority = pa.array(plan.priority, pa.string())
        candidates = _table(
            CANDIDATE,
            label=labels,
            cls=classes,
            rank=pc.index_in(sources, value_set=priority).fill_null(len(priority)),
            crawl=np.full(rows.num_rows, plan.shards[index].crawl),
            id=rows.column("id"),
            key=rows.column("key"),
            source=sources,
            digest=digests,
            count=np.ones(rows.num_rows, np.int64),
        )
        best = best_members(candidates)
        out.send(index, best, partition_of(_column(best, "label"), plan.partitions))
        return index

    def _clustered(self, index: int) -> pa.Table:
        """The shard's rows that have a duplicate, by row: key, label, row, id, source, digest
        (one read of its signature part, none when it has no such row)."""
        members = _concat(LABEL, self.plan.members().gather(index)).sort_by("node")
        keys = _column(members, "node")
        rows = (keys & ROW_MASK).astype(np.int64)
        columns = ["id", "source", "digest"]
        if len(rows):
            path, fs = self.plan.shards[index].signatures, self.plan.storage.fs
            signed = pq.read_table(path, filesystem=fs, columns=columns).take(rows)
        else:
            signed = pa.schema([CANDIDATE.field(name) for name in columns]).empty_table()
        table = pa.table({"key": keys, "label": members.column("label"), "row": rows})
        for name in columns:
            table = table.append_column(name, signed.column(name))
        return table


def best_members(candidates: pa.Table, k: int = EXAMPLE_MEMBERS) -> pa.Table:
    """The first `k` candidates of each (component, class) in keep-policy order (source rank,
    crawl, id, key), sorted by label, class and policy, each group's whole count on its first
    row and 0 on the others: all a label partition keeps of a component, however many shards
    the component spans."""
    table = candidates.take(pc.sort_indices(candidates, sort_keys=_GROUP + _POLICY))
    label, cls = _column(table, "label"), _column(table, "cls")
    first = np.ones(len(label), dtype=bool)
    first[1:] = (label[1:] != label[:-1]) | (cls[1:] != cls[:-1])
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    counts = _column(table, "count")
    totals = np.add.reduceat(counts, starts) if len(starts) else counts
    count = pa.array(np.where(first, totals[group], 0), pa.int64())
    table = table.set_column(table.schema.get_field_index("count"), "count", count)
    return table.filter(np.arange(len(label)) - starts[group] < k)


def merged_candidates(slices: Iterable[pa.Table]) -> pa.Table:
    """`best_members` of all the slices, merged as they are read: never more than the best
    rows so far plus max(as many, 65,536) unmerged ones."""
    best, pending = CANDIDATE.empty_table(), []
    for table in _combined(slices):
        pending.append(table)
        if sum(t.num_rows for t in pending) >= max(best.num_rows, _MERGE_ROWS):
            best, pending = best_members(pa.concat_tables([best, *pending])), []
    return best_members(pa.concat_tables([best, *pending]))


def choose(best: pa.Table, independent: np.ndarray) -> pa.Table:
    """Per (component, class) of `best` (`best_members`), the survivor its members give way to
    (or are), and the component's size: `survivors` among the best member of each class."""
    firsts = best.filter(pc.greater(best.column("count"), 0))  # by label, then class
    labels, component = np.unique(_column(firsts, "label"), return_inverse=True)
    order = pc.sort_indices(firsts, sort_keys=_POLICY).to_numpy()
    keeper = survivors(component, order, _column(firsts, "cls"), independent)
    sizes = np.bincount(component, _column(firsts, "count"), minlength=len(labels))
    kept = firsts.take(keeper)
    return _table(
        TARGET,
        label=firsts.column("label"),
        cls=firsts.column("cls"),
        kept_key=kept.column("key"),
        kept_id=kept.column("id"),
        kept_source=kept.column("source"),
        kept_digest=kept.column("digest"),
        size=sizes[component].astype(np.int64),
    )


def _codes(table: pa.Table, keys: np.ndarray) -> np.ndarray:
    """Per row (document `keys`, digest, and its survivor's kept_key and kept_digest) a code
    into `DECISIONS`: kept (it is its survivor), exact_duplicate (the same digest as its
    survivor) or near_duplicate."""
    same = pc.equal(table.column("digest"), table.column("kept_digest")).to_numpy()
    return np.where(keys == _column(table, "kept_key"), 0, np.where(same, 1, 2)).astype(np.int8)


def _examples(best: pa.Table, targets: pa.Table) -> list[dict]:
    """The partition's largest components (ties: smallest label), each with its best members
    in keep-policy order and their decisions: candidates for the summary's examples."""
    labels, first = np.unique(_column(targets, "label"), return_index=True)
    sizes = _column(targets, "size")[first]
    largest = np.lexsort((labels, -sizes))[:EXAMPLES]
    return [_example(best, targets, int(labels[i]), int(sizes[i])) for i in largest]


def _example(best: pa.Table, targets: pa.Table, label: int, size: int) -> dict:
    mine = best.filter(pc.equal(best.column("label"), pa.scalar(label, pa.uint64())))
    mine = mine.join(targets.drop_columns(["size"]), keys=["label", "cls"])
    mine = mine.take(pc.sort_indices(mine, sort_keys=_POLICY)).slice(0, EXAMPLE_MEMBERS)
    codes = _codes(mine, _column(mine, "key"))
    documents = zip(
        mine.column("key").to_pylist(),
        mine.column("id").to_pylist(),
        mine.column("source").to_pylist(),
        DECISIONS[codes].tolist(),
        strict=True,
    )
    return {
        "label": label,
        "size": size,
        "documents": [
            {"key": key, "id": id_, "source": source, "decision": decision}
            for key, id_, source, decision in documents
        ],
    }


@dataclass(frozen=True)
class Choose:
    """Survivors step 3, per label partition: the best candidates of its components over all
    shards, each (component, class)'s survivor sent back to the shards that sent the class,
    and the partition's part of the summary (returned, and kept for a resumed run)."""

    plan: ClusterPlan

    def __call__(self, partition: int) -> dict:
        plan = self.plan
        out, found = plan.targets(), plan.path("summary", partition, "json")
        if not out.done(partition):
            candidates = plan.candidates()
            best = merged_candidates(candidates.gather(partition))
            targets = choose(best, plan.classes.independent)
            part = {
                "clusters": len(np.unique(_column(targets, "label"))),
                "documents": int(_column(best, "count").sum()),
                "examples": _examples(best, targets),
            }
            plan.storage.makedirs(posixpath.dirname(found))
            plan.storage.write_bytes(found, json.dumps(part).encode())
            sent = candidates.gather(partition)
            out.write(partition, (self._asked(shard, targets) for shard in sent))
        return json.loads(plan.storage.read_bytes(found))

    @staticmethod
    def _asked(candidates: pa.Table, targets: pa.Table) -> pa.Table:
        """The targets of the (component, class) groups one shard sent: one first row each."""
        firsts = candidates.filter(pc.greater(candidates.column("count"), 0))
        asked = firsts.select(["label", "cls"]).join(targets, keys=["label", "cls"])
        return asked.select(TARGET.names).cast(TARGET)


@dataclass(frozen=True)
class Decide:
    """Survivors step 4, per input shard: the decision file `process` reads, one row per
    clustered row of the shard (by row): decision, survivor id and source, cluster size, and
    whether the row counts its cluster (it is the cluster's smallest key, its label)."""

    plan: ClusterPlan

    def __call__(self, index: int) -> int:
        plan, shard = self.plan, self.plan.shards[index]
        path = decision_path(plan.decisions, shard.name)
        if plan.storage.exists(path):
            return index
        targets = _concat(TARGET, plan.targets().gather(index))
        members = _load_table(plan.storage, plan.path("members", index, "arrow"))
        rows = members.join(targets, keys=["label", "cls"]).sort_by("row")
        if rows.num_rows != members.num_rows:
            raise RuntimeError(
                f"{shard.name}: {members.num_rows - rows.num_rows} rows lack a survivor"
            )
        keys = (np.uint64(index) << SHARD_SHIFT) | _column(rows, "row").astype(np.uint64)
        codes = _codes(rows, keys)
        table = pa.table(
            {
                "row": rows.column("row"),
                "decision": pa.array(DECISIONS[codes], pa.string()),
                "kept_id": rows.column("kept_id"),
                "kept_source": rows.column("kept_source"),
                "cluster_size": rows.column("size"),
                "counts_cluster": keys == _column(rows, "label"),
            }
        )
        table = table.combine_chunks().replace_schema_metadata({"rows": str(shard.rows)})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        plan.storage.makedirs(plan.decisions)
        plan.storage.write_bytes(path, buffer.getvalue())
        return index


@dataclass(frozen=True)
class Clustered:
    """What the cluster step found, for the summary."""

    rounds: int
    clusters: int
    documents: int
    examples: list[dict]  # the largest clusters: size, label, best members (key, id, ...)


def cluster(plan: ClusterPlan, executor: ShardExecutor) -> Clustered:
    """Components of the plan's edges, then one decision file per input shard."""
    rounds = label_components(plan, executor)
    _each(executor, Members(plan, rounds), plan.partitions)
    _each(executor, Candidates(plan), len(plan.shards))
    parts = _each(executor, Choose(plan), plan.partitions)
    _each(executor, Decide(plan), len(plan.shards))
    examples = [example for part in parts for example in part["examples"]]
    examples.sort(key=lambda example: (-example["size"], example["label"]))
    return Clustered(
        rounds,
        sum(part["clusters"] for part in parts),
        sum(part["documents"] for part in parts),
        examples[:EXAMPLES],
    )


def _save_table(storage: Storage, path: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    storage.makedirs(posixpath.dirname(path))
    storage.write_bytes(path, sink.getvalue().to_pybytes())


def _load_table(storage: Storage, path: str) -> pa.Table:
    return pa.ipc.open_file(pa.py_buffer(storage.read_bytes(path))).read_all()
