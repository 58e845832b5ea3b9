"""Input Parquet screened before a stage reads it, and read in the contract's types.

A stage that reads contract Parquet trusts its input's schema; a file that is empty, cut
short or written by something else would otherwise fail the whole run on its first read,
and the good shards with it. The runner asks this module first: a shard that is not readable
Parquet with the stage's `input_schema` is quarantined whole, as one dropped record naming
the file, its reason and what is wrong (`column 'text' is int64, not string`), and the run
goes on with the rest. The shard's manifest record repeats the reason and detail.

Parquet as people write it still goes through. A column of the right kind in another
physical type is the same column, and `read_shard` casts it to the contract's type:

- any float width to the contract's float (pandas writes float64 where the contract has
  float32: the precision a score needs survives);
- `large_string`, `string_view` and dictionary-encoded strings (pandas categoricals) to
  `string`;
- an integer to a wider integer, whose every value it holds. A narrower one (int64 for an
  int32 column) is refused: screening reads only the footer, so it cannot prove the values fit;
- an all-null column to any nullable column.

A column of another kind (`text` as int64, `language_score` as string) is quarantined. The
columns screened and cast are those the stage's schemas name: its input schema, which a shard
must have, and its output schema's other columns, which a shard may have (the mixture and
dedup carry the `language` and score columns of the sources that have them).

Columns the stage's schemas do not name are not read, so they reach neither the kept rows
(exactly the stage's output schema) nor the dropped rows (the stage's input columns with
`stage` and `reason`): a native field that should survive belongs in `meta`.

Only the footer is read (the schema and row counts), so screening costs one small read per
shard. A file whose footer is sound but whose pages are corrupt still fails the run, with
the reader's error naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.documents import DOCUMENT_SCHEMA, dropped_schema
from curation.core.stage import ShardInput, ShardOutput, Stage
from curation.core.storage import Storage

UNREADABLE = "unreadable_parquet"
WRONG_SCHEMA = "wrong_schema"
_DETAIL_CHARS = 500
_STRINGS = (pa.string(), pa.large_string(), pa.string_view())


@dataclass(frozen=True)
class Quarantine:
    """Why a whole input shard is not read: the reason and what exactly is wrong."""

    reason: str
    detail: str

    def output(self, stage: Stage, shard: ShardInput) -> ShardOutput:
        """The whole file as one dropped record: conservation counts it as one input."""
        row = {
            "id": shard.name,
            "source": "",
            "text": "",
            "url": None,
            "meta": json.dumps({"input": shard.path, "error": self.detail}),
            "stage": stage.name,
            "reason": self.reason,
        }
        dropped = pa.Table.from_pylist([row], schema=dropped_schema(DOCUMENT_SCHEMA))
        return ShardOutput(n_in=1, kept=stage.output_schema.empty_table(), dropped=dropped)


def contract(stage: Stage) -> pa.Schema:
    """The columns `stage` reads, in their contract types: its input schema, then the output
    columns it carries through when a shard has them."""
    inputs = stage.input_schema or pa.schema([])
    return pa.schema([*inputs, *(f for f in stage.output_schema if f.name not in inputs.names)])


def screen(stage: Stage, shard: ShardInput, storage: Storage) -> Quarantine | None:
    """Why the stage cannot read the shard, or None when it can."""
    if stage.input_schema is None:
        return None
    try:
        with storage.fs.open_input_file(shard.path) as stream:
            found = pq.read_schema(stream)
    except pa.ArrowInvalid as exc:  # empty, truncated, not Parquet at all
        # The shard's name, not its path: the detail goes into the manifest, which must be
        # the same on every machine.
        reason, detail = UNREADABLE, str(exc).replace(shard.path, shard.name)
    else:
        detail = schema_problem(found, stage.input_schema, contract(stage))
        if detail is None:
            return None
        reason = WRONG_SCHEMA
    return Quarantine(reason, detail[:_DETAIL_CHARS])


def schema_problem(found: pa.Schema, required: pa.Schema, known: pa.Schema) -> str | None:
    """What keeps `found` from being read as the stage reads it: a column of `required`
    missing, or a column of `known` that does not cast to its contract type."""
    for field in required:
        if field.name not in found.names:
            return f"no column {field.name!r}"
    for field in known:
        if field.name in found.names:
            problem = cast_problem(found.field(field.name).type, field)
            if problem is not None:
                return f"column {field.name!r} is {problem}"
    return None


def cast_problem(found: pa.DataType, wanted: pa.Field) -> str | None:
    """Why a column of type `found` is not the column `wanted` (None: it casts safely)."""
    if found == wanted.type or (found == pa.null() and wanted.nullable):
        return None
    if kind(found) != kind(wanted.type):
        return f"{found}, not {kind(wanted.type)}"
    if pa.types.is_integer(found) and not _holds(wanted.type, found):
        return f"{found}, whose values {wanted.type} cannot all hold"
    return None


def kind(data_type: pa.DataType) -> str:
    """What a column holds, whatever its physical type: string, float, integer, or the type."""
    if data_type in _STRINGS or (
        pa.types.is_dictionary(data_type) and data_type.value_type in _STRINGS
    ):
        return "string"
    if pa.types.is_floating(data_type):
        return "float"
    if pa.types.is_integer(data_type):
        return "integer"
    return str(data_type)


def _holds(wide: pa.DataType, narrow: pa.DataType) -> bool:
    """Whether every value of the integer type `narrow` is a value of the integer type `wide`."""
    if pa.types.is_signed_integer(narrow) and pa.types.is_unsigned_integer(wide):
        return False
    sign_bit = int(pa.types.is_unsigned_integer(narrow) and pa.types.is_signed_integer(wide))
    return narrow.bit_width + sign_bit <= wide.bit_width


def read_shard(
    reader: Stage | pa.Schema,
    shard: ShardInput,
    storage: Storage,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The shard's `columns` (default: every column the reader's schema names that the shard
    has, in schema order), those the schema names cast to its types. `reader` is a stage
    (its `contract`) or a schema. The shard has passed `screen`, so every cast is safe."""
    with storage.fs.open_input_file(shard.path) as stream:
        parquet = pq.ParquetFile(stream)
        schema, names = _reading(reader, parquet, columns)
        return _cast_known(parquet.read(columns=names), schema)


