"""Runs a stage over its input shards into one partition directory, atomically and resumably.

Layout of a finished partition:

    <output>/part-NNNNN.parquet           kept rows, one file per input shard
    <output>/_dropped/part-NNNNN.parquet  dropped rows with stage and reason
    <output>/_manifest.json               counts, config, fingerprints (see manifest.py)

Work happens in a sibling staging directory `.<name>.staging`. A stage with a global pass
(`Stage.prepare`) writes its state under `_prepare/` there first. Each finished shard commits a
small record file there; a killed run that is started again with the same fingerprint only
processes the shards without one. When every shard is done the manifest is written and the
staging directory is renamed over the output: readers see the old partition or the new one,
never a mix.

That path (reuse, staging, resume, the manifest written last, the atomic publish) is
`materialize`, which the tokenizer and the token shards (curation/tokens/) take too.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.manifest import (
    DROPPED_DIR,
    MANIFEST_NAME,
    Manifest,
    ShardRecord,
    fingerprint,
    part_name,
    read_manifest,
    recorded_fingerprint,
    write_manifest,
)
from curation.core.progress import ProgressSink, ShardProgress
from curation.core.screening import Quarantine, screen
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage, writing

CODE_VERSION = "0.1.0"
_RUN_FILE = "_run.json"
_SHARDS_DIR = "_shards"
_PREPARE_DIR = "_prepare"
_SUMMARY_FILE = "_summary.json"

T = TypeVar("T")


def staging_path(output: str, suffix: str = "staging") -> str:
    """A hidden sibling of `output`: same filesystem, so the final move is a rename."""
    parent, name = posixpath.split(output.rstrip("/"))
    return posixpath.join(parent, f".{name}.{suffix}")


def run_fingerprint(stage: Stage, inputs: Sequence[ShardInput]) -> str:
    return fingerprint(
        {
            "stage": stage.name,
            "code_version": f"{CODE_VERSION}/{stage.version}",
            "config": stage.config(),
            "inputs": [[i.name, i.fingerprint] for i in inputs],
        }
    )


def current_manifest(
    stage: Stage, inputs: Sequence[ShardInput], output: str, storage: Storage
) -> Manifest | None:
    """The output's manifest if it was made from exactly this config, code and input."""
    manifest = read_manifest(storage, output)
    if manifest is not None and manifest.fingerprint == run_fingerprint(stage, inputs):
        return manifest
    return None


def run_stage(
    stage: Stage,
    inputs: Sequence[ShardInput],
    output: str,
    storage: Storage,
    executor: ShardExecutor | None = None,
    force: bool = False,
    progress: ProgressSink | None = None,
) -> Manifest:
    """Materialize `output` from `inputs`; reuse it as is when its fingerprint is current.
    `progress` receives throttled counts, rate and ETA as shards finish."""
    run_fp = run_fingerprint(stage, inputs)

    def build(staging: str) -> tuple[Manifest, str]:
        manifest = _run_shards(stage, inputs, storage, staging, run_fp, executor, progress)
        return manifest, manifest.to_json()

    return materialize(
        storage,
        output,
        run_fp,
        build,
        lambda: read_manifest(storage, output),
        force=force,
        resume=True,
        scratch=(_SHARDS_DIR, _PREPARE_DIR, _SUMMARY_FILE),
    )


def _run_shards(
    stage: Stage,
    inputs: Sequence[ShardInput],
    storage: Storage,
    staging: str,
    run_fp: str,
    executor: ShardExecutor | None,
    progress: ProgressSink | None,
) -> Manifest:
    """The global pass and the shards a previous run of `run_fp` did not commit, in `staging`;
    the manifest of all of them."""
    executor = executor or LocalExecutor(1)
    records = _committed(storage, staging)
    todo = [(i, shard) for i, shard in enumerate(inputs) if i not in records]
    summary_path = posixpath.join(staging, _SUMMARY_FILE)
    if todo:
        # Every input, not only those left to do: a resumed global pass reads them all.
        screened = [screen(stage, shard, storage) for shard in inputs]
        quarantine = {i: q for i, q in enumerate(screened) if q is not None}
        readable = [shard for shard, q in zip(inputs, screened, strict=True) if q is None]
        # With every input quarantined, a global pass has nothing to decide (and the dedup's
        # and the mixture's would refuse an empty corpus): the stage maps as it is.
        prepared = (
            stage.prepare(readable, storage, posixpath.join(staging, _PREPARE_DIR), executor)
            if readable
            else stage
        )
        storage.write_bytes(summary_path, json.dumps(prepared.summary()).encode())
        task = _ShardTask(prepared, storage, staging, quarantine)
        tracker = ShardProgress(stage.name, inputs, list(records.values()), progress or _ignore)
        for record in executor.map_unordered(task, todo):
            records[record.index] = record
            tracker.advance(record)
    summary = json.loads(storage.read_bytes(summary_path)) if storage.exists(summary_path) else {}
    return Manifest(
        stage=stage.name,
        code_version=f"{CODE_VERSION}/{stage.version}",
        config=stage.config(),
        inputs=[{"name": i.name, "fingerprint": i.fingerprint} for i in inputs],
        fingerprint=run_fp,
        shards=[records[i] for i in range(len(inputs))],
        summary=summary,
    )


