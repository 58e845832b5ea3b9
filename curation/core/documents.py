"""The document contract: one Arrow schema for every shard, stable ids, quarantine rows.

Every stage reads and writes tables with these columns; stages append annotation columns
(`language`, `language_score`, ...) after them. Dropped rows carry the same columns plus the
`stage` that dropped them and the `reason`, so a person can always ask "where did this go?".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

DOCUMENT_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("meta", pa.string(), nullable=False),
]
DOCUMENT_SCHEMA = pa.schema(DOCUMENT_FIELDS)

DROP_FIELDS: list[pa.Field] = [
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
]


def document_id(source: str, native_id: str) -> str:
    """A stable id: the same record gets the same id in every run and from every reader.

    Hashing source and native id (not row position or file name) keeps ids valid when shards
    are re-cut or the same capture is read from WARC or from its WET conversion.
    """
    digest = hashlib.sha1(f"{source}\x00{native_id}".encode()).hexdigest()
    return digest[:24]


def encode_meta(meta: Mapping[str, Any]) -> str:
    """Native fields as a JSON string, keys sorted so identical input gives identical bytes."""
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    text: str
    url: str | None
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "text": self.text,
            "url": self.url,
            "meta": encode_meta(self.meta),
        }


def schema_with(extra: Iterable[pa.Field] = ()) -> pa.Schema:
    """The document schema followed by a stage's annotation columns."""
    return pa.schema([*DOCUMENT_FIELDS, *extra])


def dropped_schema(schema: pa.Schema) -> pa.Schema:
    """Dropped rows keep every column of the stage's input plus where and why."""
    return pa.schema([*schema, *DROP_FIELDS])


def documents_table(docs: Iterable[Document]) -> pa.Table:
    return pa.Table.from_pylist([d.row() for d in docs], schema=DOCUMENT_SCHEMA)


def drop_rows(table: pa.Table, stage: str, reasons: list[str]) -> pa.Table:
    """Attach the stage and one reason per row, in the dropped-row schema."""
    n = table.num_rows
    return table.append_column(DROP_FIELDS[0], pa.array([stage] * n, pa.string())).append_column(
        DROP_FIELDS[1], pa.array(reasons, pa.string())
    )
