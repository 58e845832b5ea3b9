"""``python -m curation.sample OUT_DIR``: build the sample world without the Dagster CLI."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from curation.sample.build import build_sample_world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.sample", description=__doc__)
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("data/sample"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/debian"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--max-pages", type=int, default=None, help="small world (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = build_sample_world(args.out_dir, args.cache_dir, args.seed, args.force, args.max_pages)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
