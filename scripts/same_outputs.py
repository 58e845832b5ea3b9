"""Are two data roots' outputs the same? For refactors that must not change a byte.

    python scripts/same_outputs.py BEFORE AFTER      # two data roots (each with stages/, ...)

A root is a directory or a pyarrow URI (`s3://bucket/data`, with AWS_ENDPOINT_URL for a
server of one's own): a run on an object store is compared with a local one the same way
(`differences`, importable; tests/test_object_store_graph.py).

Compares every file under `stages/`, `models/` and `card/` of the two roots: the same files,
with the same bytes. What a run cannot reproduce is compared without it, and said here:
- `code_version` in stage manifests (a refactor may bump it; nothing else may change);
- the trainer's timings (`tokens_per_s`, `mean_tokens_per_s`) in `metrics.jsonl` and
  `result.json`, and everything under a run's `launches/<Dagster run id>/` and
  `tensorboard/` (ids and wall-clock times in their names and records);
- the random id torch.distributed.checkpoint writes into each checkpoint's `.metadata`;
- the Python and NumPy generator states in `rng-rank*.json`: the trainer draws only from
  torch's (compared), and the other two start from the OS's entropy in every process.
Exit status 0 when everything else is byte-identical; the differences are listed otherwise.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import sys
from pathlib import Path

import pyarrow.fs as pafs

from curation.core.storage import Storage

ROOTS = ("stages", "models", "card")
VOLATILE_DIRS = {"launches", "tensorboard"}
TIMINGS = {"tokens_per_s", "mean_tokens_per_s"}
UNSEEDED = {"python", "numpy"}
SAVE_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def files(root: str | Path) -> dict[str, str]:
    """Relative name -> path in the root's filesystem of every compared file under `root`,
    a local directory or a pyarrow URI (`s3://bucket/data`): runs on object stores are
    compared with local ones the same way."""
    storage = Storage(str(root))
    found = {}
    for top in ROOTS:
        selector = pafs.FileSelector(storage.path(top), recursive=True, allow_not_found=True)
        for info in storage.fs.get_file_info(selector):
            relative = posixpath.relpath(info.path, storage.base)
            if info.type == pafs.FileType.File and not set(relative.split("/")) & VOLATILE_DIRS:
                found[relative] = info.path
    return dict(sorted(found.items()))


def _without(value, keys: set[str]):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def comparable(name: str, data: bytes):
    """The file's content as compared: bytes, or JSON without what a run cannot reproduce."""
    if name.endswith("_manifest.json") and name.startswith("stages/"):
        return _without(json.loads(data), {"code_version"})
    if "/checkpoints/" in name and name.endswith("/.metadata"):
        return SAVE_ID.sub(b"<save id>", data)
    if "/checkpoints/" in name and posixpath.basename(name).startswith("rng-rank"):
        return _without(json.loads(data), UNSEEDED)
    if name.endswith(("metrics.jsonl", "result.json")) and "/runs/" in name:
        lines = data.decode().splitlines() if name.endswith(".jsonl") else [data.decode()]
        return [_without(json.loads(line), TIMINGS) for line in lines if line.strip()]
    return data


def differences(before: str | Path, after: str | Path) -> list[str]:
    """What differs between the outputs of two data roots (local paths or URIs), beyond what
    a run cannot reproduce (`comparable`): files only in one, files whose content differs."""
    a, b = files(before), files(after)
    read_a, read_b = Storage(str(before)).read_bytes, Storage(str(after)).read_bytes
    problems = [f"only in {before}: {name}" for name in sorted(a.keys() - b.keys())]
    problems += [f"only in {after}: {name}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        if comparable(name, read_a(a[name])) != comparable(name, read_b(b[name])):
            problems.append(f"differs: {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", help="a data root: a directory or a URI (s3://bucket/data)")
    parser.add_argument("after", help="the other data root")
    args = parser.parse_args(argv)
    problems = differences(args.before, args.after)
    compared = len(files(args.before))
    for line in problems:
        print(line)
    print(f"{compared} files compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
