"""Common Crawl ingest throughput, one worker, as ratios to the bare libraries and to datatrove
measured in the same interleaved rounds on the same files (see report.py for the method):

  warc readers   warcio vs FastWARC vs ours iterating the same WARC files
  cc_documents   our WET stage vs bare FastWARC decoding the same records vs datatrove's
                 WarcReader (+ its JsonlWriter)
  CC chain       WARC -> cc_documents -> cc_language (ours, Parquet out) vs the bare calls
                 (trafilatura.extract with our options + fastText predict, on the same pages
                 already in memory) vs datatrove (WarcReader -> Trafilatura -> LanguageFilter
                 -> JsonlWriter); goals: >= 0.95x bare, >= 2x datatrove
  cc_language    our stage vs bare fastText predict vs datatrove's LanguageFilter (+ reader
                 and writer), on the WET documents

A world is the sample (data/sample) or a scale world (`llamapipe sample scale`); the CC chain
reads the first --warc-files WARC files (extraction is the slow step: ~120 pages/s).

    python bench/bench_cc.py --world data/scale-4 [--rounds 3] [--warc-files 8]
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from dataclasses import dataclass

import peers
import pyarrow.parquet as pq
from report import (
    Contender,
    Timing,
    interleaved_groups,
    machine_note,
    print_rows,
    profile_top,
    ratio_note,
    speed_ratio,
    timing_row,
)

from curation.commoncrawl.documents import CCDocuments
from curation.commoncrawl.extract import (
    EXTRACT_OPTIONS,
    HTML_TYPES,
    DecodeError,
    decode_html,
    parse_http,
)
from curation.commoncrawl.langid import LanguageId, load_model, resolve_model_path
from curation.commoncrawl.warc import Record, iter_records
from curation.core.inputs import archive_shards, partition_shards
from curation.core.runner import run_stage
from curation.core.storage import Storage

GOAL_BARE = 0.95
GOAL_PEER = 2.0
STORAGE = Storage("/")


@dataclass(frozen=True)
class Crawl:
    """The world's crawl: its WET and WARC files, and the chain's WARC subset."""

    wet: list[str]
    warc: list[str]
    chain_warc: list[str]

    @classmethod
    def of(cls, world: str, warc_files: int) -> Crawl:
        crawl = os.path.join(os.path.abspath(world), "crawls", "sample")
        warc = sorted(glob.glob(os.path.join(crawl, "warc", "*.warc.gz")))
        wet = sorted(glob.glob(os.path.join(crawl, "wet", "*.warc.wet.gz")))
        return cls(wet, warc, warc[:warc_files])


def file_bytes(paths: list[str]) -> int:
    return sum(os.path.getsize(p) for p in paths)


def shards_of(paths: list[str]) -> list:
    """Our runner's inputs for exactly these archive files."""
    directory = os.path.dirname(paths[0])
    wanted = set(paths)
    return [s for s in archive_shards(STORAGE, directory) if s.path in wanted]


# --- readers --------------------------------------------------------------------------------


def fastwarc_count(paths: list[str]) -> int:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            try:
                records = ArchiveIterator(f, record_types=WarcRecordType.any_type, parse_http=False)
                for record in records:
                    record.reader.read()
                    n += 1
            except Exception:  # noqa: BLE001 - the planted truncated member ends this file
                pass
    return n


def warcio_count(paths: list[str]) -> int:
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            try:
                for record in ArchiveIterator(f):
                    record.content_stream().read()
                    n += 1
            except Exception:  # noqa: BLE001
                pass
    return n


def our_reader_count(paths: list[str]) -> int:
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            n += sum(isinstance(r, Record) for r in iter_records(f, 8 << 20))
    return n


