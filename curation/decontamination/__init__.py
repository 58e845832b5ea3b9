"""Benchmark decontamination: 13-gram overlaps between the training corpus and evaluation sets,
as lm-eval and GPT-3 define them (`ngrams`), the evaluation sets and their index
(`benchmarks`), what is done to a document that overlaps (`policy`), the stage between
`deduplicated` and `mixture` (`stage.Decontaminated`) and the report lm-eval reads (`report`)."""
