import dataclasses
import io
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import sentencepiece as spm
from token_corpus import documents, write_parts

from curation.core.executor import LocalExecutor
from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.inputs import InvalidStreamColumn
from curation.tokens.tokenizer import (
    ADVERSARIAL_TEXTS,
    EmptyCorpus,
    TokenizerConfig,
    TokenizerTrainingError,
    digits_split,
    draw_sample,
    load,
    round_trips,
    special_ids,
    split_long,
    train_model,
    train_tokenizer,
    trainer_options,
    training_sentences,
)

CONFIG = TokenizerConfig(vocab_size=600, character_coverage=0.995, heldout_fraction=0.2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_parts(tmp_path_factory.mktemp("corpus"), documents(300), rows_per_part=70)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer(corpus, str(root / "tok"), Storage(str(root)), CONFIG)


def _model_with(sentences: list[str], **changes) -> bytes:
    """A model trained with the recipe's options except `changes`: to prove a check can fail."""
    model = io.BytesIO()
    options = {**trainer_options(CONFIG), **changes}
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **options)
    return model.getvalue()


def _sentences(n: int = 300) -> list[str]:
    return training_sentences((d["text"] for d in documents(n)), 4192)[0]


def test_the_recipe_model_splits_digits_and_has_the_paper_ids(trained):
    ok, details = digits_split(trained.model_path)
    assert ok, details
    assert details["pieces_12345"][-5:] == list("12345")
    assert special_ids(trained.model_path)[0]
    sp = load(trained.model_path)
    assert sp.get_piece_size() == CONFIG.vocab_size


def test_digits_check_fails_on_a_model_without_split_digits():
    sentences = _sentences() + ["12345 12345 2024 1999 123 45"] * 200
    ok, details = digits_split(_model_with(sentences, split_digits=False))
    assert not ok
    assert details["pieces_merging_a_digit"]


def test_adversarial_unicode_round_trips_exactly(trained):
    ok, details = round_trips(trained.model_path)
    assert ok, details["failures"]
    assert details["texts"] == len(ADVERSARIAL_TEXTS)
    texts = [d["text"] for d in documents(50, seed=7)]
    assert round_trips(trained.model_path, texts)[0]


def test_round_trip_check_fails_without_byte_fallback():
    ok, details = round_trips(_model_with(_sentences(), byte_fallback=False))
    assert not ok
    assert details["failures"]["emoji_zwj"]["unk_tokens"] > 0


def test_the_space_symbol_is_the_known_exception(trained):
    """U+2581 decodes as a space with SentencePiece: why it is not in ADVERSARIAL_TEXTS."""
    ok, details = round_trips(trained.model_path, {"meta_symbol": "a\u2581b"})
    assert not ok
    assert details["failures"]["meta_symbol"]["got"] == " b"


def test_lone_surrogates_cannot_come_from_arrow():
    with pytest.raises(UnicodeEncodeError):
        pa.array(["lone \udc80 surrogate"])
    with pytest.raises(pa.ArrowInvalid):
        pa.array([b"invalid \xff utf-8"], pa.binary()).cast(pa.string())


def test_training_is_deterministic(corpus, tmp_path, storage):
    first = train_tokenizer(corpus, str(tmp_path / "a"), storage, CONFIG)
    second = train_tokenizer(corpus, str(tmp_path / "b"), storage, CONFIG, LocalExecutor(2))
    assert first.sha256 == second.sha256
    assert Path(first.model_path).read_bytes() == Path(second.model_path).read_bytes()
    assert first.fertility == second.fertility


def test_thread_count_changes_only_the_recorded_option():
    sentences = _sentences()

    def pieces(model: bytes) -> list[tuple[str, float]]:
        sp = spm.SentencePieceProcessor(model_proto=model)
        return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]

    one = train_model(sentences, CONFIG)
    two = train_model(sentences, dataclasses.replace(CONFIG, num_threads=2))
    assert pieces(one) == pieces(two)


def test_output_is_reused_when_current(corpus, tmp_path, storage):
    out = str(tmp_path / "tok")
    first = train_tokenizer(corpus, out, storage, CONFIG)
    stamp = os.stat(first.model_path).st_mtime_ns
    assert train_tokenizer(corpus, out, storage, CONFIG).manifest == first.manifest
    assert os.stat(first.model_path).st_mtime_ns == stamp
    other = train_tokenizer(corpus, out, storage, dataclasses.replace(CONFIG, seed=1))
    assert other.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert not os.path.exists(str(tmp_path / ".tok.staging"))


