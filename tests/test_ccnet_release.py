"""CCNet's published artefacts used instead of training, through the Dagster assets.

CCNet released its per-language models as `{lang}.sp.model` (SentencePiece) and
`{lang}.arpa.bin` (a KenLM binary), and its cutoffs as `cutoff.csv` (languages across, one row
per percentile). Files of those formats are built here from the sample's English Wikipedia,
served from a directory and over HTTP on 127.0.0.1, and given to `lm_tokenizer`,
`kenlm_model` and `perplexity_cutoffs`; `cc_perplexity` then buckets a crawl with them. Two
data roots in different places give byte-identical manifests: stage configs hold paths
relative to the root.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from http_files import served
from test_perplexity import ccnet_cutoff_csv

from assets.commoncrawl import perplexity_cutoffs
from assets.graph import STAGE_ASSETS
from assets.partitions import crawls
from assets.perplexity_models import kenlm_model, lm_tokenizer
from assets.resources import DataRoot, ShardExecutorResource
from curation.commoncrawl.langid import LanguageId
from curation.commoncrawl.perplexity_models import model_files, train_language_model
from curation.core.inputs import parquet_parts
from curation.core.runner import run_stage
from curation.core.storage import Storage
from curation.sources.wikipedia import iter_articles

pytestmark = pytest.mark.slow
CRAWL = "test-crawl"
# A cutoff.csv whose English 30th/60th rows are these, whatever the crawl's perplexities.
EN_CUTOFFS = [250.0, 600.0]


@pytest.fixture(scope="module")
def release(sample_world, tmp_path_factory) -> Path:
    """CCNet's release layout: en.sp.model, en.arpa.bin, cutoff.csv."""
    articles = sample_world / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"
    trained = tmp_path_factory.mktemp("trained")
    files = train_language_model([a.text for a in iter_articles(articles)], trained, "en", 1000)
    directory = tmp_path_factory.mktemp("release")
    shutil.copyfile(files.tokenizer, directory / "en.sp.model")
    shutil.copyfile(files.kenlm, directory / "en.arpa.bin")
    column = [float(p) for p in range(101)]
    column[30], column[60] = EN_CUTOFFS
    (directory / "cutoff.csv").write_text(ccnet_cutoff_csv({"en": column, "fr": column}))
    return directory


@pytest.fixture(scope="module")
def english_documents(sample_documents, tmp_path_factory) -> Path:
    """The sample crawl through language id (English kept), made once."""
    output = tmp_path_factory.mktemp("language") / "cc_language"
    storage = Storage("/")
    run_stage(LanguageId(), parquet_parts(storage, str(sample_documents)), str(output), storage)
    return output


def data_root(tmp_path: Path, documents: Path) -> DataRoot:
    root = tmp_path / "data"
    (root / "stages" / "cc_language").mkdir(parents=True)
    shutil.copytree(documents, root / "stages" / "cc_language" / CRAWL)
    return DataRoot(root=str(root))


def run(assets, root: DataRoot, partition: str, config: dict | None = None) -> None:
    resources = {"data_root": root, "shard_executor": ShardExecutorResource(workers=1)}
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawls.name, [CRAWL])
        result = materialize(
            assets,
            resources=resources,
            instance=instance,
            partition_key=partition,
            run_config={"ops": config or {}},
        )
        assert result.success


def released(source: str) -> dict:
    return {name: {"config": {"released": source}} for name in ("lm_tokenizer", "kenlm_model")}


def test_released_models_from_a_directory_are_linked_into_place(release, tmp_path):
    root = DataRoot(root=str(tmp_path / "data"))
    run([lm_tokenizer, kenlm_model], root, "en", released(str(release)))
    files = model_files(tmp_path / "data" / "models" / "perplexity", "en")
    assert files.tokenizer.read_bytes() == (release / "en.sp.model").read_bytes()
    assert os.stat(files.kenlm).st_ino == os.stat(release / "en.arpa.bin").st_ino


def test_released_models_and_cutoffs_over_http_bucket_the_crawl(
    release, english_documents, tmp_path
):
    root = data_root(tmp_path, english_documents)
    with served(release) as url:
        run([lm_tokenizer, kenlm_model], root, "en", released(url))
        csv = {"perplexity_cutoffs": {"config": {"cutoff_csv": url + "cutoff.csv"}}}
        run([perplexity_cutoffs], root, CRAWL, csv)
    files = model_files(Path(root.root) / "models" / "perplexity", "en")
    assert files.kenlm.read_bytes() == (release / "en.arpa.bin").read_bytes()
    stages = Path(root.root) / "stages"
    cutoffs = json.loads((stages / "perplexity_cutoffs" / CRAWL / "cutoffs.json").read_text())
    assert cutoffs == {"en": EN_CUTOFFS}  # fr is not a scored language

    run([STAGE_ASSETS["cc_perplexity"]], root, CRAWL)
    scored = pq.read_table(stages / "cc_perplexity" / CRAWL).to_pylist()
    scored += pq.read_table(stages / "cc_perplexity" / CRAWL / "_dropped").to_pylist()
    assert scored and {row["language"] for row in scored} == {"en"}
    for row in scored:
        low, high = EN_CUTOFFS
        expected = (
            "head" if row["perplexity"] < low else "middle" if row["perplexity"] < high else "tail"
        )
        assert row["bucket"] == expected


def test_manifests_are_the_same_wherever_the_data_root_is(release, english_documents, tmp_path):
    manifests = []
    for place in ("one", "elsewhere/two"):
        root = data_root(tmp_path / place, english_documents)
        run([lm_tokenizer, kenlm_model], root, "en", released(str(release)))
        run([perplexity_cutoffs], root, CRAWL)
        run([STAGE_ASSETS["cc_perplexity"]], root, CRAWL)
        manifest = Path(root.root) / "stages" / "cc_perplexity" / CRAWL / "_manifest.json"
        manifests.append(manifest.read_bytes())
    assert json.loads(manifests[0])["config"]["models_dir"] == "models/perplexity"
    assert manifests[0] == manifests[1]
