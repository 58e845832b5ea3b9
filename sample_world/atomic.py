"""A world built whole or not at all: what `llamapipe sample build` and `sample scale` share."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def build_into(out: Path, fill: Callable[[Path], None]) -> None:
    """Run `fill` on a temporary directory beside `out`, then rename it into place: an
    interrupted build leaves the previous world or none, never half of one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