def test_fertility_report_per_source_and_language(trained):
    report = trained.fertility
    assert {"commoncrawl", "github", "wikipedia"} <= set(report["by_source"])
    assert {"en", "fr", "de", "ru", "zh"} <= set(report["by_language"])
    for group in [report["total"], *report["by_source"].values()]:
        assert group["tokens_per_byte"] > 0 and group["tokens_per_word"] > 0
        assert group["round_trip_failures"] == 0
    # CJK costs more tokens per word than space-separated Latin text.
    by_language = report["by_language"]
    assert by_language["zh"]["tokens_per_word"] > by_language["en"]["tokens_per_word"]


def test_sample_uses_train_rows_with_repeats_only(tmp_path, storage):
    rows = documents(200)
    for i, row in enumerate(rows):
        row["split"] = "validation" if i % 4 == 0 else "train"
        row["repeats"] = 0 if i % 4 == 1 else 1
    inputs = contract_parts(storage, write_parts(tmp_path, rows, 50))
    config = TokenizerConfig(vocab_size=600, heldout_fraction=0.0)
    sample = draw_sample(inputs, storage, config, LocalExecutor(1))
    allowed = {r["text"] for i, r in enumerate(rows) if i % 4 > 1}
    assert set(sample.texts) <= allowed
    assert sample.stats["documents"] == len([i for i in range(200) if i % 4 > 1])


def test_sample_budget_seed_and_weights(tmp_path, storage):
    rows = documents(1000)
    for i, row in enumerate(rows):
        row["repeats"] = 4 if i % 2 else 1
    paths = write_parts(tmp_path / "a", rows, 100)
    config = TokenizerConfig(vocab_size=600, sample_documents=100, heldout_fraction=0.1)

    def sample(paths, seed=0, **changes):
        cfg = dataclasses.replace(config, seed=seed, **changes)
        return draw_sample(contract_parts(storage, paths), storage, cfg, LocalExecutor(1))

    first = sample(paths)
    assert len(first.texts) == 100
    # The pick depends on the documents and the seed, not on how they are cut into parts.
    assert sample(write_parts(tmp_path / "b", rows, 333)).texts == first.texts
    assert sample(paths, seed=1).texts != first.texts
    heavy = {r["text"] for i, r in enumerate(rows) if i % 2}
    assert sum(t in heavy for t in first.texts) > 65  # 4x weight: about 80 of 100
    by_bytes = sample(paths, sample_documents=0, sample_bytes=20_000)
    sizes = [len(t.encode()) for t in by_bytes.texts]
    assert sum(sizes[:-1]) < 20_000 <= sum(sizes)
    repeated = {t for t, n in Counter(r["text"] for r in rows).items() if n > 1}
    assert not set(first.texts) & {d.text for d in first.heldout} - repeated


def test_long_lines_are_chunked_and_counted():
    line = ("wörd " * 3000) + "x" * 9000
    chunks = split_long(line, 4192)
    assert "".join(chunks) == line
    assert all(len(c.encode()) <= 4192 for c in chunks)
    assert chunks[1].startswith(" ")  # cut before a space
    assert split_long("中" * 3000, 4192)[0] == "中" * 1397  # never inside a character
    sentences, stats = training_sentences([line + "\nshort\n\n"], 4192)
    assert sentences == [*chunks, "short"]
    assert stats == {"sentences": len(chunks) + 1, "chunked_lines": 1, "chunks": len(chunks)}


def test_vocabulary_too_large_for_the_sample_is_a_clear_error():
    with pytest.raises(TokenizerTrainingError, match="Vocabulary size too high"):
        train_model(["a tiny corpus", "of two lines"], TokenizerConfig(vocab_size=5000))


def test_config_and_input_errors(tmp_path, storage):
    with pytest.raises(ValueError, match="must exceed 259"):
        TokenizerConfig(vocab_size=200)
    rows = documents(10)
    for row in rows:
        row["split"] = "validation"
    with pytest.raises(EmptyCorpus):
        train_tokenizer(write_parts(tmp_path / "v", rows, 10), str(tmp_path / "o"), storage, CONFIG)
    assert not (tmp_path / ".o.staging").exists()  # a failed run leaves nothing behind
    rows[3]["split"] = "test"
    with pytest.raises(InvalidStreamColumn, match="'test'"):
        train_tokenizer(write_parts(tmp_path / "t", rows, 10), str(tmp_path / "o"), storage, CONFIG)
