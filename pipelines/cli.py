"""`llamapipe`: the core without Dagster, for people running single stages on their own files.

The commands call the same stage classes and runner the assets call; only `crawls add` talks
to a Dagster instance (imported lazily, so the rest starts fast).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from curation.executor import LocalExecutor
from curation.inputs import MissingInput, archive_shards, file_shard, partition_shards
from curation.manifest import Manifest
from curation.runner import read_manifest, run_stage
from curation.stage import ShardInput, Stage
from curation.storage import Storage


def _cc_documents(args: argparse.Namespace) -> Stage:
    from curation.cc_documents import CCDocuments

    return CCDocuments(
        crawl=args.crawl,
        input_format=args.format,
        min_chars=args.min_chars,
        fast_extraction=args.fast,
    )


def _cc_language(args: argparse.Namespace) -> Stage:
    from curation.langid import LanguageId

    return LanguageId(model=args.model, threshold=args.threshold)


def _archives(storage: Storage, path: str) -> list[ShardInput]:
    return archive_shards(storage, path) if os.path.isdir(path) else [file_shard(storage, path)]


# stage name -> (build the stage from arguments, find its input shards)
STAGES: dict[str, tuple[Callable[[argparse.Namespace], Stage], Callable]] = {
    "cc_documents": (_cc_documents, _archives),
    "cc_language": (_cc_language, partition_shards),
}


def cmd_stage(args: argparse.Namespace) -> int:
    build, find_inputs = STAGES[args.name]
    storage = Storage("/")
    inputs = find_inputs(storage, os.path.abspath(args.input))
    output = os.path.abspath(args.output)
    manifest = run_stage(
        build(args), inputs, output, storage, LocalExecutor(args.workers), args.force
    )
    _print_summary(manifest, output)
    return 0


def _print_summary(manifest: Manifest, output: str) -> None:
    dropped = sum(manifest.dropped.values())
    print(f"{manifest.stage}: in {manifest.n_in}, kept {manifest.kept}, dropped {dropped}")
    for reason, n in manifest.dropped.items():
        print(f"  dropped {reason}: {n}")
    for name, hist in manifest.histograms.items():
        top = ", ".join(f"{k} {v}" for k, v in list(hist.items())[:12])
        print(f"  {name}: {top}")
    print(f"output: {output}")


def cmd_show(args: argparse.Namespace) -> int:
    storage = Storage("/")
    for path in args.partitions:
        manifest = read_manifest(storage, os.path.abspath(path))
        if manifest is None:
            raise MissingInput(f"no finished partition (no manifest) at {path}")
        _print_summary(manifest, os.path.abspath(path))
    return 0


def cmd_sample_build(args: argparse.Namespace) -> int:
    from curation.sample.build import build_sample_world

    out = build_sample_world(Path(args.out), Path(args.cache), seed=args.seed, force=args.force)
    print(f"sample world: {out}")
    return 0


def cmd_crawls_add(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from assets.partitions import crawls

    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(crawls.name))
        new = [c for c in args.crawls if c not in known]
        if new:
            instance.add_dynamic_partitions(crawls.name, new)
    print(f"crawls partitions: added {new or 'nothing'}; known {sorted(known | set(new))}")
    return 0


def _stage_parser(stages, name: str, input_help: str) -> argparse.ArgumentParser:
    parser = stages.add_parser(name, help=f"run {name}")
    parser.add_argument("--input", required=True, help=input_help)
    parser.add_argument("--output", required=True, help="partition directory to write")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: every CPU)")
    parser.add_argument("--force", action="store_true", help="recompute even if up to date")
    parser.set_defaults(func=cmd_stage)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamapipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stage = commands.add_parser("stage", help="run one curation stage on local files")
    stages = stage.add_subparsers(dest="name", required=True)
    documents = _stage_parser(stages, "cc_documents", "archive file or directory of archives")
    documents.add_argument("--crawl", default="local", help="crawl name recorded in meta")
    documents.add_argument("--format", choices=["wet", "warc"], default="wet")
    documents.add_argument("--min-chars", type=int, default=300)
    documents.add_argument("--fast", action="store_true", help="trafilatura without fallbacks")
    language = _stage_parser(stages, "cc_language", "a cc_documents partition directory")
    language.add_argument("--model", default="bundled:lid.176.ftz", help="fastText lid model")
    language.add_argument("--threshold", type=float, default=0.5)

    show = commands.add_parser("show", help="summarize finished partitions from their manifests")
    show.add_argument("partitions", nargs="+", help="partition directories")
    show.set_defaults(func=cmd_show)

    sample = commands.add_parser("sample", help="the embedded sample world")
    sample_commands = sample.add_subparsers(dest="sample_command", required=True)
    build = sample_commands.add_parser("build", help="build it from Debian packages")
    build.add_argument("--out", default="data/sample")
    build.add_argument("--cache", default=".cache/debian")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true")
    build.set_defaults(func=cmd_sample_build)

    crawls = commands.add_parser("crawls", help="crawl partitions of the Dagster instance")
    crawls_commands = crawls.add_subparsers(dest="crawls_command", required=True)
    add = crawls_commands.add_parser("add", help="register crawl ids as partitions")
    add.add_argument("crawls", nargs="+")
    add.set_defaults(func=cmd_crawls_add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MissingInput as exc:
        print(f"llamapipe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