def bare_wet(paths: list[str]) -> int:
    """The floor of reading WET: FastWARC's conversion records, decoded, nothing kept."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            try:
                for record in ArchiveIterator(f, record_types=WarcRecordType.conversion):
                    record.reader.read().decode("utf-8", "replace")
                    n += 1
            except Exception:  # noqa: BLE001
                pass
    return n


# --- the CC chain ---------------------------------------------------------------------------


def html_pages(paths: list[str]) -> list[tuple[str, str]]:
    """The (url, decoded HTML) of every page our WARC reader would extract: the bare calls'
    input, prepared outside the timing."""
    pages = []
    for path in paths:
        with open(path, "rb") as f:
            for record in iter_records(f, 8 << 20):
                if not (isinstance(record, Record) and record.type == "response"):
                    continue
                try:
                    response = parse_http(record.block)
                    if response.status == 200 and response.content_type in HTML_TYPES:
                        pages.append(
                            (record.headers.get("WARC-Target-URI", ""), decode_html(response))
                        )
                except (ValueError, DecodeError):
                    continue
    return pages


def bare_extract(pages: list[tuple[str, str]]) -> list[str]:
    """trafilatura.extract with exactly our `main_text` options."""
    import trafilatura

    texts = []
    for url, html in pages:
        texts.append(trafilatura.extract(html, url=url, fast=False, **EXTRACT_OPTIONS) or "")
    return texts


def bare_chain(pages: list[tuple[str, str]], model) -> tuple[int, dict[str, float]]:
    started = time.perf_counter()
    texts = [t for t in bare_extract(pages) if t]
    middle = time.perf_counter()
    model.predict([t.replace("\n", "") for t in texts], k=1)
    ended = time.perf_counter()
    return len(pages), {"extraction": middle - started, "language": ended - middle}


def stage_run(stage, inputs) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return run_stage(stage, inputs, os.path.join(tmp, "out"), STORAGE).n_in


def our_chain(warc_inputs) -> tuple[int, dict[str, float]]:
    """WARC -> cc_documents -> cc_language, both stages through the runner, Parquet out."""
    with tempfile.TemporaryDirectory() as tmp:
        documents = os.path.join(tmp, "documents")
        started = time.perf_counter()
        n = run_stage(
            CCDocuments(crawl="bench", input_format="warc"), warc_inputs, documents, STORAGE
        ).n_in
        middle = time.perf_counter()
        run_stage(
            LanguageId(), partition_shards(STORAGE, documents), os.path.join(tmp, "l"), STORAGE
        )
        ended = time.perf_counter()
    return n, {"extraction": middle - started, "language": ended - middle}


# --- measurement ----------------------------------------------------------------------------


def reader_contenders(crawl: Crawl) -> list[Contender]:
    return [
        Contender("warcio", lambda: warcio_count(crawl.warc)),
        Contender("fastwarc", lambda: fastwarc_count(crawl.warc)),
        Contender("ours", lambda: our_reader_count(crawl.warc)),
    ]


def wet_contenders(crawl: Crawl, with_peer: bool) -> list[Contender]:
    inputs = shards_of(crawl.wet)
    contenders = [
        Contender("bare", lambda: bare_wet(crawl.wet)),
        Contender("ours", lambda: stage_run(CCDocuments(crawl="bench"), inputs)),
    ]
    if with_peer:
        contenders.append(Contender("datatrove", lambda: peers.wet_read(crawl.wet)))
    return contenders


def chain_contenders(crawl: Crawl, with_peer: bool) -> list[Contender]:
    pages = html_pages(crawl.chain_warc)
    model_path = resolve_model_path(LanguageId.model)
    model = load_model(model_path)
    warc_inputs = shards_of(crawl.chain_warc)
    contenders = [
        Contender("bare", lambda: bare_chain(pages, model)),
        Contender("ours", lambda: our_chain(warc_inputs)),
    ]
    if with_peer:
        contenders.append(
            Contender("datatrove", lambda: peers.warc_chain(crawl.chain_warc, model_path))
        )
    return contenders


def language_contenders(documents: str, with_peer: bool) -> list[Contender]:
    texts = pq.read_table(documents, columns=["text"]).column("text").to_pylist()
    model_path = resolve_model_path(LanguageId.model)
    model = load_model(model_path)
    lines = [t.replace("\n", "") for t in texts]  # fastText's input format, as the stage
    inputs = partition_shards(STORAGE, documents)
    contenders = [
        Contender("bare", lambda: len(model.predict(lines, k=1)[0])),
        Contender("ours", lambda: stage_run(LanguageId(), inputs)),
    ]
    if with_peer:
        contenders.append(Contender("datatrove", lambda: peers.language(documents, model_path)))
    return contenders


def chain_goals(chain: dict[str, Timing]) -> list[tuple[str, float, float]]:
    """(goal, measured, target) of the CC chain."""
    goals = [
        (
            "CC chain vs bare trafilatura + fastText",
            speed_ratio(chain["ours"], chain["bare"]),
            GOAL_BARE,
        )
    ]
    if "datatrove" in chain:
        goals.append(
            (
                "CC chain vs datatrove, per worker",
                speed_ratio(chain["ours"], chain["datatrove"]),
                GOAL_PEER,
            )
        )
    return goals


def peer_ceiling(chain: dict[str, Timing]) -> str:
    """How fast ours could be against datatrove if it were as fast as the bare calls: both
    extract with trafilatura, so its time bounds the ratio."""
    if "datatrove" not in chain:
        return "# datatrove not measured"
    bare = speed_ratio(chain["bare"], chain["datatrove"])
    return (
        f"# ceiling of the chain against datatrove with trafilatura as the extractor: the bare "
        f"calls themselves are {bare:.2f}x datatrove (ours at 1.00x bare would be {bare:.2f}x)"
    )


def chain_profile(crawl: Crawl) -> str:
    """cProfile of our chain on the same files: what to read when a goal is missed."""
    warc_inputs = shards_of(crawl.chain_warc)
    return profile_top(lambda: our_chain(warc_inputs))


def rows(readers, wet, chain, language) -> list[tuple[str, float, int, str]]:
    peer = "datatrove"
    out = [
        timing_row(readers["warcio"], name="warcio: iterate WARC records"),
        timing_row(
            readers["fastwarc"],
            ratio_note(readers["fastwarc"], [(readers["warcio"], "warcio")]),
            "fastwarc: iterate WARC records",
        ),
        timing_row(
            readers["ours"],
            ratio_note(readers["ours"], [(readers["warcio"], "warcio")]),
            "curation.commoncrawl.warc (fastwarc + member checks)",
        ),
        timing_row(wet["bare"], name="bare fastwarc: WET records, decoded"),
        timing_row(
            wet["ours"],
            ratio_note(wet["ours"], [(wet["bare"], "bare"), (wet.get(peer), peer)]),
            "cc_documents (WET)",
        ),
    ]
    if peer in wet:
        out.append(timing_row(wet[peer], name="datatrove WarcReader (WET) + JsonlWriter"))
    out += [
        timing_row(chain["bare"], name="bare trafilatura.extract + fastText predict (pages)"),
        timing_row(
            chain["ours"],
            ratio_note(chain["ours"], [(chain["bare"], "bare"), (chain.get(peer), peer)]),
            "WARC -> cc_documents -> cc_language",
        ),
    ]
    if peer in chain:
        out.append(timing_row(chain[peer], name="datatrove WARC -> Trafilatura -> LanguageFilter"))
    out += [
        timing_row(language["bare"], name="bare fastText predict (same texts)"),
        timing_row(
            language["ours"],
            ratio_note(
                language["ours"], [(language["bare"], "bare fastText"), (language.get(peer), peer)]
            ),
            "cc_language",
        ),
    ]
    if peer in language:
        out.append(timing_row(language[peer], name="datatrove LanguageFilter (+ reader, writer)"))
    return out


def chain_parts(chain: dict[str, Timing]) -> str:
    ours, bare = chain["ours"], chain["bare"]
    return (
        f"# chain parts (min over rounds): ours extraction {ours.part('extraction'):.1f} s, "
        f"language {ours.part('language'):.1f} s; bare extraction {bare.part('extraction'):.1f} s, "
        f"language {bare.part('language'):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--world", "--sample", default="data/sample", dest="world")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warc-files", type=int, default=8, help="WARC files for the CC chain")
    parser.add_argument("--no-peer", action="store_true", help="leave datatrove out")
    args = parser.parse_args()

    why = "" if not args.no_peer else "--no-peer"
    why = why or peers.unavailable()
    crawl = Crawl.of(args.world, args.warc_files)
    print(f"# {machine_note()}")
    print(
        f"# world {args.world}: {len(crawl.wet)} WET files ({file_bytes(crawl.wet) / 1e6:.0f} MB),"
        f" chain on {len(crawl.chain_warc)} WARC files ({file_bytes(crawl.chain_warc) / 1e6:.0f}"
        f" MB); {args.rounds} interleaved rounds, min each"
    )
    if why:
        print(f"# datatrove not measured: {why}")
    peer = not why
    with tempfile.TemporaryDirectory() as tmp:
        documents = os.path.join(tmp, "documents")
        run_stage(CCDocuments(crawl="bench"), shards_of(crawl.wet), documents, STORAGE)
        groups = interleaved_groups(
            {
                "readers": reader_contenders(crawl),
                "wet": wet_contenders(crawl, peer),
                "chain": chain_contenders(crawl, peer),
                "language": language_contenders(documents, peer),
            },
            args.rounds,
        )
    readers, wet, chain, language = (groups[k] for k in ("readers", "wet", "chain", "language"))
    print_rows(rows(readers, wet, chain, language), "measure", "items/s")
    print(chain_parts(chain))
    missed = False
    for goal, measured, target in chain_goals(chain):
        status = "met" if measured >= target else "MISSED"
        missed |= measured < target
        print(f"# goal {goal}: {measured:.2f}x (>= {target}x) {status}")
    print(peer_ceiling(chain))
    if missed:
        print("# profile of our chain (cProfile, top by own time, then cumulative):")
        print(chain_profile(crawl))


if __name__ == "__main__":
    main()
