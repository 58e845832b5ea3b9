import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from token_corpus import documents, write_parts

from curation.core.executor import LocalExecutor
from curation.core.storage import Storage
from curation.tokens.inputs import InvalidStreamColumn
from curation.tokens.shards import (
    TokenShardsConfig,
    decode_documents,
    iter_documents,
    shard_counts_conserve,
    shards_intact,
    token_dtype,
    write_token_shards,
)
from curation.tokens.shards_manifest import TokenShardsManifest, UnframedShards
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer

SMALL = TokenShardsConfig(shard_tokens=997)  # documents cross shard boundaries


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tokenizer")
    parts = write_parts(root / "corpus", documents(200), 100)
    config = TokenizerConfig(vocab_size=600, character_coverage=0.995)
    return train_tokenizer(parts, str(root / "tok"), Storage(str(root)), config).model_path


def _stream_rows(n: int = 120) -> list[dict]:
    """Rows with every role: validation, repeats 0 to 3, an empty text, defaults via nulls."""
    rows = documents(n, seed=3)
    for i, row in enumerate(rows):
        row["split"] = "validation" if i % 10 == 0 else ("train" if i % 10 != 1 else None)
        row["repeats"] = [1, 2, 0, 3, 1, None][i % 6]
    rows[7]["text"] = ""
    rows[9]["text"] = "a\u2581b"
    return rows


def _expected(rows: list[dict]) -> tuple[list[str], list[str]]:
    """What the stream contract says: validation once, train copies as epoch passes."""
    validation = [r["text"] for r in rows if r["split"] == "validation" and r["text"]]
    train = [r for r in rows if r["split"] != "validation" and r["text"]]
    passes = max(r["repeats"] if r["repeats"] is not None else 1 for r in train)
    stream = [
        r["text"]
        for p in range(passes)
        for r in train
        if (r["repeats"] if r["repeats"] is not None else 1) > p
    ]
    return stream, validation


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_shards_decode_back_to_the_documents_in_stream_order(model, tmp_path, storage):
    rows = _stream_rows()
    parts = write_parts(tmp_path / "in", rows, 25)
    out = str(tmp_path / "out")
    manifest = write_token_shards(parts, model, out, storage, config=SMALL)
    train, validation = _expected(rows)
    lossless_train = [t.replace("\u2581", " ") for t in train]
    assert list(decode_documents(storage, out, "train")) == lossless_train
    assert list(decode_documents(storage, out, "validation")) == validation
    assert len(manifest.splits["train"].shards) > 3
    assert manifest.splits["train"].passes[2].documents == sum(
        r["repeats"] == 3 for r in rows if r["split"] != "validation" and r["text"]
    )
    assert manifest.counts.lossy_documents == 1


def test_every_document_is_framed_bos_ids_eos(model, tmp_path, storage):
    out = str(tmp_path / "out")
    manifest = write_token_shards(
        write_parts(tmp_path / "in", _stream_rows(), 40), model, out, storage, config=SMALL
    )
    fmt = manifest.format
    assert (fmt.bos_id, fmt.eos_id, fmt.document) == (1, 2, "<s> ids </s>")
    tokens = np.concatenate(
        [np.fromfile(p, "<u2") for p in sorted(Path(out, "train").glob("*.bin"))]
    )
    documents = list(iter_documents(storage, out, "train"))
    framed = np.concatenate([np.concatenate([[1], ids, [2]]) for ids in documents])
    assert np.array_equal(tokens, framed)
    assert (tokens == 1).sum() == (tokens == 2).sum() == manifest.splits["train"].documents


def test_shards_intact_finds_a_document_without_its_framing(model, tmp_path, storage):
    out = tmp_path / "out"
    manifest = write_token_shards(
        write_parts(tmp_path / "in", _stream_rows(), 40), model, str(out), storage, config=SMALL
    )
    assert shards_intact(storage, str(out))[0]
    train = manifest.splits["train"]
    shard = train.shards[1]
    path = out / "train" / f"{shard.name}.bin"
    original = path.read_bytes()
    for token, problem in (
        (1, "<s> is not exactly at the document starts"),
        (2, "</s> is not exactly at the indexed document ends"),
    ):
        tokens = np.frombuffer(original, "<u2").copy()
        tokens[np.flatnonzero(tokens == token)[0]] = 100  # a text piece in its place
        path.write_bytes(tokens.tobytes())
        rehashed = dataclasses.replace(shard, sha256=hashlib.sha256(tokens.tobytes()).hexdigest())
        shards = (train.shards[0], rehashed, *train.shards[2:])
        splits = {**manifest.splits, "train": dataclasses.replace(train, shards=shards)}
        (out / "_manifest.json").write_text(dataclasses.replace(manifest, splits=splits).to_json())
        ok, details = shards_intact(storage, str(out))
        assert not ok and details["problems"] == [f"train/{shard.name}: {problem}"]


def test_identical_bytes_whatever_the_workers(model, tmp_path, storage):
    parts = write_parts(tmp_path / "in", _stream_rows(), 20)
    one = write_token_shards(parts, model, str(tmp_path / "one"), storage, config=SMALL)
    two = write_token_shards(
        parts,
        model,
        str(tmp_path / "two"),
        storage,
        LocalExecutor(2),
        TokenShardsConfig(shard_tokens=997, encode_threads=2, batch_rows=7),
    )
    assert one == two
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_smallest_dtype(model, tmp_path, storage):
    assert token_dtype(256) == np.uint8
    assert token_dtype(32000) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    out = tmp_path / "out"
    manifest = write_token_shards(
        write_parts(tmp_path / "in", _stream_rows(), 60), model, str(out), storage
    )
    assert manifest.format.dtype == "uint16"
    shard = manifest.splits["train"].shards[0]
    assert os.path.getsize(out / "train" / f"{shard.name}.bin") == 2 * shard.tokens


