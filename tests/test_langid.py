import pyarrow as pa
import pyarrow.parquet as pq
from archives import ENGLISH, FRENCH, GERMAN

from curation.documents import Document, documents_table
from curation.langid import LanguageId, load_model, predict_languages, resolve_model_path
from curation.runner import run_stage
from curation.stage import ShardInput


def write_docs(path, texts: list[str]) -> ShardInput:
    docs = [Document(f"id{i}", "test", t, None) for i, t in enumerate(texts)]
    pq.write_table(documents_table(docs), path)
    return ShardInput(path.name, str(path), f"fp-{len(texts)}", path.stat().st_size)


def test_bundled_lid176_predicts_the_planted_languages_across_newlines():
    model = load_model(resolve_model_path(LanguageId.model))
    texts = [ENGLISH.replace(", ", ",\n"), FRENCH, GERMAN]
    languages, scores = predict_languages(model, texts)
    assert languages == ["en", "fr", "de"]
    assert (scores > 0.8).all()


def test_low_scores_are_dropped_with_a_reason_and_histogram_counts_kept(storage, tmp_path):
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, FRENCH, GERMAN, "1234 5678 ::: ;;"])
    out = str(tmp_path / "lang")
    manifest = run_stage(LanguageId(threshold=0.5), [shard], out, storage)
    kept = pq.read_table(f"{out}/part-00000.parquet")
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet")
    assert kept.column("language").to_pylist() == ["en", "fr", "de"]
    assert kept.schema.field("language_score").type == pa.float32()
    assert dropped.column("reason").to_pylist() == ["low_language_score"]
    assert manifest.histograms["language"] == {"de": 1, "en": 1, "fr": 1}
    assert manifest.n_in == 4 and manifest.kept == 3


def test_threshold_is_configurable(storage, tmp_path):
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, "1234 5678 ::: ;;"])
    manifest = run_stage(LanguageId(threshold=0.0), [shard], str(tmp_path / "lang"), storage)
    assert manifest.kept == 2


def test_languages_selects_which_confident_languages_are_kept(storage, tmp_path):
    shard = write_docs(tmp_path / "docs.parquet", [ENGLISH, FRENCH, "1234 5678 ::: ;;"])
    out = str(tmp_path / "lang")
    manifest = run_stage(LanguageId(languages=("en",)), [shard], out, storage)
    assert pq.read_table(f"{out}/part-00000.parquet").column("language").to_pylist() == ["en"]
    assert manifest.dropped == {"language_not_selected": 1, "low_language_score": 1}
