"""CCNet normalization: dedup keys and the language models' text."""

from curation.normalize import dedup_key, lm_normalize, lm_normalize_lines


def test_dedup_keys_fold_case_digits_punctuation_and_controls():
    assert dedup_key("  Accept ALL cookies! ") == dedup_key("accept all cookies")
    assert dedup_key("© 2021 Example, Inc.") == dedup_key("© 1999 Example Inc")
    assert dedup_key("tab\there\x00") == "tab here"
    assert dedup_key("été") != dedup_key("ete")  # accents matter for dedup, not for the LM


def test_lm_text_strips_accents_and_maps_typographic_punctuation():
    assert lm_normalize("Élève «déjà» vu — 2023…") == 'eleve "deja" vu - 0000...'
    assert lm_normalize("a\u200bb\x07c") == "abc"


def test_document_normalization_equals_line_by_line_and_caps_long_lines():
    text = "Première ligne, 12 €.\r\n\n  «Deuxième»\x00 ligne\u2028troisième\n" + "x" * 50
    expected = [n for line in text.splitlines() if (n := lm_normalize(line[:20]))]
    assert lm_normalize_lines(text, 20) == expected
    assert lm_normalize_lines(text, 20)[-1] == "x" * 20
