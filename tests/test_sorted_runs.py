"""The external sort of in-shard joins: key order, equal keys in the order added, any bound."""

import random
import tempfile
from pathlib import Path

import pytest

from curation.core.sorted_runs import SortedRuns


def runs_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("llamapipe-runs-*"))


@pytest.mark.parametrize("bound", [10**9, 2_000, 1])  # in memory, a few runs, one run a row
def test_rows_come_back_in_key_order_equal_keys_in_the_order_added(bound):
    rng = random.Random(bound)
    rows = [((rng.randrange(3), rng.randrange(50)), {"n": n, "text": "é\t\n"}) for n in range(500)]
    before = runs_dirs()
    with SortedRuns(bound) as runs:
        for key, value in rows:
            runs.add(key, value)
        spilled = runs_dirs() - before
        assert list(runs.merged()) == sorted(rows, key=lambda row: row[0])
    assert bool(spilled) == (bound < 10**9) and not runs_dirs() - before
