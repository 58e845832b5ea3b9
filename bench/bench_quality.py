"""CommonCrawl quality stages on a world's crawl: docs/s of each, one worker, every number
from interleaved rounds (report.py), with the reference beside each where one exists:

  cc_perplexity  vs bare `kenlm.Model.score` on the same normalized, tokenized lines (the
                 floor: no Parquet, normalization, tokenization or bucketing) and vs the plain
                 loop normalize + encode + score per document
  c4             vs its rules alone in memory (`clean_page` per text: the runner, Parquet and
                 the repeated-span pass are the difference) and vs datatrove's C4QualityFilter
                 (+ its reader and writer; it has no span dedup, so it does less)
  cc_gopher      vs its rules alone in memory and vs datatrove's GopherQualityFilter +
                 GopherRepetitionFilter (+ reader and writer)
  cc_line_dedup, cc_wikiref, commoncrawl (exact dedup), c4_language: ours alone, rotated in
                 one group so that they share the machine's state

Every stage reads its upstream's output, built once before the rounds; `cc_line_dedup` runs
with group_size 8 (docs/OPERATIONS.md "Scale worlds": one group per copy of the sample).

    python bench/bench_quality.py --world data/scale-4 [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, replace

import peers
import pyarrow.parquet as pq
from report import (
    Contender,
    Timing,
    interleaved_groups,
    machine_note,
    print_rows,
    ratio_note,
    timing_row,
)

from curation.commoncrawl.c4 import C4Filter
from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.exact_dedup import ExactDedup
from curation.commoncrawl.gopher import GopherQuality
from curation.commoncrawl.langid import LanguageId, resolve_model_path
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
LINE_DEDUP_GROUP = 8
STORAGE = Storage("/")


@dataclass
class Built:
    """Every stage's input, built once: stage name -> (stage, upstream directory)."""

    root: str
    stages: dict[str, tuple[object, str]]
    models: str
    cutoffs: dict

    def output(self, name: str) -> str:
        return os.path.join(self.root, name)


def train_models(world: str, root: str) -> str:
    """The perplexity models (SentencePiece + KenLM per language) from the world's Wikipedia:
    set-up, not measured."""
    dumps = archive_shards(STORAGE, os.path.join(world, "wikipedia"), WIKI_DUMP_SUFFIXES)
    articles = os.path.join(root, "wikipedia")
    run_stage(WikipediaText(), dumps, articles, STORAGE)
    models = os.path.join(root, "models")
    for language in LANGUAGES:
        texts = language_texts(STORAGE, articles, language)
        files = model_files(models, language)
        train_lm_tokenizer(texts, files.tokenizer.parent, 4000)
        train_kenlm(texts, files.tokenizer, files.kenlm.parent)
    return models


def build(world: str, root: str) -> Built:
    """Run the crawl branch once (WET in), keeping every stage's output under `root`."""
    world = os.path.abspath(world)
    built = Built(root, {}, train_models(world, root), {})

    def step(name: str, stage, upstream: str) -> str:
        out = built.output(name)
        run_stage(stage, partition_shards(STORAGE, upstream), out, STORAGE)
        built.stages[name] = (stage, upstream)
        return out

    wet = archive_shards(STORAGE, os.path.join(world, "crawls", "sample", "wet"))
    documents = built.output("cc_documents")
    run_stage(CCDocuments(crawl="bench"), wet, documents, STORAGE)
    dedup = step("cc_line_dedup", LineDedup(group_size=LINE_DEDUP_GROUP), documents)
    language = step("cc_language", LanguageId(), dedup)
    scorer = scorer_for(STORAGE, built.models, os.path.join(root, "cutoffs"), LANGUAGES)
    inputs = partition_shards(STORAGE, language)
    built.cutoffs, _ = crawl_cutoffs(scorer, inputs, STORAGE, LocalExecutor(1))
    # The stage scores every document itself (no sample to read back): its own speed.
    perplexity = step(
        "cc_perplexity", replace(scorer, cutoffs=built.cutoffs, scores_dir=""), language
    )
    articles = os.path.join(root, "wikipedia")
    examples = training_set(
        crawl_pages(STORAGE, language), cited_url_set(STORAGE, articles), seed=0
    )
    classifier = os.path.join(root, "wikiref.bin")
    train_classifier(examples, classifier, seed=0)
    wikiref = step("cc_wikiref", WikiRefFilter(model=classifier), perplexity)
    step("commoncrawl", ExactDedup(), wikiref)
    c4_language = step("c4_language", LanguageId(), documents)
    step("c4", C4Filter(), c4_language)
    step("cc_gopher", GopherQuality(), language)
    return built


