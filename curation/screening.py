"""Input Parquet screened before a stage reads it.

A stage that reads contract Parquet trusts its input's schema; a file that is empty, cut
short or written by something else would otherwise fail the whole run on its first read,
and the good shards with it. The runner asks this module first: a shard that is not readable
Parquet with the stage's `input_schema` is quarantined whole, as one dropped record naming
the file, its reason and the reader's error, and the run goes on with the rest.

Only the footer is read (the schema and row counts), so screening costs one small read per
shard. A file whose footer is sound but whose pages are corrupt still fails the run, with
the reader's error naming the file.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from curation.documents import DOCUMENT_SCHEMA, dropped_schema
from curation.stage import ShardInput, ShardOutput, Stage
from curation.storage import Storage

UNREADABLE = "unreadable_parquet"
WRONG_SCHEMA = "wrong_schema"
_STRINGS = {pa.string(), pa.large_string(), pa.string_view()}


def schema_problem(found: pa.Schema, required: pa.Schema) -> str | None:
    """What keeps `found` from being read as `required`: a missing column or another type."""
    for field in required:
        index = found.get_field_index(field.name)
        if index < 0:
            return f"no column {field.name!r}"
        kind = found.field(index).type
        if kind == pa.null() and field.nullable:  # an all-null column casts to any type
            continue
        if kind != field.type and not {kind, field.type} <= _STRINGS:
            return f"column {field.name!r} is {kind}, not {field.type}"
    return None


def screen(stage: Stage, shard: ShardInput, storage: Storage) -> ShardOutput | None:
    """The quarantine output for a shard the stage cannot read, or None when it can."""
    if stage.input_schema is None:
        return None
    try:
        with storage.fs.open_input_file(shard.path) as stream:
            found = pq.read_schema(stream)
    except pa.ArrowInvalid as exc:  # empty, truncated, not Parquet at all
        return quarantined(stage, shard, UNREADABLE, str(exc))
    problem = schema_problem(found, stage.input_schema)
    return None if problem is None else quarantined(stage, shard, WRONG_SCHEMA, problem)


def quarantined(stage: Stage, shard: ShardInput, reason: str, detail: str) -> ShardOutput:
    """The whole file as one dropped record: conservation counts it as one input."""
    row = {
        "id": shard.name,
        "source": "",
        "text": "",
        "url": None,
        "meta": json.dumps({"input": shard.path, "error": detail[:500]}),
        "stage": stage.name,
        "reason": reason,
    }
    dropped = pa.Table.from_pylist([row], schema=dropped_schema(DOCUMENT_SCHEMA))
    kept = stage.output_schema.empty_table()
    return ShardOutput(n_in=1, kept=kept, dropped=dropped)
