"""Throughput per core of every crawl-to-tokens stage on a scale world, with datatrove's rate
beside ours where it has the step, and the throughput goals; the input of `bench/cost.py`.

One process, one worker, every rate the minimum of interleaved rounds (report.py). What is
measured, on `--world` (a scale world: `llamapipe sample scale --factor 4`):

  cc_documents (WET)        every WET file of the world; vs bare FastWARC decoding, datatrove
  WARC chain                cc_documents (WARC, trafilatura) -> cc_language on the first
                            --warc-files WARC files; vs the bare calls and datatrove; its
                            extraction part is the WARC-extraction rate
  cc_line_dedup ... c4      the crawl branch as bench_quality.py builds it (line dedup in
                            groups of 8), each stage on its upstream's output
  cc_language               on the line-deduplicated documents; vs bare fastText, datatrove
  dedup_signatures,         on the language-identified documents (English, as the corpora
  deduplicated              the recipe dedups); signatures vs the bare function, datatrove
  tokenized_shards          on every WET document (the largest text input the world has),
                            with a tokenizer trained on them (vocab 32000); vs bare encode,
                            datatrove; one worker, one thread

Each stage's rate is per unit of its input: compressed archive bytes for the readers, text
bytes (UTF-8) for the text stages, documents for `deduplicated` (it reads signatures, not
text). The flows `bench/cost.py` needs (how much of a crawl's WET reaches each stage) are
measured on the sample world in the same run, untimed: the scale world's copies are planted
duplicates, which would make exact dedup and C4's span dedup remove ~3/4 of it.

    python bench/throughput.py --world data/scale-4 --sample data/sample \\
        --out bench/results/throughput_scale   # writes .txt and .json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from dataclasses import dataclass

import bench_cc
import bench_dedup
import bench_quality
import bench_tokenize
import peers
import pyarrow.compute as pc
import pyarrow.parquet as pq
from report import (
    MIN_ROUNDS,
    Contender,
    Timing,
    interleaved_groups,
    machine_note,
    print_rows,
    profile_top,
    ratio_note,
    timing_row,
    write_json,
)

from curation.core.inputs import contract_parts
from curation.core.storage import Storage
from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer

STORAGE = Storage("/")
# The recipe's stages by branch (the cost projection's); cc_gopher is measured, not projected.
BRANCHES = {
    "cc_documents (WET)": "CCNet",
    "cc_line_dedup": "CCNet",
    "cc_language": "CCNet",
    "cc_perplexity": "CCNet",
    "cc_wikiref": "CCNet",
    "commoncrawl": "CCNet",
    "c4_language": "C4",
    "c4": "C4",
    "dedup_signatures": "signatures",
    "deduplicated": "dedup",
    "tokenized_shards": "tokenization",
}
WARC_EXTRACTION = "cc_documents (WARC extraction)"


@dataclass
class StageRate:
    """One stage's measured rate per core, and its peers' on the same input."""

    stage: str
    unit: str  # what `quantity` counts: wet_bytes, warc_bytes, text_bytes, documents
    quantity: float  # of the measured input
    documents: int
    ours_s: float
    bare_s: float | None = None
    peer_s: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        def per_s(seconds: float | None) -> float | None:
            return self.quantity / seconds if seconds else None

        return {
            "stage": self.stage,
            "branch": BRANCHES.get(self.stage, "WARC alternative" if "WARC" in self.stage else ""),
            "unit": self.unit,
            "quantity": self.quantity,
            "documents": self.documents,
            "ours_s": self.ours_s,
            "ours_per_core_s": per_s(self.ours_s),
            "docs_per_core_s": self.documents / self.ours_s,
            "bare_per_core_s": per_s(self.bare_s),
            "datatrove_per_core_s": per_s(self.peer_s),
            "note": self.note,
        }


def text_bytes(directory: str) -> int:
    texts = pq.read_table(directory, columns=["text"]).column("text")
    return int(pc.sum(pc.binary_length(texts)).as_py() or 0)


def documents(directory: str) -> int:
    return pq.read_table(directory, columns=["id"]).num_rows


def rate(
    stage: str, unit: str, quantity: float, timings: dict[str, Timing], ours: str, note: str = ""
) -> StageRate:
    """A stage's rate from one interleaved group: ours, and the bare call and datatrove when
    the group had them."""
    bare, peer = timings.get("bare"), timings.get("datatrove")
    return StageRate(
        stage,
        unit,
        quantity,
        timings[ours].items,
        timings[ours].best,
        bare.best if bare else None,
        peer.best if peer else None,
        note,
    )


# --- flows (sample world, untimed) ----------------------------------------------------------


def flows(sample: str) -> dict:
    """How much of the sample's crawl reaches each stage, in each stage's unit, per
    compressed WET byte (and the WARC bytes for the extraction alternative)."""
    crawl = bench_cc.Crawl.of(sample, 0)
    wet, warc = bench_cc.file_bytes(crawl.wet), bench_cc.file_bytes(crawl.warc)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        built = bench_quality.build(sample, tmp)
        out = built.output
        corpora = [out("commoncrawl"), out("c4")]
        quantities = {
            "cc_documents (WET)": wet,
            WARC_EXTRACTION: warc,
            "cc_line_dedup": text_bytes(out("cc_documents")),
            "cc_language": text_bytes(out("cc_line_dedup")),
            "cc_perplexity": text_bytes(out("cc_language")),
            "cc_wikiref": text_bytes(out("cc_perplexity")),
            "commoncrawl": text_bytes(out("cc_wikiref")),
            "c4_language": text_bytes(out("cc_documents")),
            "c4": text_bytes(out("c4_language")),
            "dedup_signatures": sum(map(text_bytes, corpora)),
            "deduplicated": sum(map(documents, corpora)),
            "tokenized_shards": sum(map(text_bytes, corpora)),
        }
        records = documents(out("cc_documents"))
        english = documents(out("cc_language")) / max(1, documents(out("cc_line_dedup")))
    return {
        "world": sample,
        "wet_bytes": wet,
        "warc_bytes": warc,
        "wet_files": len(crawl.wet),
        "wet_documents": records,
        "english_share": english,
        "per_wet_byte": {k: v / wet for k, v in quantities.items()},
        "note": "tokenized_shards and signatures take commoncrawl + c4 before near dedup",
    }


# --- rates (scale world, interleaved) -------------------------------------------------------


@dataclass
class Inputs:
    """What the rounds run on, prepared before them (set-up, not measured)."""

    crawl: bench_cc.Crawl
    built: bench_quality.Built
    model: str  # the tokenizer trained on the token input
    peer_json: str  # its `tokenizers` JSON for datatrove ("" when not measured)
    signed: str  # the signatures `deduplicated` reads

    @property
    def language_in(self) -> str:
        return self.built.output("cc_line_dedup")

    @property
    def dedup_in(self) -> str:
        """The language-identified documents: English, as the corpora the recipe dedups."""
        return self.built.output("cc_language")

    @property
    def token_in(self) -> str:
        """Every WET document: the largest text input the world has."""
        return self.built.output("cc_documents")


def prepare(world: str, crawl: bench_cc.Crawl, tmp: str, peer: bool) -> tuple[Inputs, str]:
    """Build the branch once, train the tokenizer; also why datatrove's tokenizer is not
    measured ("" when it is)."""
    built = bench_quality.build(world, tmp)
    token_in = built.output("cc_documents")
    model = train_tokenizer(
        [token_in], os.path.join(tmp, "tok"), STORAGE, TokenizerConfig()
    ).model_path
    peer_dir = os.path.join(tmp, "peer")
    os.makedirs(peer_dir, exist_ok=True)
    peer_json, why = bench_tokenize.tokenizer_peer(model, peer_dir) if peer else ("", "")
    return Inputs(crawl, built, model, peer_json, os.path.join(tmp, "signed")), why


def contender_groups(inputs: Inputs, peer: bool) -> tuple[dict[str, list[Contender]], dict]:
    """Every comparison, to run in the same rounds; and the dedup run's summary (filled in by
    its runs)."""
    found = [("commoncrawl/bench", inputs.dedup_in)]
    (dedup_texts,) = bench_quality.texts_of(inputs.dedup_in)
    (token_texts,) = bench_quality.texts_of(inputs.token_in)
    deduplicated, summary = bench_dedup.global_contender(found, inputs.signed)
    token_shards = contract_parts(STORAGE, [inputs.token_in])
    tokens = bench_tokenize.contender_groups(
        token_shards, token_texts, inputs.model, inputs.peer_json, threads=(1,)
    )[1]
    groups = {
        "wet": bench_cc.wet_contenders(inputs.crawl, peer),
        "chain": bench_cc.chain_contenders(inputs.crawl, peer),
        "language": bench_cc.language_contenders(inputs.language_in, peer),
        **bench_quality.contender_groups(inputs.built, peer),
        "signatures": bench_dedup.partition_contenders(found, dedup_texts, peer),
        "deduplicated": [deduplicated],
        "tokens": tokens,
    }
    return groups, summary


def stage_rates(
    timings: dict[str, dict[str, Timing]], inputs: Inputs, summary: dict
) -> list[StageRate]:
    """Each stage's rate per core, in its input's unit, from the rounds' minima."""
    crawl, built = inputs.crawl, inputs.built
    chain = timings["chain"]
    warc_bytes = bench_cc.file_bytes(crawl.chain_warc)
    rates = [
        rate(
            "cc_documents (WET)",
            "wet_bytes",
            bench_cc.file_bytes(crawl.wet),
            timings["wet"],
            "ours",
        ),
        rate("WARC chain (extraction + language id)", "warc_bytes", warc_bytes, chain, "ours"),
        StageRate(
            WARC_EXTRACTION,
            "warc_bytes",
            warc_bytes,
            chain["ours"].items,
            chain["ours"].part("extraction"),
            chain["bare"].part("extraction"),
            None,
            "the chain's extraction part; datatrove's is not separable from its chain",
        ),
        rate(
            "cc_language", "text_bytes", text_bytes(inputs.language_in), timings["language"], "ours"
        ),
    ]
    for name, timing in timings["stages"].items():
        upstream = built.stages[name][1]
        rates.append(rate(name, "text_bytes", text_bytes(upstream), {name: timing}, name))
    for name in ("cc_perplexity", "c4", "cc_gopher"):
        g = timings[name]
        bare = g.get("bare") or g.get("rules")
        rates.append(
            StageRate(
                name,
                "text_bytes",
                text_bytes(built.stages[name][1]),
                g[name].items,
                g[name].best,
                bare.best,
                g["datatrove"].best if "datatrove" in g else None,
                "bare: kenlm score alone"
                if name == "cc_perplexity"
                else "bare: its rules in memory",
            )
        )
    rates.append(
        rate(
            "dedup_signatures",
            "text_bytes",
            text_bytes(inputs.dedup_in),
            timings["signatures"],
            "ours",
        )
    )
    deduplicated = timings["deduplicated"]["deduplicated"]
    rates.append(
        rate(
            "deduplicated",
            "documents",
            deduplicated.items,
            {"d": deduplicated},
            "d",
            f"dropped {summary.get('dropped')}",
        )
    )
    tokens = {k if k != "1x1" else "ours": v for k, v in timings["tokens"].items()}
    stage = rate("tokenized_shards", "text_bytes", text_bytes(inputs.token_in), tokens, "ours")
    stage.documents = documents(inputs.token_in)  # the group counts tokens
    stage.note = f"{tokens['ours'].rate:,.0f} tokens/s ({tokens['ours'].items:,} tokens)"
    rates.append(stage)
    return rates


