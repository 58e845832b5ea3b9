"""Global dedup: signature throughput against datasketch, and memory of the global pass.

(a) Signatures per second, one process (one core: numpy here is single-threaded), on the
    texts of every finished contract partition under --stages (the sample world's
    commoncrawl, c4 and curated sources, as `make demo` leaves them), or of the partitions
    holding the Parquet files given with --input. Every rate is the minimum of interleaved
    rounds (report.py). References, on the same texts and the same word 5-gram shingles:
      - datasketch per document: `MinHash()` then `update(shingle)` per shingle (the usual
        loop, with datasketch's default SHA-1 hash of the shingle bytes), and datasketch
        `MinHash.bulk` (one `update_batch` per document), on --reference-docs of them;
      - on every partition: our `signatures` in memory (the bare call), our
        `dedup_signatures` stage (runner, Parquet in and out) and datatrove's
        MinhashDedupSignature (14 x 8 hashes of word 5-grams, its reader, its sorted bucket
        files), one worker each.
    "6KB-docs/s" converts bytes/s to the 6 KB documents of the target in DESIGN.md section 6
    (>= 900). The `deduplicated` stage then runs over every partition's signatures.

(b) Peak memory of the bucket reduce and of the cluster step on a synthetic corpus at 1x, 4x
    and 16x (distinct perturbed copies of sample documents, with a fixed share of exact and
    near duplicates), both partition bounds fixed. Each step runs alone in a fresh child
    process, every task of it in turn (one worker's peak); the peak is tracemalloc's (Python
    and numpy allocations) plus the Arrow memory pool's maximum (Arrow's allocations, which
    tracemalloc does not see). The last line is the cluster step's growth: its 16x peak over
    its 1x peak, and per document with a duplicate from 4x to 16x (the in-memory union-find
    it replaced took ~150 bytes each).

    python bench/bench_dedup.py [--stages data/stages] [--input part.parquet ...] [--rounds 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing
import os
import random
import tempfile
import tracemalloc

import numpy as np
import peers
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash
from report import Contender, Timing, interleaved, machine_note, print_rows, ratio_note, timing_row

from curation.core.documents import DOCUMENT_SCHEMA
from curation.core.executor import LocalExecutor
from curation.core.inputs import partition_shards
from curation.core.manifest import read_manifest
from curation.core.runner import run_stage
from curation.core.storage import Storage
from curation.dedup.buckets import MapTask, ReduceTask, pair_counts
from curation.dedup.corpus import CorpusGroup, CorpusShard, corpus_inputs
from curation.dedup.minhash import signatures
from curation.dedup.near_dedup import Deduplicated
from curation.dedup.signatures import MinHashSignatures

# curation.dedup.minhash's word bytes: ASCII letters, digits, "_" and every non-ASCII byte
_SEPARATORS = bytes(
    b if chr(b).isalnum() and b < 128 or b == 95 or b > 127 else 32 for b in range(256)
)
SCALES = (1, 4, 16)
DOCS_PER_SHARD = 2000


def partitions(stages: str) -> list[tuple[str, str]]:
    """(name, directory) of every finished contract partition under `stages`."""
    found = []
    for source in ("commoncrawl", "c4", "wikipedia", "books", "arxiv", "stackexchange", "github"):
        for directory in sorted(glob.glob(os.path.join(stages, source, "*"))):
            if os.path.isdir(directory) and read_manifest(Storage("/"), directory):
                found.append((f"{source}/{os.path.basename(directory)}", directory))
    return found


def shingle_bytes(text: str) -> list[bytes]:
    """The same words and 5-grams as curation.dedup.minhash, as bytes for datasketch to hash."""
    words = text.lower().encode().translate(_SEPARATORS).split()
    if len(words) < 5:
        return [b" ".join(words)] if words else []
    return [b" ".join(words[i : i + 5]) for i in range(len(words) - 4)]


def datasketch_per_shingle(texts: list[str]) -> int:
    for text in texts:
        minhash = MinHash(num_perm=112, seed=1, scheme="affine32")
        for shingle in shingle_bytes(text):
            minhash.update(shingle)
    return len(texts)


def datasketch_bulk(texts: list[str]) -> int:
    MinHash.bulk([shingle_bytes(t) for t in texts], num_perm=112, seed=1, scheme="affine32")
    return len(texts)


def ours(texts: list[str]) -> int:
    return len(signatures(texts, 112, 1)[0])


def text_bytes(texts: list[str]) -> int:
    return sum(len(t.encode()) for t in texts)


def signature_note(timing: Timing, mb: float, note: str = "") -> str:
    """MB/s, and the same in the 6 KB documents of DESIGN.md section 6's target (>= 900)."""
    per_s = mb / timing.best
    return f"{per_s:.2f} MB/s = {per_s * 1e6 / 6000:.0f} 6KB-docs/s {note}".strip()