def _ignore(update: object) -> None:
    pass


def _committed(storage: Storage, staging: str) -> dict[int, ShardRecord]:
    """The shard records a previous run of the same fingerprint committed (none in a fresh
    staging directory)."""
    storage.makedirs(posixpath.join(staging, _SHARDS_DIR))
    storage.makedirs(posixpath.join(staging, DROPPED_DIR))
    done = {}
    for path in storage.list_files(posixpath.join(staging, _SHARDS_DIR), ".json"):
        record = ShardRecord(**json.loads(storage.read_bytes(path)))
        done[record.index] = record
    return done


def materialize(
    storage: Storage,
    output: str,
    run_fp: str,
    build: Callable[[str], tuple[T, str]],
    read: Callable[[], T | None],
    *,
    force: bool = False,
    resume: bool = False,
    scratch: Sequence[str] = (),
) -> T:
    """The one path from a run's fingerprint to a published output directory, for the stages,
    the tokenizer and the token shards.

    Reuse: when the output's manifest records `run_fp` (and not `force`), `read()` gives the
    finished output as it is. Otherwise `build(staging)` fills the staging directory beside
    `output` (`staging_path`) and returns the result and its manifest's text. With `resume`, a
    staging directory left by a run of the same fingerprint (its `_run.json` says which) is
    kept, so `build` can skip what that run committed; any other is replaced by an empty one.
    Without `resume`, a failed `build` removes its staging directory. Then the run file and
    the `scratch` entries (files or directories) are removed, the manifest is written last,
    and the staging directory is swapped in for `output` (`publish`).
    """
    if not force and recorded_fingerprint(storage, output) == run_fp:
        found = read()
        if found is not None:
            return found
    staging = staging_path(output)
    run_file = posixpath.join(staging, _RUN_FILE)
    if not (resume and _recorded_run(storage, run_file) == run_fp):
        storage.remove_tree(staging)
        storage.makedirs(staging)
        storage.write_bytes(run_file, json.dumps({"fingerprint": run_fp}).encode())
    try:
        result, manifest = build(staging)
    except BaseException:
        if not resume:
            with suppress(OSError):
                storage.remove_tree(staging)
        raise
    for name in (_RUN_FILE, *scratch):
        path = posixpath.join(staging, name)
        if storage.is_dir(path):
            storage.remove_tree(path)
        elif storage.exists(path):
            storage.fs.delete_file(path)
    write_manifest(storage, staging, manifest)
    publish(storage, staging, output)
    return result


def _recorded_run(storage: Storage, run_file: str) -> str | None:
    """The fingerprint of the run that made a staging directory; None without one."""
    if not storage.exists(run_file):
        return None
    body = json.loads(storage.read_bytes(run_file))
    return body.get("fingerprint") if isinstance(body, dict) else None


def publish(storage: Storage, staging: str, output: str, last: str = MANIFEST_NAME) -> None:
    """Swap the finished staging directory in for the output.

    A crash between the two moves leaves no output (and the previous one under `.old`), never
    a partially written one. Stores without directory rename copy, the file `last` (the
    commit marker readers look for) after all others; and the previous output loses its
    `last` before any other file, since a prefix is deleted object by object (in batches sent
    concurrently), so a reader or a crash never meets its marker without all its files.
    """
    old = staging_path(output, "old")
    storage.remove_tree(old)
    if storage.is_local:
        if storage.exists(output):
            storage.fs.move(output, old)
        storage.fs.move(staging, output)
    else:
        if storage.exists(posixpath.join(output, last)):
            storage.fs.delete_file(posixpath.join(output, last))
        storage.remove_tree(output)
        storage.copy_tree(staging, output, last=last)
        storage.remove_tree(staging)
    storage.remove_tree(old)


