import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import kenlm
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from curation.commoncrawl.langid import LANGUAGE_FIELDS
from curation.commoncrawl.normalize import normalize
from curation.commoncrawl.perplexity import (
    DocumentScorer,
    Perplexity,
    available_languages,
    bucket,
    models_fingerprint,
)
from curation.commoncrawl.perplexity_cutoffs import (
    compute_cutoffs,
    crawl_cutoffs,
    parse_cutoff_csv,
    read_cutoff_csv,
    sample_shards,
    scorer_for,
)
from curation.commoncrawl.perplexity_models import (
    KENLM_MODEL_NAME,
    SP_MODEL_NAME,
    EmptyCorpus,
    LMTrainingError,
    model_files,
    train_kenlm,
    train_language_model,
    train_lm_tokenizer,
)
from curation.core.arrays import load_array, save_array
from curation.core.documents import Document, documents_table
from curation.core.executor import LocalExecutor
from curation.core.runner import run_stage
from curation.core.stage import ShardInput
from curation.core.storage import Storage
from curation.sources.wikipedia import iter_articles

LLAMAPIPE = Path(sys.executable).parent / "llamapipe"
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
    assert available_languages(Storage(models_dir), models_dir) == ["en"]
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


TEXT = "First line, with Accents: café.\n\n  \nSecond LINE 2024 — “quoted”."


def test_perplexity_is_ccnets_one_score_of_the_whole_normalized_document(models_dir, scorer):
    """CCNet's mine.py: `normalize` the document (newlines removed, so one line), encode it,
    `DocLM` scores that line (bos and eos included) over its whitespace tokens + 1."""
    files = model_files(models_dir, "en")
    sp = spm.SentencePieceProcessor(model_file=str(files.tokenizer))
    model = kenlm.Model(str(files.kenlm))
    line = " ".join(sp.encode(normalize(TEXT), out_type=str))
    assert "\n" not in line and line.startswith("▁first ▁line")
    expected = round(10.0 ** (-model.score(line) / (len(line.split()) + 1)), 1)
    assert scorer.perplexity(TEXT) == expected


def test_project_line_scoring_sums_every_normalized_line(models_dir):
    """This project's option `scoring: lines`, not CCNet's behaviour."""
    files = model_files(models_dir, "en")
    sp = spm.SentencePieceProcessor(model_file=str(files.tokenizer))
    model = kenlm.Model(str(files.kenlm))
    log10, length = 0.0, 0
    for line in ["first line, with accents: cafe.", 'second line 0000  -  "quoted".']:
        pieces = sp.encode(line, out_type=str)
        log10 += model.score(" ".join(pieces))
        length += len(pieces) + 1
    by_lines = DocumentScorer.for_language(models_dir, "en", scoring="lines")
    assert by_lines.perplexity(TEXT) == round(10 ** (-log10 / length), 1)
    assert by_lines.perplexity(TEXT) != DocumentScorer.for_language(models_dir, "en").perplexity(
        TEXT
    )


def test_batched_scores_equal_one_by_one(en_articles, scorer):
    texts = en_articles[-HELD_OUT:]
    assert scorer.perplexities(texts).tolist() == [scorer.perplexity(t) for t in texts]


def test_a_text_without_scorable_lines_is_infinitely_perplexing(scorer):
    assert scorer.perplexity("\n \n\t") == float("inf")


def test_max_chars_scores_a_prefix_and_zero_scores_everything(en_articles, models_dir, scorer):
    words = " ".join(en_articles).split()
    rng = random.Random(0)
    line = " ".join(rng.choice(words) for _ in range(4_000))
    capped = DocumentScorer.for_language(models_dir, "en", max_chars=1_000)
    assert capped.perplexity(line) == scorer.perplexity(line[:1_000])
    assert scorer.perplexity(line) != scorer.perplexity(line[:1_000])


# --- cutoffs and buckets ------------------------------------------------------------------


def test_cutoffs_are_per_language_percentiles_of_finite_values():
    values = {"en": [*range(1, 101), float("inf")], "fr": [10.0, 20.0], "xx": [float("inf")]}
    cutoffs = compute_cutoffs(values)
    assert cutoffs == {"en": pytest.approx([30.7, 60.4]), "fr": pytest.approx([13.0, 16.0])}
    median_and_p90 = compute_cutoffs({"en": range(1, 101)}, percentiles=(50, 90))["en"]
    assert median_and_p90 == pytest.approx([50.5, 90.1])


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


def test_a_scored_language_without_a_model_is_an_error(models_dir, storage, tmp_path):
    shard = docs_shard(tmp_path / "docs.parquet", [("Ein Text.", "de")])
    stage = Perplexity(models_dir, {"de": [1.0, 2.0]}, languages=("de",))
    with pytest.raises(FileNotFoundError, match="de/lm.binary"):
        run_stage(stage, [shard], str(tmp_path / "o"), storage)
    with pytest.raises(FileNotFoundError, match=r"no perplexity models for \['de'\]"):
        scorer_for(storage, models_dir, str(tmp_path / "cutoffs"), ["en", "de"])


def english_texts(en_articles, shard: int) -> list[str]:
    return [en_articles[-1 - 2 * shard], en_articles[-2 - 2 * shard]]