# --- report ---------------------------------------------------------------------------------


def rate_rows(rates: list[StageRate]) -> list[tuple[str, float, int, str]]:
    rows = []
    for r in rates:
        per_core = r.quantity / r.ours_s / 1e6
        notes = [f"{r.documents / r.ours_s:.0f} docs/s" if r.unit != "documents" else ""]
        for label, seconds in (("bare", r.bare_s), ("datatrove", r.peer_s)):
            if seconds:
                notes.append(
                    f"{label} {r.quantity / seconds / 1e6:.2f} ({seconds / r.ours_s:.2f}x)"
                )
        unit = {
            "documents": "docs",
            "text_bytes": "MB text",
            "wet_bytes": "MB WET.gz",
            "warc_bytes": "MB WARC.gz",
        }[r.unit]
        value = r.quantity / r.ours_s if r.unit == "documents" else per_core
        notes.append(r.note)
        rows.append((f"{r.stage} [{unit}/s]", value, r.documents, "; ".join(n for n in notes if n)))
    return rows


def goals(groups: dict) -> list[tuple[str, float, float]]:
    found = bench_cc.chain_goals(groups["chain"])
    found.append(bench_tokenize.tokenize_goal({1: groups["tokens"]}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--world", default="data/scale-4")
    parser.add_argument("--sample", default="data/sample", help="the world the flows come from")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--warc-files", type=int, default=8)
    parser.add_argument("--out", default="bench/results/throughput_scale")
    parser.add_argument("--no-peer", action="store_true", help="leave datatrove out")
    args = parser.parse_args()

    why = "--no-peer" if args.no_peer else peers.unavailable()
    world = os.path.abspath(args.world)
    crawl = bench_cc.Crawl.of(world, args.warc_files)
    header = header_lines(args, crawl)
    if why:
        header.append(f"# datatrove not measured: {why}")
    flow = flows(os.path.abspath(args.sample))
    peer = not why
    with tempfile.TemporaryDirectory() as tmp:
        inputs, token_why = prepare(world, crawl, tmp, peer)
        if token_why:
            header.append(f"# datatrove tokenizer not measured: {token_why}")
        groups, summary = contender_groups(inputs, peer)
        timings = interleaved_groups(groups, args.rounds)
        rates = stage_rates(timings, inputs, summary)
        measured_goals = goals(timings)
        profiles = missed_profiles(measured_goals, crawl, inputs.token_in, inputs.model)
    Results(header, rates, timings, measured_goals, profiles, flow, summary).write(args.out)


def header_lines(args: argparse.Namespace, crawl: bench_cc.Crawl) -> list[str]:
    size = bench_cc.file_bytes
    return [
        f"# bench/throughput.py --world {args.world} --rounds {args.rounds} "
        f"--warc-files {args.warc_files}",
        f"# {machine_note()}; one worker; every time the minimum of {args.rounds} "
        "interleaved rounds (warm-up excluded)",
        f"# world: {len(crawl.wet)} WET files ({size(crawl.wet) / 1e6:.1f} MB), "
        f"{len(crawl.warc)} WARC files ({size(crawl.warc) / 1e6:.1f} MB); the WARC chain "
        f"reads {len(crawl.chain_warc)} of them ({size(crawl.chain_warc) / 1e6:.1f} MB)",
    ]


def goal_line(goal: str, measured: float, target: float) -> str:
    status = "met" if measured >= target else "MISSED"
    return f"# goal {goal}: {measured:.2f}x (>= {target}x) {status}"


def missed_profiles(measured_goals, crawl, token_input: str, model: str) -> dict[str, str]:
    """cProfile of ours for every missed goal: where the time goes."""
    profiles = {}
    for goal, measured, target in measured_goals:
        if measured >= target:
            continue
        if goal.startswith("CC chain") and "chain" not in profiles:
            profiles["chain"] = bench_cc.chain_profile(crawl)
        elif goal.startswith("tokenized_shards"):
            shards = contract_parts(STORAGE, [token_input])
            profiles["tokenized_shards"] = profile_top(
                lambda shards=shards: bench_tokenize.shards_run(shards, model, 1, 1)
            )
    return profiles


@dataclass
class Results:
    """Everything the results files hold."""

    header: list[str]
    rates: list[StageRate]
    timings: dict[str, dict[str, Timing]]
    goals: list[tuple[str, float, float]]
    profiles: dict[str, str]
    flows: dict
    dedup_summary: dict

    def text(self) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print("\n".join(self.header))
            print(
                "# per core: MB/s of the stage's input (UTF-8 text, or compressed archive) and"
                " docs/s; bare, datatrove: their MB/s on the same input (their time / ours)"
            )
            print_rows(rate_rows(self.rates), "stage", "per core")
            print()
            print("# the comparisons behind them (items/s as each counts them; ratios of times)")
            print_rows(comparison_rows(self.timings), "measure", "items/s")
            print()
            for goal, measured, target in self.goals:
                print(goal_line(goal, measured, target))
            print(bench_cc.peer_ceiling(self.timings["chain"]))
            for name, profile in self.profiles.items():
                print(f"\n# profile of ours, {name} (cProfile: top by own time, then cumulative)")
                print(profile)
        return out.getvalue()

    def as_dict(self) -> dict:
        return {
            "header": self.header,
            "stages": [r.as_dict() for r in self.rates],
            "goals": [
                {"goal": g, "measured": m, "target": t, "met": m >= t} for g, m, t in self.goals
            ],
            "timings": {
                group: {name: t.as_dict() for name, t in timings.items()}
                for group, timings in self.timings.items()
            },
            "deduplicated_summary": {
                k: v for k, v in self.dedup_summary.items() if k != "example_clusters"
            },
            "flows": self.flows,
            "profiles": self.profiles,
        }

    def write(self, out: str) -> None:
        text = self.text()
        print(text, end="")
        with open(f"{out}.txt", "w") as f:
            f.write(text)
        write_json(f"{out}.json", self.as_dict())


def comparison_rows(groups: dict) -> list[tuple[str, float, int, str]]:
    rows = []
    peer = "datatrove"
    for key, label in (
        ("wet", "cc_documents (WET)"),
        ("chain", "WARC -> cc_documents -> cc_language"),
        ("language", "cc_language"),
    ):
        g = groups[key]
        rows.append(
            timing_row(
                g["ours"], ratio_note(g["ours"], [(g["bare"], "bare"), (g.get(peer), peer)]), label
            )
        )
        rows.append(timing_row(g["bare"], name=f"  bare ({label})"))
        if peer in g:
            rows.append(timing_row(g[peer], name=f"  datatrove ({label})"))
    rows += bench_quality.rows(
        {k: groups[k] for k in ("stages", "cc_perplexity", "c4", "cc_gopher")}
    )
    s = groups["signatures"]
    rows.append(
        timing_row(
            s["ours"],
            ratio_note(s["ours"], [(s["bare"], "bare"), (s.get(peer), peer)]),
            "dedup_signatures",
        )
    )
    rows.append(timing_row(s["bare"], name="  bare signatures()"))
    if peer in s:
        rows.append(timing_row(s[peer], name="  datatrove MinhashDedupSignature"))
    rows.append(timing_row(groups["deduplicated"]["deduplicated"]))
    rows += bench_tokenize.rows({1: groups["tokens"]})
    return rows


if __name__ == "__main__":
    main()