@dataclass(frozen=True)
class _ShardTask:
    """Processes one shard and commits its files; picklable for process pools. A shard the
    screening refused commits its quarantine output instead of being processed."""

    stage: Stage
    storage: Storage
    staging: str
    quarantine: dict[int, Quarantine] = dataclasses.field(default_factory=dict)

    def __call__(self, item: tuple[int, ShardInput]) -> ShardRecord:
        index, shard = item
        name = part_name(index)
        part = posixpath.join(self.staging, name)
        schema = self.stage.output_schema
        n_in, kept, reasons, histograms = 0, 0, Counter(), {}
        with (
            _PartWriter(self.storage, part, schema) as kept_part,
            _PartWriter(self.storage, posixpath.join(self.staging, DROPPED_DIR, name)) as dropped,
        ):
            quarantine = self.quarantine.get(index)
            if quarantine is not None:
                outputs = [quarantine.output(self.stage, shard)]
            else:
                outputs = self.stage.process_batches(shard, self.storage)
            for out in outputs:
                kept_part.write(out.kept.select(schema.names).cast(schema))
                dropped.write(out.dropped)
                n_in += out.n_in
                kept += out.kept.num_rows
                reasons.update(out.dropped.column("reason").to_pylist())
                for key, counts in [*out.histograms.items(), ("text_bytes", _text_bytes(out))]:
                    histograms.setdefault(key, Counter()).update(counts)
        record = ShardRecord(
            index=index,
            input=shard.name,
            input_fingerprint=shard.fingerprint,
            n_in=n_in,
            kept=kept,
            dropped=dict(sorted(reasons.items())),
            bytes_in=shard.bytes,
            bytes_out=self.storage.size(part),
            part_sha256=self.storage.sha256(part),
            histograms={k: dict(sorted(v.items())) for k, v in sorted(histograms.items())},
            quarantined=None if quarantine is None else dataclasses.asdict(quarantine),
        )
        record_path = posixpath.join(self.staging, _SHARDS_DIR, f"{name}.json")
        self.storage.write_bytes(record_path, json.dumps(dataclasses.asdict(record)).encode())
        return record


def _text_bytes(out: ShardOutput) -> Counter[str]:
    """UTF-8 bytes of text kept and dropped by reason: the funnel in bytes, not only rows.
    Outputs without a `text` column (signatures) count nothing."""
    counts: Counter[str] = Counter()
    if out.kept.num_rows and "text" in out.kept.column_names:
        counts["kept"] = pc.sum(pc.binary_length(out.kept.column("text"))).as_py()
    if out.dropped.num_rows and "text" in out.dropped.column_names:
        lengths = pc.binary_length(out.dropped.column("text")).to_pylist()
        for reason, n in zip(out.dropped.column("reason").to_pylist(), lengths, strict=True):
            counts[reason] += n or 0
    return counts


class _PartWriter:
    """A Parquet part written batch by batch to a temporary name and moved into place on a
    clean exit. The schema is the stage's, or the first batch's (dropped rows)."""

    def __init__(self, storage: Storage, path: str, schema: pa.Schema | None = None):
        self.storage, self.path, self.schema = storage, path, schema
        self.tmp = f"{path}.tmp"
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        with writing(self.path):  # a full disk is an error naming the part, not pyarrow's
            if self.writer is None:
                self.schema = self.schema or table.schema
                self.writer = pq.ParquetWriter(
                    self.tmp, self.schema, filesystem=self.storage.fs, compression="zstd"
                )
            if table.num_rows:
                self.writer.write_table(table.cast(self.schema))

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abandon()
            return
        try:
            if self.writer is None:  # no batch at all: an empty part with the stage's schema
                self.write(pa.Table.from_pylist([], schema=self.schema or pa.schema([])))
            with writing(self.path):
                self.writer.close()
                self.storage.fs.move(self.tmp, self.path)
        except OSError:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Close and delete the partial file of a failed write: the error to report is the
        first one (closing on a full disk fails too), and the space goes back."""
        if self.writer is not None:
            with suppress(OSError):
                self.writer.close()
        self.storage.discard(self.tmp)
