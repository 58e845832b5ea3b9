"""Parquet as people write it goes through every stage that reads Parquet.

pandas writes scores as float64, strings as `large_string`, categoricals as dictionaries,
columns in its own order and columns of its own. Each stage, fed the sample crawl's real
documents written that way, keeps and drops exactly what it does with the same rows written
in the contract's types: the kept parts are byte for byte the same, the dropped rows the same
rows in the same columns. A column of another kind is quarantined with its name, and
`llamapipe stage` says so, failing when nothing was left to read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import test_perplexity
import test_wikiref

from curation.core.inputs import file_shard
from curation.core.manifest import Manifest, read_manifest
from curation.core.screening import cast_problem, read_shard
from curation.core.storage import Storage
from pipelines.cli import main

pytestmark = pytest.mark.slow
# The models the perplexity and wikiref tests train, reused as they are.
en_articles, models_dir = test_perplexity.en_articles, test_perplexity.models_dir
model_path = test_wikiref.model_path
PARTS = 3  # of the sample crawl's 8 document parts: enough rows, every stage in seconds
NATIVE = "fetched_by"  # a column of the writer's own, which no stage knows

# Each stage that reads Parquet, and the upstream partition it reads.
READS = {
    "cc_line_dedup": "documents",
    "cc_language": "documents",
    "dedup_signatures": "documents",
    "c4": "languages",
    "mixture": "languages",
    "cc_perplexity": "languages",
    "cc_wikiref": "perplexities",
    "commoncrawl": "references",
    "deduplicated": "references",
}


def run(name: str, source: Path, output: Path, *options: str) -> Manifest:
    """`llamapipe stage NAME` in this process; the partition's manifest."""
    argv = ["stage", name, "--input", str(source), "--output", str(output), "--workers", "1"]
    assert main([*argv, *options]) == 0
    return read_manifest(Storage("/"), str(output))


def as_pandas_writes_it(table: pa.Table) -> pd.DataFrame:
    """The rows as a pandas user holds them: numbers in 64 bits, the few-valued columns as
    categoricals, the columns in another order, and a column of their own."""
    frame = table.to_pandas()
    for name in frame.columns:
        if pd.api.types.is_float_dtype(frame[name]):
            frame[name] = frame[name].astype("float64")
        elif pd.api.types.is_integer_dtype(frame[name]):
            frame[name] = frame[name].astype("int64")
        elif name in ("source", "language", "bucket", "split"):
            frame[name] = frame[name].astype("category")
    frame[NATIVE] = "crawler-7"
    return frame[list(reversed(frame.columns))]


def first_parts(partition: Path) -> list[Path]:
    return sorted(partition.glob("part-*.parquet"))[:PARTS]


def contract_copy(partition: Path, directory: Path) -> Path:
    """The first parts of a partition, as the pipeline wrote them."""
    directory.mkdir(parents=True)
    for part in first_parts(partition):
        shutil.copyfile(part, directory / part.name)
    return directory


def pandas_copy(
    partition: Path,
    directory: Path,
    edit: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame,
) -> Path:
    """The same parts as pandas writes them, each passed through `edit` first."""
    directory.mkdir(parents=True)
    for part in first_parts(partition):
        edit(as_pandas_writes_it(pq.read_table(part))).to_parquet(directory / part.name)
    return directory


def dropped(output: Path) -> list[tuple[list[tuple[str, pa.DataType]], list[dict]]]:
    """Each dropped part's columns (name, type) and rows."""
    parts = [pq.read_table(p) for p in sorted((output / "_dropped").glob("part-*.parquet"))]
    return [([(f.name, f.type) for f in part.schema], part.to_pylist()) for part in parts]


@dataclass(frozen=True)
class Upstream:
    """Contract partitions of every schema a Parquet stage reads, and each stage's options."""

    partitions: dict[str, Path]
    options: dict[str, tuple[str, ...]]


def tertiles(scored: Path) -> str:
    """Cutoffs at the 30th and 60th percentiles of a partition's English perplexities."""
    perplexity = pq.read_table(scored, columns=["perplexity"]).column("perplexity")
    return json.dumps({"en": np.percentile(perplexity.drop_null(), [30, 60]).tolist()})