def measure_reference(subset: list[str], rounds: int) -> dict[str, Timing]:
    """datasketch's two usual ways against ours, on a subset (its per-shingle loop is slow)."""
    return interleaved(
        [
            Contender("datasketch per shingle", lambda: datasketch_per_shingle(subset)),
            Contender("datasketch bulk", lambda: datasketch_bulk(subset)),
            Contender("ours", lambda: ours(subset)),
        ],
        rounds,
    )


def partition_contenders(
    found: list[tuple[str, str]], texts: list[str], with_peer: bool
) -> list[Contender]:
    """Every partition's signatures: the bare function on the texts in memory, our stage
    (runner, Parquet in and out), and datatrove's MinhashDedupSignature on the same files."""
    directories = [d for _, d in found]
    contenders = [
        Contender("bare", lambda: ours(texts)),
        Contender("ours", lambda: signature_stages(found)),
    ]
    if with_peer:
        contenders.append(Contender("datatrove", lambda: peers.minhash_signatures(directories)))
    return contenders


def measure_partitions(
    found: list[tuple[str, str]], texts: list[str], rounds: int, with_peer: bool
) -> dict[str, Timing]:
    return interleaved(partition_contenders(found, texts, with_peer), rounds)


def signature_stages(found: list[tuple[str, str]], out: str | None = None) -> int:
    """dedup_signatures over every partition (into `out`, or a scratch directory)."""
    storage = Storage("/")
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for name, directory in found:
            target = os.path.join(out or tmp, "signatures", name)
            n += run_stage(
                MinHashSignatures(), partition_shards(storage, directory), target, storage
            ).n_in
        return n


def corpus_groups(found: list[tuple[str, str]], signed: str) -> list[CorpusGroup]:
    groups = []
    for name, directory in found:
        source = name.split("/")[0]
        crawl = name.split("/")[1] if source in ("commoncrawl", "c4") else None
        groups.append(CorpusGroup(name, directory, os.path.join(signed, "signatures", name), crawl))
    return groups


def global_run(groups: list[CorpusGroup]) -> tuple[int, dict]:
    storage = Storage("/")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = run_stage(
            Deduplicated(), corpus_inputs(storage, groups), os.path.join(tmp, "out"), storage
        )
    summary = manifest.summary | {
        "removed_by_source_pair": manifest.histograms.get("removed_by_source_pair", {}),
        "dropped": manifest.dropped,
    }
    return manifest.n_in, summary


def global_contender(found: list[tuple[str, str]], signed: str) -> tuple[Contender, dict]:
    """The `deduplicated` stage over every partition's signatures, made once into `signed`
    (which must outlive the rounds); the dict receives the run's summary."""
    signature_stages(found, signed)
    groups = corpus_groups(found, signed)
    summary: dict = {}

    def run() -> int:
        n, summary_ = global_run(groups)
        summary.update(summary_)
        return n

    return Contender("deduplicated", run), summary


def measure_global(found: list[tuple[str, str]], rounds: int) -> tuple[Timing, dict]:
    with tempfile.TemporaryDirectory() as signed:
        contender, summary = global_contender(found, signed)
        timing = interleaved([contender], rounds)["deduplicated"]
    return timing, summary