def iter_shard(
    reader: Stage | pa.Schema,
    shard: ShardInput,
    storage: Storage,
    columns: Sequence[str] | None,
    batch_rows: int,
) -> Iterator[pa.Table]:
    """`read_shard` in tables of at most `batch_rows` rows, so memory does not grow with the
    shard; a shard without rows still yields one (empty, typed) table."""
    with storage.fs.open_input_file(shard.path) as stream:
        parquet = pq.ParquetFile(stream)
        schema, names = _reading(reader, parquet, columns)
        if not parquet.metadata.num_rows:
            yield _cast_known(parquet.read(columns=names), schema)
            return
        for batch in parquet.iter_batches(batch_rows, columns=names):
            yield _cast_known(pa.Table.from_batches([batch]), schema)


def _reading(
    reader: Stage | pa.Schema, parquet: pq.ParquetFile, columns: Sequence[str] | None
) -> tuple[pa.Schema, list[str]]:
    """The schema to cast to and the columns to read."""
    schema = contract(reader) if isinstance(reader, Stage) else reader
    if columns is not None:
        return schema, list(columns)
    return schema, [name for name in schema.names if name in parquet.schema_arrow.names]


def _cast_known(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns `schema` names in its types, the others as they are, and
    without the writer's schema metadata (pandas'): the same rows read the same however they
    were written. Nullability stays the file's; the runner casts the kept rows to the output
    schema, which is where a null in a required column is refused."""
    fields = [
        pa.field(found.name, schema.field(found.name).type, found.nullable)
        if found.name in schema.names
        else found
        for found in table.schema
    ]
    return table.replace_schema_metadata(None).cast(pa.schema(fields))