def stage_run(stage, upstream: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return run_stage(
            stage, partition_shards(STORAGE, upstream), os.path.join(tmp, "o"), STORAGE
        ).n_in


def texts_of(directory: str, columns: tuple[str, ...] = ("text",)) -> list[list]:
    table = pq.read_table(directory, columns=list(columns))
    return [table.column(c).to_pylist() for c in columns]


# --- references -----------------------------------------------------------------------------


def perplexity_inputs(built: Built) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per scored language: the raw texts (the plain loop's input) and their normalized,
    tokenized lines (the floor's input), prepared outside the timing."""
    texts, languages = texts_of(built.output("cc_language"), ("text", "language"))
    raw: dict[str, list[str]] = {}
    for text, language in zip(texts, languages, strict=True):
        if language in built.cutoffs:
            raw.setdefault(language, []).append(text)
    prepared: dict[str, list[str]] = {}
    for language, lines in raw.items():
        sp = load_tokenizer(str(model_files(built.models, language).tokenizer))
        for line in lines:
            if normalized := normalize(line):
                prepared.setdefault(language, []).append(
                    " ".join(sp.encode(normalized, out_type=str))
                )
    return raw, prepared


def kenlm_floor(models: str, prepared: dict[str, list[str]]) -> int:
    n = 0
    for language, lines in prepared.items():
        model = load_kenlm(str(model_files(models, language).kenlm))
        for line in lines:
            model.score(line)
        n += len(lines)
    return n


def plain_loop(models: str, raw: dict[str, list[str]]) -> int:
    """normalize + encode + score per document, nothing else."""
    n = 0
    for language, lines in raw.items():
        sp = load_tokenizer(str(model_files(models, language).tokenizer))
        model = load_kenlm(str(model_files(models, language).kenlm))
        for line in lines:
            if normalized := normalize(line):
                model.score(" ".join(sp.encode(normalized, out_type=str)))
        n += len(lines)
    return n


def c4_rules(texts: list[str], languages: list[str]) -> int:
    """C4's line and page rules on texts in memory: `c4`'s kernel."""
    stage, lines, examples = C4Filter(), Counter(), Counter()
    for text, language in zip(texts, languages, strict=True):
        stage.clean_page(text, language, lines, examples)
    return len(texts)


def gopher_rules(texts: list[str]) -> int:
    stage = GopherQuality()
    rules = stage.rules()
    for text in texts:
        stage.reason(text, rules)
    return len(texts)


# --- measurement ----------------------------------------------------------------------------


def ours(built: Built, name: str) -> Contender:
    stage, upstream = built.stages[name]
    return Contender(name, lambda: stage_run(stage, upstream))


def contender_groups(built: Built, with_peer: bool) -> dict[str, list[Contender]]:
    """Each comparison's contenders, and the stages measured alone as one group."""
    alone = ["cc_line_dedup", "cc_wikiref", "commoncrawl", "c4_language"]
    groups = {"stages": [ours(built, name) for name in alone]}
    raw, prepared = perplexity_inputs(built)
    groups["cc_perplexity"] = [
        ours(built, "cc_perplexity"),
        Contender("bare", lambda: kenlm_floor(built.models, prepared)),
        Contender("loop", lambda: plain_loop(built.models, raw)),
    ]
    c4_in = built.stages["c4"][1]
    c4_texts, c4_languages = texts_of(c4_in, ("text", "language"))
    groups["c4"] = [ours(built, "c4"), Contender("rules", lambda: c4_rules(c4_texts, c4_languages))]
    gopher_in = built.stages["cc_gopher"][1]
    (gopher_texts,) = texts_of(gopher_in)
    groups["cc_gopher"] = [
        ours(built, "cc_gopher"),
        Contender("rules", lambda: gopher_rules(gopher_texts)),
    ]
    if with_peer:
        groups["c4"].append(Contender("datatrove", lambda: peers.c4_quality(c4_in)))
        groups["cc_gopher"].append(Contender("datatrove", lambda: peers.gopher(gopher_in)))
    return groups


def measure(built: Built, rounds: int, with_peer: bool) -> dict[str, dict[str, Timing]]:
    """Timings by group, every group in the same interleaved rounds."""
    return interleaved_groups(contender_groups(built, with_peer), rounds)


def rows(groups: dict[str, dict[str, Timing]]) -> list[tuple[str, float, int, str]]:
    out = [timing_row(t) for t in groups["stages"].values()]
    p = groups["cc_perplexity"]
    out += [
        timing_row(
            p["cc_perplexity"],
            ratio_note(
                p["cc_perplexity"],
                [(p["bare"], "bare kenlm.Model.score"), (p["loop"], "plain loop")],
            ),
        ),
        timing_row(p["bare"], name="bare kenlm.Model.score (same lines)"),
        timing_row(p["loop"], name="plain loop: normalize+encode+score"),
    ]
    for name, label in (("c4", "C4QualityFilter"), ("cc_gopher", "Gopher quality + repetition")):
        g = groups[name]
        out.append(
            timing_row(
                g[name],
                ratio_note(
                    g[name],
                    [(g["rules"], "its rules in memory"), (g.get("datatrove"), "datatrove")],
                ),
            )
        )
        out.append(timing_row(g["rules"], name=f"{name} rules alone, in memory"))
        if "datatrove" in g:
            out.append(timing_row(g["datatrove"], name=f"datatrove {label} (+ reader, writer)"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--world", "--sample", default="data/sample", dest="world")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="leave datatrove out")
    args = parser.parse_args()
    why = "--no-peer" if args.no_peer else peers.unavailable()
    resolve_model_path(LanguageId.model)  # fail early without the language-id model
    print(f"# {machine_note()}")
    print(f"# world {args.world}; {args.rounds} interleaved rounds, min each")
    if why:
        print(f"# datatrove not measured: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        built = build(args.world, tmp)
        groups = measure(built, args.rounds, not why)
    print_rows(rows(groups), "stage", "docs/s")


if __name__ == "__main__":
    main()
