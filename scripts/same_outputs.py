"""Are two data roots' outputs the same? For refactors that must not change a byte.

    python scripts/same_outputs.py BEFORE AFTER      # two data roots (each with stages/, ...)

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

ROOTS = ("stages", "models", "card")
VOLATILE_DIRS = ("launches", "tensorboard")
TIMINGS = {"tokens_per_s", "mean_tokens_per_s"}
UNSEEDED = {"python", "numpy"}
SAVE_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def files(root: Path) -> dict[str, Path]:
    found = {}
    for top in ROOTS:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not set(relative.parts) & set(VOLATILE_DIRS):
                found[relative.as_posix()] = path
    return found


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


def differences(before: Path, after: Path) -> list[str]:
    a, b = files(before), files(after)
    problems = [f"only in {before}: {name}" for name in sorted(a.keys() - b.keys())]
    problems += [f"only in {after}: {name}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        if comparable(name, a[name].read_bytes()) != comparable(name, b[name].read_bytes()):
            problems.append(f"differs: {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    problems = differences(args.before, args.after)
    compared = len(files(args.before))
    for line in problems:
        print(line)
    print(f"{compared} files compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
