import random
import time

import kenlm
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from curation.documents import Document, documents_table
from curation.langid import LANGUAGE_FIELDS
from curation.lm_train import (
    KENLM_MODEL_NAME,
    SP_MODEL_NAME,
    EmptyCorpus,
    LMTrainingError,
    model_files,
    train_kenlm,
    train_language_model,
    train_lm_tokenizer,
)
from curation.perplexity import (
    DocumentScorer,
    Perplexity,
    available_languages,
    bucket,
    compute_cutoffs,
    models_fingerprint,
    perplexities,
)
from curation.runner import run_stage
from curation.stage import ShardInput
from curation.wikipedia import iter_articles

VOCAB = 1000
HELD_OUT = 10


@pytest.fixture(scope="module")
def en_articles(sample_world) -> list[str]:
    path = sample_world / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"
    return [a.text for a in iter_articles(path)]


@pytest.fixture(scope="module")
def models_dir(en_articles, tmp_path_factory) -> str:
    """An English model trained on the sample wiki, the last articles held out."""
    directory = tmp_path_factory.mktemp("models")
    train_language_model(en_articles[:-HELD_OUT], directory, "en", VOCAB)
    return str(directory)


@pytest.fixture(scope="module")
def scorer(models_dir) -> DocumentScorer:
    return DocumentScorer.for_language(models_dir, "en")


def shuffled_words(text: str, seed: int = 0) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


# --- training -----------------------------------------------------------------------------


def test_models_are_written_where_the_stage_reads_them(models_dir):
    files = model_files(models_dir, "en")
    assert files.tokenizer.name == SP_MODEL_NAME and files.kenlm.name == KENLM_MODEL_NAME
    assert files.tokenizer.exists() and files.kenlm.exists()
    assert available_languages(models_dir) == ["en"]
    assert sorted(p.name for p in files.kenlm.parent.iterdir()) == [KENLM_MODEL_NAME, SP_MODEL_NAME]


def test_tokenizer_is_a_small_unigram_model_on_normalized_text(models_dir):
    sp = spm.SentencePieceProcessor(model_file=str(model_files(models_dir, "en").tokenizer))
    # hard_vocab_limit=False: the small corpus may yield fewer pieces than asked, not fail.
    assert 100 < sp.get_piece_size() <= VOCAB
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    assert not any(c.isupper() or c.isdigit() and c != "0" for p in pieces for c in p)


def test_training_is_deterministic(en_articles, tmp_path):
    lines = en_articles[:40]
    first = train_language_model(lines, tmp_path / "a", "en", 500, seed=3)
    second = train_language_model(lines, tmp_path / "b", "en", 500, seed=3)
    assert first.tokenizer.read_bytes() == second.tokenizer.read_bytes()
    assert first.kenlm.read_bytes() == second.kenlm.read_bytes()


def test_a_tiny_corpus_trains_through_the_discount_fallback(tmp_path):
    lines = ["the cat sat on the mat.", "the dog sat on the log.", "a cat and a dog."]
    sp_model = train_lm_tokenizer(lines, tmp_path, vocab_size=40)
    assert train_kenlm(lines, sp_model, tmp_path).stat().st_size > 0


@pytest.mark.parametrize("lines", [[], ["", "   ", "\n\n"]])
def test_an_empty_corpus_is_a_clear_error(lines, tmp_path, models_dir):
    with pytest.raises(EmptyCorpus, match="empty language-model corpus for xx"):
        train_lm_tokenizer(lines, tmp_path / "xx", vocab_size=100)
    sp_model = model_files(models_dir, "en").tokenizer
    with pytest.raises(ValueError, match="empty language-model corpus for xx"):
        train_kenlm(lines, sp_model, tmp_path / "xx")


def test_a_failing_lmplz_reports_its_stderr(models_dir, tmp_path):
    sp_model = model_files(models_dir, "en").tokenizer
    with pytest.raises(LMTrainingError, match=r"(?s)lmplz exited with 1:.*Failed to parse 12Q"):
        train_kenlm(["some text"], sp_model, tmp_path, memory="12Q")


# --- scoring ------------------------------------------------------------------------------


def test_in_domain_text_is_less_perplexing_than_shuffled_words(en_articles, scorer):
    for text in en_articles[-HELD_OUT:]:
        assert scorer.perplexity(text) < scorer.perplexity(shuffled_words(text)) * 0.7


def test_perplexity_is_ccnets_formula_over_normalized_lines(models_dir, scorer):
    text = "First line, with Accents: café.\n\n  \nSecond LINE 2024 — “quoted”."
    files = model_files(models_dir, "en")
    sp = spm.SentencePieceProcessor(model_file=str(files.tokenizer))
    model = kenlm.Model(str(files.kenlm))
    log10, length = 0.0, 0
    for line in ["first line, with accents: cafe.", 'second line 0000 - "quoted".']:
        pieces = sp.encode(line, out_type=str)
        log10 += model.score(" ".join(pieces))  # bos and eos included
        length += len(pieces) + 1
    assert scorer.perplexity(text) == round(10 ** (-log10 / length), 1)


def test_batched_scores_equal_one_by_one(en_articles, scorer):
    texts = en_articles[-HELD_OUT:]
    assert scorer.perplexities(texts).tolist() == [scorer.perplexity(t) for t in texts]


def test_a_text_without_scorable_lines_is_infinitely_perplexing(scorer):
    assert scorer.perplexity("\n \n\t") == float("inf")


