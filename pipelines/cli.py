"""`llamapipe`: the core without Dagster, for people running single stages on their own files.

The commands call the same stage classes and runner the assets call; only `crawls add` talks
to a Dagster instance (imported lazily, so the rest starts fast).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from curation.executor import LocalExecutor
from curation.inputs import MissingInput, archive_shards, file_shard, partition_shards
from curation.manifest import Manifest
from curation.runner import read_manifest, run_stage
from curation.stage import ShardInput, Stage
from curation.storage import Storage


def _archives(storage: Storage, path: str) -> list[ShardInput]:
    return archive_shards(storage, path) if os.path.isdir(path) else [file_shard(storage, path)]


def _stages() -> dict[str, tuple[type[Stage], Callable]]:
    """Stage name -> (stage class, how to find its input shards). Imported on use."""
    from curation.cc_documents import CCDocuments
    from curation.langid import LanguageId
    from curation.line_dedup import LineDedup

    return {
        CCDocuments.name: (CCDocuments, _archives),
        LineDedup.name: (LineDedup, partition_shards),
        LanguageId.name: (LanguageId, partition_shards),
    }


def cmd_stage(args: argparse.Namespace) -> int:
    cls, find_inputs = _stages()[args.name]
    stage = cls(**{name: getattr(args, name) for name in _config_fields(cls)})
    storage = Storage("/")
    inputs = find_inputs(storage, os.path.abspath(args.input))
    output = os.path.abspath(args.output)
    manifest = run_stage(stage, inputs, output, storage, LocalExecutor(args.workers), args.force)
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


def _config_fields(cls: type[Stage]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("config", True)}


def _add_stage_parser(stages, cls: type[Stage], input_help: str) -> None:
    """Options straight from the stage's config fields, so the CLI never drifts from them."""
    parser = stages.add_parser(cls.name, help=(cls.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--input", required=True, help=input_help)
    parser.add_argument("--output", required=True, help="partition directory to write")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: every CPU)")
    parser.add_argument("--force", action="store_true", help="recompute even if up to date")
    hints = typing.get_type_hints(cls)
    for name, field in _config_fields(cls).items():
        flag = "--" + name.replace("_", "-")
        hint = hints[name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            parser.add_argument(flag, dest=name, required=True, type=str)
            continue
        if hint is bool:
            parser.add_argument(
                flag, dest=name, default=default, action=argparse.BooleanOptionalAction
            )
        elif hint in (int, float, str):
            parser.add_argument(flag, dest=name, default=default, type=hint)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, dest=name, default=default, choices=typing.get_args(hint))
        else:  # containers: JSON on the command line
            parser.add_argument(flag, dest=name, default=default, type=json.loads, help="JSON")
    parser.set_defaults(func=cmd_stage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamapipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stage = commands.add_parser("stage", help="run one curation stage on local files")
    stages = stage.add_subparsers(dest="name", required=True)
    for cls, find_inputs in _stages().values():
        source = "archive file or directory" if find_inputs is _archives else "partition dir"
        _add_stage_parser(stages, cls, f"input: {source}")

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