def throughput_rows(
    reference: dict[str, Timing], subset: list[str], partitions: dict[str, Timing], texts: list[str]
) -> list[tuple]:
    small, large = text_bytes(subset) / 1e6, text_bytes(texts) / 1e6
    loop, bulk, mine = (reference[k] for k in ("datasketch per shingle", "datasketch bulk", "ours"))
    rows = [
        timing_row(loop, signature_note(loop, small), "datasketch MinHash() + update per shingle"),
        timing_row(bulk, signature_note(bulk, small), "datasketch MinHash.bulk (update_batch)"),
        timing_row(
            mine,
            signature_note(mine, small, ratio_note(mine, [(loop, "per-shingle"), (bulk, "bulk")])),
            "curation.dedup.minhash.signatures (same docs)",
        ),
    ]
    bare, stage, peer = partitions["bare"], partitions["ours"], partitions.get("datatrove")
    rows.append(
        timing_row(bare, signature_note(bare, large), "curation.dedup.minhash.signatures (all)")
    )
    note = ratio_note(stage, [(bare, "bare"), (peer, "datatrove")])
    rows.append(
        timing_row(stage, signature_note(stage, large, note), "dedup_signatures stage (all)")
    )
    if peer:
        rows.append(
            timing_row(peer, signature_note(peer, large), "datatrove MinhashDedupSignature (all)")
        )
    return rows


# --- (b) memory ---------------------------------------------------------------------------


def perturbed(words: list[str], rng: random.Random, share: float) -> list[str]:
    out = list(words)
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        out[i] = f"p{rng.randrange(1 << 30)}"
    return out


def synthetic_texts(base: list[list[str]], scale: int, duplicate_rate: float) -> list[str]:
    """`scale` distinct copies of every base document (40% of words replaced: Jaccard far
    below the threshold), then exact and near duplicates of `duplicate_rate` of them."""
    rng = random.Random(scale)
    texts = [" ".join(perturbed(w, rng, 0.4)) for _ in range(scale) for w in base]
    chosen = rng.sample(range(len(texts)), int(len(texts) * duplicate_rate))
    half = len(chosen) // 2
    texts += [texts[i] for i in chosen[:half]]  # exact
    texts += [" ".join(perturbed(texts[i].split(), rng, 0.01)) for i in chosen[half:]]  # near
    rng.shuffle(texts)
    return texts


def write_corpus(root: str, texts: list[str], storage: Storage) -> list[CorpusShard]:
    shards = []
    for index, start in enumerate(range(0, len(texts), DOCS_PER_SHARD)):
        chunk = texts[start : start + DOCS_PER_SHARD]
        documents = pa.table(
            {
                "id": [f"d{start + i:09d}" for i in range(len(chunk))],
                "source": ["commoncrawl"] * len(chunk),
                "text": chunk,
                "url": pa.nulls(len(chunk), pa.string()),
                "meta": ["{}"] * len(chunk),
            },
            schema=DOCUMENT_SCHEMA,
        )
        path = os.path.join(root, f"docs-{index:05d}.parquet")
        signed = os.path.join(root, f"sigs-{index:05d}.parquet")
        pq.write_table(documents, path)
        pq.write_table(MinHashSignatures().signature_table(documents), signed)
        shards.append(
            CorpusShard(f"s/{index}", path, str(index), 0, signed, "bench", len(chunk), 112)
        )
    return shards


def _measure(step: str, stage: Deduplicated, inputs: list[CorpusShard], workdir: str) -> tuple:
    """In a fresh process: run one step, every bucket partition or the cluster step; return
    its peak bytes (tracemalloc + Arrow pool) and what it worked on."""
    storage = Storage("/")
    plan = stage.plan(inputs, workdir)
    pa.table({"warm": [0]})  # pyarrow imports pandas on first use: a module, not the step's data
    tracemalloc.start()
    if step == "reduce":
        task = ReduceTask(plan, storage, len(inputs))
        for partition in range(plan.partitions):
            task(partition)
    else:
        summary = stage.cluster(plan, inputs, storage, LocalExecutor(1))
    peak = tracemalloc.get_traced_memory()[1] + pa.default_memory_pool().max_memory()
    if step == "reduce":
        offsets = [
            np.frombuffer(storage.read_bytes(plan.path("offsets", i)), "<u8")
            for i in range(len(inputs))
        ]
        rows = int(np.diff(np.sum(offsets, axis=0)).max())
        counts = [
            json.loads(storage.read_bytes(plan.path("counts", p))) for p in range(plan.partitions)
        ]
        pairs = max(c["candidates"] for c in counts)
        return (
            peak,
            f"{plan.partitions} partitions of <= {rows} rows, <= {pairs} candidate pairs",
            0,
        )
    clustered = summary["documents_in_clusters"]
    edge_rows = pair_counts(storage, plan, len(inputs))["verified"]
    note = (
        f"{summary['cluster_partitions']} partitions, {2 * edge_rows} edge rows, "
        f"{summary['cluster_rounds']} rounds, {clustered} docs in {summary['clusters']} clusters"
    )
    return peak, note, clustered