def test_an_enormous_line_is_scored_by_its_prefix_quickly(en_articles, scorer):
    words = " ".join(en_articles).split()
    rng = random.Random(0)
    line = " ".join(rng.choice(words) for _ in range(400_000))[:2_000_000]
    start = time.perf_counter()
    perplexity = scorer.perplexity(line)
    assert time.perf_counter() - start < 1.0
    assert perplexity == scorer.perplexity(line[: scorer.max_chars_per_line])


# --- cutoffs and buckets ------------------------------------------------------------------


def test_cutoffs_are_per_language_percentiles_of_finite_values():
    values = {"en": [*range(1, 101), float("inf")], "fr": [10.0, 20.0], "xx": [float("inf")]}
    cutoffs = compute_cutoffs(values)
    assert cutoffs == {"en": pytest.approx((30.7, 60.4)), "fr": pytest.approx((13.0, 16.0))}
    median_and_p90 = compute_cutoffs({"en": range(1, 101)}, percentiles=(50, 90))["en"]
    assert median_and_p90 == pytest.approx((50.5, 90.1))


def test_buckets_are_head_below_p30_tail_from_p60():
    cutoffs = (340.0, 520.0)
    assert [bucket(p, cutoffs) for p in (339.9, 340.0, 519.9, 520.0, float("inf"))] == [
        "head",
        "middle",
        "middle",
        "tail",
        "tail",
    ]


def docs_shard(path, rows: list[tuple[str, str]]) -> ShardInput:
    docs = documents_table(Document(f"id{i}", "test", t, None) for i, (t, _) in enumerate(rows))
    table = docs.append_column(LANGUAGE_FIELDS[0], pa.array([lang for _, lang in rows]))
    table = table.append_column(LANGUAGE_FIELDS[1], pa.array([0.9] * len(rows), pa.float32()))
    pq.write_table(table, path)
    return ShardInput(path.name, str(path), f"fp-{len(rows)}", path.stat().st_size)


@pytest.fixture
def three_english_and_one_other(en_articles, scorer, tmp_path):
    """A good, a middling and a gibberish English document, one German; cutoffs between."""
    good, middling = en_articles[-1], en_articles[-2] + "\n" + shuffled_words(en_articles[-3])
    texts = [good, middling, shuffled_words(en_articles[-4])]
    ppl = sorted(scorer.perplexities(texts).tolist())
    assert ppl == scorer.perplexities(texts).tolist()
    cutoffs = {"en": [(ppl[0] + ppl[1]) / 2, (ppl[1] + ppl[2]) / 2]}
    rows = [(t, "en") for t in texts] + [("Ein deutscher Text über Debian.", "de")]
    return docs_shard(tmp_path / "docs.parquet", rows), cutoffs


def test_stage_buckets_drops_the_tail_and_keeps_unmodelled(
    models_dir, storage, tmp_path, three_english_and_one_other
):
    shard, cutoffs = three_english_and_one_other
    out = str(tmp_path / "ppl")
    manifest = run_stage(Perplexity(models_dir, cutoffs), [shard], out, storage)
    kept = pq.read_table(f"{out}/part-00000.parquet")
    assert kept.column("bucket").to_pylist() == ["head", "middle", "all"]
    assert kept.schema.field("perplexity").type == pa.float32()
    assert kept.column("perplexity").to_pylist()[2] is None
    dropped = pq.read_table(f"{out}/_dropped/part-00000.parquet")
    assert dropped.column("reason").to_pylist() == ["tail_bucket"]
    assert manifest.histograms["bucket"] == {
        "de/all": 1,
        "en/head": 1,
        "en/middle": 1,
        "en/tail": 1,
    }
    assert manifest.n_in == 4 and manifest.kept == 3


def test_stage_can_drop_unmodelled_languages_and_keep_only_the_head(
    models_dir, storage, tmp_path, three_english_and_one_other
):
    shard, cutoffs = three_english_and_one_other
    stage = Perplexity(models_dir, cutoffs, keep_buckets=("head",), keep_unmodelled=False)
    manifest = run_stage(stage, [shard], str(tmp_path / "ppl"), storage)
    assert manifest.kept == 1
    assert manifest.dropped == {"middle_bucket": 1, "no_language_model": 1, "tail_bucket": 1}


def test_a_language_with_cutoffs_but_no_model_is_an_error(models_dir, storage, tmp_path):
    shard = docs_shard(tmp_path / "docs.parquet", [("Ein Text.", "de")])
    with pytest.raises(FileNotFoundError, match="de/lm.binary"):
        run_stage(Perplexity(models_dir, {"de": [1.0, 2.0]}), [shard], str(tmp_path / "o"), storage)


def test_perplexities_group_modelled_languages_for_the_cutoffs(models_dir, en_articles, scorer):
    table = pa.table(
        {"text": [en_articles[-1], "Ein Text.", en_articles[-2]], "language": ["en", "de", "en"]}
    )
    result = perplexities(table, models_dir)
    assert list(result) == ["en"]
    assert result["en"].tolist() == scorer.perplexities([en_articles[-1], en_articles[-2]]).tolist()


def test_models_fingerprint_follows_model_contents(models_dir, tmp_path, en_articles):
    assert models_fingerprint(models_dir, ["en"]) == models_fingerprint(models_dir, ["en"])
    other = train_language_model(en_articles[:30], tmp_path, "en", 300)
    assert models_fingerprint(str(tmp_path), ["en"]) != models_fingerprint(models_dir, ["en"])
    assert other.kenlm.exists()
