"""Language id: CCNet's reading of fastText lid.176 (newlines removed, the score rounded to two
decimals before the 0.5 threshold), and English kept by default, as the paper's CommonCrawl."""

import pyarrow as pa
import pyarrow.parquet as pq
from archives import ENGLISH, FRENCH, GERMAN

from curation.commoncrawl.langid import (
    LanguageId,
    load_model,
    predict_languages,
    resolve_model_path,
)
from curation.core.documents import Document, documents_table
from curation.core.runner import run_stage
from curation.core.stage import ShardInput

NOISE = "1234 5678 ::: ;;"


def write_docs(path, texts: list[str]) -> ShardInput:
    docs = [Document(f"id{i}", "test", t, None) for i, t in enumerate(texts)]
    pq.write_table(documents_table(docs), path)
    return ShardInput(path.name, str(path), f"fp-{len(texts)}", path.stat().st_size)


def lid176():
    return load_model(resolve_model_path(LanguageId.model))


def test_bundled_lid176_predicts_the_planted_languages_across_newlines():
    texts = [ENGLISH.replace(", ", ",\n"), FRENCH, GERMAN]
    languages, scores = predict_languages(lid176(), texts)
    assert languages == ["en", "fr", "de"]
    assert (scores > 0.8).all()


def test_ccnet_removes_newlines_and_rounds_the_score_to_two_decimals():
    """CCNet's split_by_lang.Classifier: `predict(text.replace("\\n", ""))`, then
    `scores.round(2)`; checked against fastText called directly."""
    text = ENGLISH.replace(", ", ",\n")
    labels, probs = lid176().predict(text.replace("\n", ""), k=1)
    languages, scores = predict_languages(lid176(), [text])
    assert languages == [labels[0].removeprefix("__label__")]
    assert scores.tolist() == [round(float(probs[0]), 2)]
    assert scores[0] != probs[0]  # the raw probability has more than two decimals


def test_ccnet_compares_the_rounded_score_with_the_threshold(storage, tmp_path):
    (score,) = lid176().predict(FRENCH.replace("\n", ""), k=1)[1]
    rounded = round(float(score), 2)
    between = (rounded + float(score)) / 2 if rounded < score else None
    assert between is not None, "this text's probability rounds down; pick another"
    shard = write_docs(tmp_path / "docs.parquet", [FRENCH])
    stage = LanguageId(threshold=between, languages=())
    manifest = run_stage(stage, [shard], str(tmp_path / "lang"), storage)
    assert manifest.dropped == {"low_language_score": 1}  # the raw score would pass


def test_english_is_kept_by_default_other_languages_dropped_with_a_reason(storage, tmp_path):
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, FRENCH, GERMAN, NOISE])
    out = str(tmp_path / "lang")
    manifest = run_stage(LanguageId(), [shard], out, storage)
    kept = pq.read_table(f"{out}/part-00000.parquet")
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet")
    assert kept.column("language").to_pylist() == ["en"]
    assert kept.schema.field("language_score").type == pa.float32()
    assert dropped.column("reason").to_pylist() == [
        "language_not_selected",
        "language_not_selected",
        "low_language_score",
    ]
    assert manifest.histograms["language"] == {"en": 1}
    dropped_languages = manifest.histograms["dropped_language"]
    assert dropped_languages["de"] == dropped_languages["fr"] == 1
    assert manifest.n_in == 4 and manifest.kept == 1


def test_a_multilingual_crawl_keeps_every_confident_language(storage, tmp_path):
    """`languages: []`, the named multilingual configuration."""
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, FRENCH, GERMAN, NOISE])
    out = str(tmp_path / "lang")
    manifest = run_stage(LanguageId(languages=()), [shard], out, storage)
    assert pq.read_table(out).column("language").to_pylist() == ["en", "fr", "de"]
    assert manifest.dropped == {"low_language_score": 1}


def test_threshold_is_configurable(storage, tmp_path):
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, NOISE])
    stage = LanguageId(threshold=0.0, languages=())
    assert run_stage(stage, [shard], str(tmp_path / "lang"), storage).kept == 2