def in_child(*args) -> tuple:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, args)


def memory(
    base: list[list[str]], bound: int, cluster_bound: int, duplicate_rate: float
) -> tuple[list[tuple], str]:
    """The table rows, and the cluster step's growth: 16x over 1x, and per clustered document."""
    rows, clustered = [], []
    storage = Storage("/")
    for scale in SCALES:
        with tempfile.TemporaryDirectory() as tmp:
            texts = synthetic_texts(base, scale, duplicate_rate)
            inputs = write_corpus(tmp, texts, storage)
            stage = Deduplicated(
                max_rows_per_bucket_partition=bound, max_rows_per_cluster_partition=cluster_bound
            )
            workdir = os.path.join(tmp, "work")
            plan = stage.plan(inputs, workdir)
            plan.makedirs(storage)
            list(LocalExecutor(1).map_unordered(MapTask(plan, storage), list(enumerate(inputs))))
            for step in ("reduce", "cluster"):
                peak, note, documents = in_child(step, stage, inputs, workdir)
                rows.append((f"{step} step, {scale}x corpus", peak / 1e6, len(texts), note))
            clustered.append((peak, documents))
    (first, n_first), (small, n_small), (large, n_large) = clustered
    marginal = (
        f"cluster step: {large / first:.2f}x the 1x peak at {n_large / n_first:.0f}x the "
        f"documents with a duplicate; {(large - small) / (n_large - n_small):.0f} bytes per "
        f"clustered document ({SCALES[-2]}x to {SCALES[-1]}x)"
    )
    return rows, marginal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--stages", default="data/stages")
    parser.add_argument("--input", nargs="*", default=[], help="contract Parquet files instead")
    parser.add_argument(
        "--reference-docs", type=int, default=400, help="docs for the slow datasketch loop"
    )
    parser.add_argument("--base-docs", type=int, default=20_000, help="1x synthetic corpus")
    parser.add_argument(
        "--bound",
        type=int,
        default=24_000,
        help="max_rows_per_bucket_partition for (b): small enough that the 1x corpus has more "
        "partitions than bands, so partitions are full of distinct pairs at every scale",
    )
    parser.add_argument(
        "--cluster-bound",
        type=int,
        default=24_000,
        help="max_rows_per_cluster_partition for (b): the 1x corpus already has several",
    )
    parser.add_argument("--duplicate-rate", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="leave datatrove out")
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    args = parser.parse_args()

    found = (
        [(f"input/{i}", d) for i, d in enumerate(sorted({os.path.dirname(p) for p in args.input}))]
        if args.input
        else partitions(os.path.abspath(args.stages))
    )
    paths = [p for _, d in found for p in glob.glob(os.path.join(d, "part-*.parquet"))]
    texts = [
        t for p in paths for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]
    why = "--no-peer" if args.no_peer else peers.unavailable()
    print(f"# {machine_note()}; {args.rounds} interleaved rounds, min each")
    if why:
        print(f"# datatrove not measured: {why}")
    subset = random.Random(0).sample(texts, min(args.reference_docs, len(texts)))
    reference = measure_reference(subset, args.rounds)
    by_partition = measure_partitions(found, texts, args.rounds, not why)
    rows = throughput_rows(reference, subset, by_partition, texts)
    timing, summary = measure_global(found, args.rounds)
    rows.append(timing_row(timing, f"dropped {summary['dropped']}", "deduplicated (all)"))
    print_rows(rows, "signatures", "docs/s")
    print({k: v for k, v in summary.items() if k != "example_clusters"})
    if args.skip_memory:
        return

    base = [t.split()[:150] for t in texts if len(t.split()) >= 150]
    base = (base * (args.base_docs // max(1, len(base)) + 1))[: args.base_docs]
    print()
    rows, marginal = memory(base, args.bound, args.cluster_bound, args.duplicate_rate)
    print_rows(rows, "global pass memory", "MB")
    print(marginal)


if __name__ == "__main__":
    main()