def english_shards(tmp_path, en_articles, n: int) -> list[ShardInput]:
    """`n` shards of two held-out English articles and one German line each."""
    return [
        docs_shard(
            tmp_path / f"part-{i:05d}.parquet",
            [*((text, "en") for text in english_texts(en_articles, i)), ("Ein Text.", "de")],
        )
        for i in range(n)
    ]


def test_the_sample_is_whole_shards_in_a_fixed_order_until_it_holds_enough_rows(
    storage, tmp_path, en_articles
):
    shards = english_shards(tmp_path, en_articles, 6)
    assert sample_shards(storage, shards, 0) == shards
    sample = sample_shards(storage, shards, 5)  # 3 rows per shard: two shards
    assert len(sample) == 2 and sample == sorted(sample, key=shards.index)
    assert sample_shards(storage, list(reversed(shards)), 5) == list(reversed(sample))
    assert sample_shards(storage, shards, 6) == sample
    assert len(sample_shards(storage, shards, 7)) == 3


def test_the_stage_reads_the_samples_scores_back_instead_of_scoring_again(
    models_dir, storage, tmp_path, en_articles, scorer
):
    shards = english_shards(tmp_path, en_articles, 3)
    sampler = scorer_for(storage, models_dir, str(tmp_path / "cutoffs"), ["en"])
    cutoffs, scores = crawl_cutoffs(sampler, shards, storage, LocalExecutor(1), 4)
    sampled = sample_shards(storage, shards, 4)
    assert len(sampled) == 2
    texts = [t for shard in sampled for t in english_texts(en_articles, shards.index(shard))]
    assert scores["en"].tolist() == scorer.perplexities(texts).tolist()
    assert cutoffs == compute_cutoffs(scores)
    # Plant a score in one sampled shard's file: the stage must report it, not rescore.
    saved = sampler.scores_path(sampled[0])
    planted = load_array(storage, saved)
    planted[0] = 1.0
    save_array(storage, saved, planted)
    stage = replace(sampler, cutoffs=cutoffs)
    out = str(tmp_path / "ppl")
    run_stage(stage, shards, out, storage)
    index = shards.index(sampled[0])
    first = pq.read_table(f"{out}/part-{index:05d}.parquet").column("perplexity")[0].as_py()
    assert first == 1.0
    # Another input under the same name is scored, not matched to the old file.
    changed = replace(sampled[0], fingerprint="another")
    assert sampler.scores_path(changed) != saved


def ccnet_cutoff_csv(languages: dict[str, list[float]]) -> str:
    """CCNet's cutoff.csv layout: languages across, one row per percentile 0..100."""
    rows = [",".join(["", *languages])]
    for p in range(101):
        rows.append(",".join([str(p), *(str(values[p]) for values in languages.values())]))
    return "\n".join(rows) + "\n"


def test_ccnets_cutoff_csv_layout_gives_the_30th_and_60th_rows(tmp_path):
    text = ccnet_cutoff_csv(
        {"de": [10.0 * p for p in range(101)], "en": [float(p) for p in range(101)]}
    )
    assert parse_cutoff_csv(text) == {"de": [300.0, 600.0], "en": [30.0, 60.0]}
    (tmp_path / "cutoff.csv").write_text(text)
    assert read_cutoff_csv(str(tmp_path / "cutoff.csv"), (50, 90)) == {
        "de": [500.0, 900.0],
        "en": [50.0, 90.0],
    }
    with pytest.raises(ValueError, match=r"no row for percentiles \[35\.5\]"):
        parse_cutoff_csv(text, (30, 35.5))


def test_models_fingerprint_follows_model_contents(models_dir, tmp_path, en_articles):
    disk = Storage("/")
    first = models_fingerprint(disk, models_dir, ["en"])
    assert first == models_fingerprint(disk, models_dir, ["en"])
    other = train_language_model(en_articles[:30], tmp_path, "en", 300)
    assert models_fingerprint(disk, str(tmp_path), ["en"]) != first
    assert other.kenlm.exists()


def test_the_cli_without_cutoffs_scores_every_modelled_language_and_computes_them(
    models_dir, tmp_path, en_articles
):
    inputs, out = tmp_path / "in", tmp_path / "ppl"
    inputs.mkdir()
    english_shards(inputs, en_articles, 3)
    (inputs / "zz-broken.parquet").write_bytes(b"not Parquet")  # quarantined, never sampled
    result = subprocess.run(
        [LLAMAPIPE, "stage", "cc_perplexity", "--input", str(inputs),
         "--output", str(out), "--models-dir", models_dir, "--workers", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cutoffs = json.loads((tmp_path / "ppl.cutoffs" / "cutoffs.json").read_text())
    assert list(cutoffs) == ["en"]
    assert "cc_perplexity: scoring en" in result.stdout
    assert "quarantined zz-broken.parquet: unreadable_parquet" in result.stdout
    assert f"en: head < {cutoffs['en'][0]:.1f} <= middle" in result.stdout
    scored = pq.read_table(out).to_pylist() + pq.read_table(out / "_dropped").to_pylist()
    english = [row for row in scored if row["language"] == "en"]
    assert len(english) == 6 and all(row["perplexity"] is not None for row in english)
    assert {row["bucket"] for row in english} == {"head", "middle", "tail"}