def test_shard_counts_conserve_and_the_checks_can_fail(model, tmp_path, storage):
    rows = _stream_rows()
    out = tmp_path / "out"
    manifest = write_token_shards(
        write_parts(tmp_path / "in", rows, 30), model, str(out), storage, config=SMALL
    )
    counts = manifest.counts
    train, validation = _expected(rows)
    assert counts.n_in == len(rows)
    assert counts.excluded.empty_text == 1
    assert counts.excluded.repeats_zero == sum(
        bool(r["repeats"] == 0 and r["split"] != "validation" and r["text"]) for r in rows
    )
    assert counts.written == {"train": len(train), "validation": len(validation)}
    sources = manifest.splits["train"].sources
    assert sum(s.documents for s in sources.values()) == len(train)
    assert shard_counts_conserve(manifest)[0]
    assert shards_intact(storage, str(out))[0]

    fewer = dataclasses.replace(counts, train=counts.train - 1)
    broken = dataclasses.replace(manifest, counts=fewer)
    assert not shard_counts_conserve(broken)[0]
    shard = out / "train" / "shard-00001.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    ok, details = shards_intact(storage, str(out))
    assert not ok and "sha256" in details["problems"][0]


def test_rerun_reuses_and_inputs_change_the_fingerprint(model, tmp_path, storage):
    parts = write_parts(tmp_path / "in", _stream_rows(), 30)
    out = tmp_path / "out"
    first = write_token_shards(parts, model, str(out), storage, plan_fingerprint="plan-a")
    stamp = os.stat(out / "_manifest.json").st_mtime_ns
    assert write_token_shards(parts, model, str(out), storage, plan_fingerprint="plan-a") == first
    assert os.stat(out / "_manifest.json").st_mtime_ns == stamp
    other = write_token_shards(parts, model, str(out), storage, plan_fingerprint="plan-b")
    assert other.fingerprint != first.fingerprint
    assert other.output_fingerprint == first.output_fingerprint
    assert other.plan_fingerprint == "plan-b"
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no staging left behind


class _Killed(RuntimeError):
    pass


class _KilledAfter:
    """An executor that dies after `n` finished parts, like a killed run."""

    def __init__(self, n: int):
        self.n = n

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            if i == self.n:
                raise _Killed
            yield fn(item)


class _Recording:
    def __init__(self):
        self.seen = []

    def map_unordered(self, fn, items):
        for item in items:
            self.seen.append(item[0])
            yield fn(item)


def test_a_killed_run_resumes_with_the_parts_done(model, tmp_path, storage):
    parts = write_parts(tmp_path / "in", _stream_rows(), 20)
    with pytest.raises(_Killed):
        write_token_shards(parts, model, str(tmp_path / "out"), storage, _KilledAfter(2))
    assert not (tmp_path / "out").exists()
    recording = _Recording()
    resumed = write_token_shards(parts, model, str(tmp_path / "out"), storage, recording)
    assert recording.seen == list(range(2, len(parts)))
    fresh = write_token_shards(parts, model, str(tmp_path / "fresh"), storage)
    assert resumed == fresh
    assert _tree(tmp_path / "out") == _tree(tmp_path / "fresh")


def test_bad_split_value_is_a_clear_error(model, tmp_path, storage):
    rows = _stream_rows(20)
    rows[5]["split"] = "dev"
    with pytest.raises(InvalidStreamColumn, match="part-00000.parquet.*'dev'"):
        write_token_shards(
            write_parts(tmp_path / "in", rows, 20), model, str(tmp_path / "o"), storage
        )


def test_the_typed_manifest_is_the_file_byte_for_byte(model, tmp_path, storage):
    """What `write_token_shards` returns is what it wrote, and reading the file back and
    writing it again gives the same bytes (the JSON every earlier version wrote: keys in the
    same order, same indent, UTF-8 unescaped, a final newline)."""
    out = tmp_path / "out"
    manifest = write_token_shards(
        write_parts(tmp_path / "in", _stream_rows(), 30), model, str(out), storage, config=SMALL
    )
    text = (out / "_manifest.json").read_text()
    assert manifest.to_json() == text
    assert TokenShardsManifest.from_json(text) == manifest
    assert TokenShardsManifest.from_json(text).to_json() == text
    assert list(json.loads(text)) == [
        "stage",
        "version",
        "fingerprint",
        "plan_fingerprint",
        "inputs",
        "tokenizer",
        "format",
        "counts",
        "splits",
        "output_fingerprint",
    ]
    assert list(json.loads(text)["counts"]) == [
        "in",
        "validation",
        "train",
        "excluded",
        "written",
        "lossy_documents",
    ]


def test_an_older_layout_is_rebuilt_and_unframed_shards_are_refused(model, tmp_path, storage):
    """A manifest of shards written before the `<s>` framing (no `bos_id`) is refused by the
    readers with a message saying so, and replaced, not parsed, by the writer."""
    parts = write_parts(tmp_path / "in", _stream_rows(), 30)
    out = tmp_path / "out"
    manifest = write_token_shards(parts, model, str(out), storage, config=SMALL)
    body = json.loads((out / "_manifest.json").read_text())
    del body["format"]["bos_id"]
    body["version"], body["fingerprint"] = "1", "an older run"
    (out / "_manifest.json").write_text(json.dumps(body))
    with pytest.raises(UnframedShards, match="without <s> framing"):
        list(iter_documents(storage, str(out), "train"))
    assert write_token_shards(parts, model, str(out), storage, config=SMALL) == manifest