@pytest.fixture(scope="module")
def upstream(sample_documents, models_dir, model_path, tmp_path_factory) -> Upstream:
    """Made by the stages themselves from the sample crawl's documents."""
    root = tmp_path_factory.mktemp("upstream")
    documents = contract_copy(sample_documents, root / "documents")
    languages, scored = root / "languages", root / "scored"
    run("cc_language", documents, languages)
    run("cc_perplexity", languages, scored, "--models-dir", models_dir)  # no cutoffs: all kept
    options = {
        "cc_perplexity": ("--models-dir", models_dir, "--cutoffs", tertiles(scored)),
        "cc_wikiref": ("--model", model_path),
    }
    perplexities, references = root / "perplexities", root / "references"
    run("cc_perplexity", languages, perplexities, *options["cc_perplexity"])
    run("cc_wikiref", perplexities, references, *options["cc_wikiref"], "--threshold", "0")
    partitions = {
        "documents": documents,
        "languages": languages,
        "perplexities": perplexities,
        "references": references,
    }
    return Upstream(partitions, options)


@pytest.mark.parametrize("name", sorted(READS))
def test_pandas_parquet_is_processed_as_the_contracts_own(name, upstream, tmp_path):
    partition, options = upstream.partitions[READS[name]], upstream.options.get(name, ())
    theirs = pandas_copy(partition, tmp_path / "pandas")
    written = pq.read_schema(theirs / "part-00000.parquet")
    assert written.field("text").type == pa.large_string() and NATIVE in written.names

    ours = run(name, contract_copy(partition, tmp_path / "contract"), tmp_path / "ours", *options)
    got = run(name, theirs, tmp_path / "theirs", *options)
    assert ours.n_in > 0 and not got.quarantined
    assert [s.part_sha256 for s in got.shards] == [s.part_sha256 for s in ours.shards]
    assert dropped(tmp_path / "theirs") == dropped(tmp_path / "ours")
    assert not any(NATIVE in dict(columns) for columns, _ in dropped(tmp_path / "theirs"))


def test_the_tokenizer_and_its_shards_read_pandas_parquet_as_the_mixtures_own(upstream, tmp_path):
    """Not stages: they read the mixture's `split` and `repeats` through
    curation/tokens/inputs.py, which takes any string and integer type for them."""
    mixture = tmp_path / "mixture"
    run("mixture", upstream.partitions["documents"], mixture)
    for name, source in (("ours", mixture), ("theirs", pandas_copy(mixture, tmp_path / "pandas"))):
        common = ["--input", str(source), "--workers", "1"]
        tokenizer, shards = tmp_path / name / "tokenizer", tmp_path / name / "shards"
        assert main(["stage", "tokenizer", *common, "--output", str(tokenizer),
                     "--vocab-size", "2000"]) == 0  # fmt: skip
        assert main(["stage", "tokenized_shards", *common, "--output", str(shards),
                     "--tokenizer", str(tokenizer / "tokenizer.model")]) == 0  # fmt: skip
    assert file_hashes(tmp_path / "theirs") == file_hashes(tmp_path / "ours")


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file but the manifests (which record the inputs' own hashes)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "_manifest.json"
    }


def scores_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    frame["language_score"] = frame["language_score"].map("{:.2f}".format)
    return frame


def texts_as_lengths(frame: pd.DataFrame) -> pd.DataFrame:
    frame["text"] = frame["text"].str.len()
    return frame


