"""CommonCrawl quality stages on the sample crawl: docs/s of each, one worker, and for
`cc_perplexity` the ratio to bare `kenlm.Model.score` on the same normalized, tokenized
documents (the floor: no Parquet, no normalization, no tokenization, no bucketing).

    python bench/bench_quality.py --sample data/sample
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import pyarrow.parquet as pq
from report import print_rows

from curation.commoncrawl.c4 import C4Filter
from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.exact_dedup import ExactDedup
from curation.commoncrawl.langid import LanguageId
from curation.commoncrawl.line_dedup import LineDedup
from curation.commoncrawl.normalize import normalize
from curation.commoncrawl.perplexity import load_kenlm, load_tokenizer
from curation.commoncrawl.perplexity_cutoffs import crawl_cutoffs, scorer_for
from curation.commoncrawl.perplexity_models import (
    language_texts,
    model_files,
    train_kenlm,
    train_lm_tokenizer,
)
from curation.commoncrawl.wikiref import (
    WikiRefFilter,
    cited_url_set,
    crawl_pages,
    train_classifier,
    training_set,
)
from curation.core.executor import LocalExecutor
from curation.core.inputs import WIKI_DUMP_SUFFIXES, archive_shards, partition_shards
from curation.core.runner import run_stage
from curation.core.storage import Storage
from curation.sources.wikipedia import WikipediaText

LANGUAGES = ["en", "fr", "de", "es"]


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def bare_kenlm_seconds(
    documents: str, storage: Storage, models: str, cutoffs: dict
) -> tuple[float, float]:
    """Seconds of kenlm.Model.score alone over the pre-normalized, pre-tokenized documents
    (the floor), and of the plain loop normalize + encode + score per document."""
    table = pq.read_table(documents, filesystem=storage.fs, columns=["text", "language"])
    raw: dict[str, list[str]] = {}
    texts, languages = table.column("text").to_pylist(), table.column("language").to_pylist()
    for text, language in zip(texts, languages, strict=True):
        if language in cutoffs:
            raw.setdefault(language, []).append(text)
    prepared: dict[str, list[str]] = {}
    started = time.perf_counter()
    for language, lines in raw.items():
        sp = load_tokenizer(str(model_files(models, language).tokenizer))
        model = load_kenlm(str(model_files(models, language).kenlm))
        for line in lines:
            if normalized := normalize(line):
                tokens = " ".join(sp.encode(normalized, out_type=str))
                model.score(tokens)
                prepared.setdefault(language, []).append(tokens)
    plain_loop = time.perf_counter() - started
    started = time.perf_counter()
    for language, lines in prepared.items():
        model = load_kenlm(str(model_files(models, language).kenlm))
        for line in lines:
            model.score(line)
    return time.perf_counter() - started, plain_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", default="data/sample")
    args = parser.parse_args()
    sample = os.path.abspath(args.sample)
    storage = Storage("/")
    rows: list[tuple[str, float, int, str]] = []

    with tempfile.TemporaryDirectory() as tmp:

        def stage(stage_obj, upstream: str, name: str | None = None) -> str:
            out = os.path.join(tmp, name or stage_obj.name)
            seconds, manifest = timed(
                lambda: run_stage(stage_obj, partition_shards(storage, upstream), out, storage)
            )
            rows.append((stage_obj.name, manifest.n_in / seconds, manifest.n_in, ""))
            return out

        wet = archive_shards(storage, os.path.join(sample, "crawls", "sample", "wet"))
        documents = os.path.join(tmp, "cc_documents")
        run_stage(CCDocuments(crawl="bench"), wet, documents, storage)
        dumps = archive_shards(storage, os.path.join(sample, "wikipedia"), WIKI_DUMP_SUFFIXES)
        articles = os.path.join(tmp, "wikipedia")
        run_stage(WikipediaText(), dumps, articles, storage)
        models = os.path.join(tmp, "models")
        for language in LANGUAGES:
            texts = language_texts(storage, articles, language)
            files = model_files(models, language)
            train_lm_tokenizer(texts, files.tokenizer.parent, 4000)
            train_kenlm(texts, files.tokenizer, files.kenlm.parent)

        dedup = stage(LineDedup(), documents)
        language = stage(LanguageId(), dedup)
        inputs = partition_shards(storage, language)
        scorer = scorer_for(storage, models, os.path.join(tmp, "cutoffs"), LANGUAGES)
        cutoffs, _ = crawl_cutoffs(scorer, inputs, storage, LocalExecutor(1))
        # The stage scores every document itself (no sample to read back): its own speed.
        perplexity = stage(replace(scorer, cutoffs=cutoffs, scores_dir=""), language)
        floor, plain = bare_kenlm_seconds(language, storage, models, cutoffs)
        name, rate, n, _ = rows[-1]  # same documents: the ratio of rates is floor / stage time
        note = f"{rate / (n / floor):.2f}x bare kenlm.Model.score, {rate / (n / plain):.2f}x loop"
        rows[-1] = (name, rate, n, note)
        rows.append(("bare kenlm.Model.score (same lines)", n / floor, n, ""))
        rows.append(("plain loop: normalize+encode+score", n / plain, n, ""))

        pages = crawl_pages(storage, language)
        examples = training_set(pages, cited_url_set(storage, articles), seed=0)
        model = os.path.join(tmp, "wikiref.bin")
        train_classifier(examples, model, seed=0)
        wikiref = stage(WikiRefFilter(model=model), perplexity)
        stage(ExactDedup(), wikiref)
        c4_language = stage(LanguageId(), documents, "c4_language")
        stage(C4Filter(), c4_language)

    print_rows(rows, "stage", "docs/s")


if __name__ == "__main__":
    main()
