"""Reading the mixture's contract parts as a training stream: which rows, in which split, how often.

The mixture step writes ordinary contract part files (`id`, `source`, `text`, `url`, `meta`, ...)
with two optional columns that say how each document enters training:

    split    "train" or "validation"; absent or null means "train"
    repeats  how many times a train document appears in the training stream; absent or null
             means 1, 0 means "not in the stream"; validation rows are written once

Both the tokenizer (its training sample) and the shard writer (the stream itself) read the parts
through here, so they agree on these defaults. A value outside them is a clear error naming the
part, never a silent guess: it means the mixture and the tokenizer disagree on the contract.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.stage import ShardInput
from curation.core.storage import Storage

SPLIT_COLUMN = "split"
REPEATS_COLUMN = "repeats"
TRAIN = "train"
VALIDATION = "validation"
DEFAULT_BATCH_ROWS = 4096


class InvalidStreamColumn(ValueError):
    """A `split` or `repeats` value outside the contract."""


@dataclass
class StreamBatch:
    """Rows of one part with their stream role already resolved (defaults applied)."""

    table: pa.Table
    validation: np.ndarray  # bool per row
    repeats: np.ndarray  # int64 per row; meaningless for validation rows


def read_stream(
    storage: Storage,
    shard: ShardInput,
    columns: Sequence[str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[StreamBatch]:
    """The part's rows in order, batch by batch (constant memory), with `columns` (those the
    part lacks are left out: `language` exists only for some sources)."""
    with storage.fs.open_input_file(shard.path) as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        wanted = [c for c in columns if c in names]
        extra = [c for c in (SPLIT_COLUMN, REPEATS_COLUMN) if c in names and c not in wanted]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted + extra):
            table = pa.Table.from_batches([batch])
            yield StreamBatch(
                table=table.select(wanted),
                validation=_validation(table, shard.name),
                repeats=_repeats(table, shard.name),
            )


def _validation(table: pa.Table, part: str) -> np.ndarray:
    if SPLIT_COLUMN not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    split = table.column(SPLIT_COLUMN).cast(pa.string()).fill_null(TRAIN)
    bad = pc.invert(pc.is_in(split, pa.array([TRAIN, VALIDATION])))
    if pc.any(bad).as_py():
        value = split.filter(bad)[0].as_py()
        raise InvalidStreamColumn(
            f"{part}: column {SPLIT_COLUMN!r} must be {TRAIN!r} or {VALIDATION!r}, got {value!r}"
        )
    return pc.equal(split, VALIDATION).to_numpy(zero_copy_only=False)


def _repeats(table: pa.Table, part: str) -> np.ndarray:
    if REPEATS_COLUMN not in table.column_names:
        return np.ones(table.num_rows, dtype=np.int64)
    column = table.column(REPEATS_COLUMN)
    if not pa.types.is_integer(column.type):
        raise InvalidStreamColumn(
            f"{part}: column {REPEATS_COLUMN!r} must be an integer, got {column.type}"
        )
    repeats = column.cast(pa.int64()).fill_null(1).to_numpy(zero_copy_only=False)
    if repeats.size and repeats.min() < 0:
        raise InvalidStreamColumn(
            f"{part}: column {REPEATS_COLUMN!r} must be >= 0, got {int(repeats.min())}"
        )
    return repeats