def test_a_column_of_another_kind_is_quarantined_by_name(upstream, tmp_path, capsys):
    languages = upstream.partitions["languages"]
    source = pandas_copy(languages, tmp_path / "in")
    wrong = pandas_copy(languages, tmp_path / "wrong", scores_as_text)
    shutil.copyfile(wrong / "part-00001.parquet", source / "part-00001.parquet")
    (source / "part-00003.parquet").write_bytes(b"")
    output = tmp_path / "out"

    manifest = run("c4", source, output)
    printed = capsys.readouterr().out
    detail = "column 'language_score' is large_string, not float"
    assert f"quarantined part-00001.parquet: wrong_schema: {detail}\n" in printed
    assert "quarantined part-00003.parquet: unreadable_parquet: " in printed
    assert manifest.shards[1].quarantined == {"reason": "wrong_schema", "detail": detail}
    assert [s.input for s in manifest.quarantined] == ["part-00001.parquet", "part-00003.parquet"]
    assert manifest.shards[0].kept > 0 and manifest.shards[2].kept > 0
    (row,) = pq.read_table(output / "_dropped" / "part-00001.parquet").to_pylist()
    assert json.loads(row["meta"])["error"] == detail
    assert str(tmp_path) not in (output / "_manifest.json").read_text()  # same on any machine

    from assets.stage_run import stage_metadata

    table = stage_metadata(manifest, str(output), None)["quarantined"].value
    assert f"| part-00001.parquet | wrong_schema | {detail} |" in table


@pytest.mark.parametrize("name", ["cc_line_dedup", "mixture", "deduplicated"])
def test_the_command_fails_when_every_input_was_quarantined(name, upstream, tmp_path, capsys):
    source = pandas_copy(upstream.partitions["documents"], tmp_path / "in", texts_as_lengths)
    output = tmp_path / "out"
    status = main(["stage", name, "--input", str(source), "--output", str(output),
                   "--workers", "1"])  # fmt: skip
    printed = capsys.readouterr()
    assert status == 1
    lines = [line for line in printed.out.splitlines() if line.startswith("quarantined ")]
    assert len(lines) == PARTS  # dedup names a part by its input directory too: 000-in/part-...
    assert all(line.endswith(".parquet: wrong_schema: column 'text' is int64, not string")
               for line in lines)  # fmt: skip
    assert f"every input shard of {name} was quarantined ({PARTS} of {PARTS})" in printed.err


# --- which columns are the same column --------------------------------------------------------

CASTS = [  # written type, contract type, what screening says (None: cast)
    (pa.float64(), pa.float32(), None),
    (pa.float16(), pa.float32(), None),
    (pa.float32(), pa.float64(), None),
    (pa.large_string(), pa.string(), None),
    (pa.string_view(), pa.string(), None),
    (pa.dictionary(pa.int8(), pa.string()), pa.string(), None),
    (pa.dictionary(pa.int32(), pa.large_string()), pa.string(), None),
    (pa.int32(), pa.int64(), None),
    (pa.uint32(), pa.int64(), None),
    (pa.null(), pa.string(), None),
    (pa.int64(), pa.int32(), "int64, whose values int32 cannot all hold"),
    (pa.uint32(), pa.int32(), "uint32, whose values int32 cannot all hold"),
    (pa.int8(), pa.uint64(), "int8, whose values uint64 cannot all hold"),
    (pa.int64(), pa.string(), "int64, not string"),
    (pa.large_string(), pa.float32(), "large_string, not float"),
    (pa.float64(), pa.int64(), "double, not integer"),
    (pa.binary(), pa.string(), "binary, not string"),
]
VALUES = {
    pa.string(): ["en", None, "fr", "en"],
    pa.float32(): [0.5, None, 0.25, 1.0],
    pa.float64(): [0.5, None, 0.25, 1.0],
    pa.int64(): [1, None, 2, 3],
}


@pytest.mark.parametrize(("written", "wanted", "problem"), CASTS, ids=str)
def test_a_column_of_the_same_kind_is_read_in_the_contracts_type(
    written, wanted, problem, storage, tmp_path
):
    assert cast_problem(written, pa.field("x", wanted)) == problem
    if problem is not None:
        return
    values = [None] * 4 if written == pa.null() else VALUES[wanted]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": pa.array(values).cast(written), NATIVE: [1, 2, 3, 4]}), path)

    table = read_shard(pa.schema([pa.field("x", wanted)]), file_shard(storage, str(path)), storage)
    assert table.schema.names == ["x"]  # the native column is not read
    assert table.column("x").type == wanted
    assert table.column("x").to_pylist() == values
