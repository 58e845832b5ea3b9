"""What native libraries get from a data root on an object store (the S3 server of
tests/object_store.py): local copies fetched once and again only when the object changes, and
local directories whose files reach the store only when the writing block succeeds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from object_store import new_bucket

from curation.commoncrawl.langid import BUNDLED_MODEL, load_model, resolve_model_path
from curation.core.storage import CACHE_ENV, Storage


@pytest.fixture
def store(s3_env, tmp_path, monkeypatch) -> Storage:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return Storage(f"s3://{new_bucket(s3_env)}/data")


def test_a_local_copy_is_fetched_once_and_again_when_the_object_changes(store):
    path = store.path("models", "lm.binary")
    store.write_bytes(path, b"first")
    copy = store.local_copy(path)
    assert Path(copy).read_bytes() == b"first" and os.path.basename(copy) == "lm.binary"
    os.utime(copy, (0, 0))  # marks this copy: a second fetch would replace the file
    assert store.local_copy(path) == copy and os.stat(copy).st_mtime == 0

    time.sleep(1.1)  # S3 keeps modification times to the second
    store.write_bytes(path, b"second")
    again = store.local_copy(path)
    assert again != copy and Path(again).read_bytes() == b"second"


def test_a_local_root_is_its_own_copy(tmp_path):
    disk = Storage(str(tmp_path))
    path = disk.path("model.bin")
    disk.write_bytes(path, b"x")
    assert disk.local_copy(path) == path
    with disk.local_directory(disk.path("out")) as directory:
        assert directory == disk.path("out")


def test_a_local_directory_reaches_the_store_only_when_its_block_succeeds(store):
    target = store.path("models", "perplexity")
    with store.local_directory(target) as local:
        os.makedirs(os.path.join(local, "en"))
        with open(os.path.join(local, "en", "lm.sp.model"), "wb") as f:
            f.write(b"model")
    assert store.read_bytes(f"{target}/en/lm.sp.model") == b"model"
    assert not os.path.exists(local), "the staging directory is removed"

    with pytest.raises(RuntimeError), store.local_directory(target) as local:
        with open(os.path.join(local, "half.bin"), "wb") as f:
            f.write(b"half")
        raise RuntimeError("training failed")
    assert not store.exists(f"{target}/half.bin")


def test_the_language_model_loads_from_a_store_uri(store):
    bundled = resolve_model_path(BUNDLED_MODEL)
    uri = f"s3://{store.path('models', 'lid.176.ftz')}"
    store.upload(bundled, store.path("models", "lid.176.ftz"))
    local = resolve_model_path(uri)
    assert Path(local).read_bytes() == Path(bundled).read_bytes()
    assert load_model(local).predict("the cat sat on the mat")[0][0] == "__label__en"


def test_uri_names_a_path_for_another_process(store, tmp_path):
    assert store.uri(store.path("stages")) == f"s3://{store.base}/stages"
    assert Storage(store.uri(store.path("stages"))).base == store.path("stages")
    assert Storage(str(tmp_path)).uri(str(tmp_path / "x")) == str(tmp_path / "x")
