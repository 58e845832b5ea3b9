"""What every benchmark shares: interleaved timing rounds, the table they print, the JSON
they leave, and the profile that says where the time goes when a goal is missed.

Why interleaved. This machine's speed drifts by tens of percent within an hour (other jobs
share its cores), so contenders timed one after another are timed on different machines. Here
every round runs each contender once, in an order rotated by one each round, so a slow spell
lands on all of them alike; the minimum over rounds (the least disturbed run) is each one's
time, and every ratio is made from those minima. A warm-up run of each contender comes first
and is not counted: imports, model loads, page cache and allocator growth are start-up, not
throughput. `interleaved_groups` runs several comparisons in the same rounds, which also
spreads each stage's rounds over the whole run (for absolute rates, not only ratios).
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import platform
import pstats
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

MIN_ROUNDS = 3

Row = tuple[str, float, int, str]
# A contender returns the items it processed, optionally with the seconds of its named parts
# (e.g. a chain's extraction and language id), each kept at its own minimum over the rounds.
Outcome = int | tuple[int, dict[str, float]]


@dataclass(frozen=True)
class Contender:
    """One way of doing the work being compared: a callable on the same input as the others."""

    name: str
    run: Callable[[], Outcome]


@dataclass
class Timing:
    """Every measured round of one contender (warm-up excluded)."""

    name: str
    seconds: list[float] = field(default_factory=list)
    items: int = 0
    parts: dict[str, list[float]] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def rate(self) -> float:
        return self.items / self.best if self.best > 0 else float("inf")

    @property
    def spread(self) -> float:
        """Slowest round over fastest, minus one: how much the machine moved under it."""
        return max(self.seconds) / self.best - 1

    def part(self, name: str) -> float:
        return min(self.parts[name])

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "items": self.items,
            "best_s": self.best,
            "rounds_s": self.seconds,
            "rate": self.rate,
            "parts_best_s": {k: min(v) for k, v in self.parts.items()},
        }


def rotation(n: int, round_index: int) -> list[int]:
    """Contender order in a round: 0..n-1 rotated by the round, so no contender always runs
    first (after a pause) or last (after the others warmed the caches)."""
    shift = round_index % n if n else 0
    return list(range(shift, n)) + list(range(shift))


def _timed(contender: Contender) -> tuple[float, int, dict[str, float]]:
    started = time.perf_counter()
    outcome = contender.run()
    seconds = time.perf_counter() - started
    items, parts = outcome if isinstance(outcome, tuple) else (outcome, {})
    return seconds, items, parts


def interleaved(
    contenders: Sequence[Contender], rounds: int = MIN_ROUNDS, warmup: bool = True
) -> dict[str, Timing]:
    """Time every contender in `rounds` interleaved rounds (after one warm-up run each, not
    counted); the result, by name, keeps every round so the report can show the spread."""
    return interleaved_groups({"": contenders}, rounds, warmup)[""]


def interleaved_groups(
    groups: Mapping[str, Sequence[Contender]], rounds: int = MIN_ROUNDS, warmup: bool = True
) -> dict[str, dict[str, Timing]]:
    """Several comparisons in the same rounds: each round runs every group (the groups'
    order rotated too), a group's contenders back to back in their rotated order. So the
    contenders compared with each other stay minutes apart at most, while each one's rounds
    are spread over the whole run: a slow spell of a few minutes (this machine has them)
    lands on one round of each, never on all of one stage's, and the minimum skips it."""
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds (the minimum of fewer is noise)")
    for contenders in groups.values():
        names = [c.name for c in contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"contender names repeat: {names}")
    if warmup:
        for contenders in groups.values():
            for contender in contenders:
                contender.run()
    timings = {g: {c.name: Timing(c.name) for c in cs} for g, cs in groups.items()}
    keys = list(groups)
    for r in range(rounds):
        for g in rotation(len(keys), r):
            contenders = groups[keys[g]]
            for i in rotation(len(contenders), r):
                _record(timings[keys[g]][contenders[i].name], contenders[i])
    return timings


def _record(timing: Timing, contender: Contender) -> None:
    seconds, items, parts = _timed(contender)
    timing.seconds.append(seconds)
    timing.items = items
    for part, part_seconds in parts.items():
        timing.parts.setdefault(part, []).append(part_seconds)


def speed_ratio(candidate: Timing, reference: Timing) -> float:
    """How many times faster `candidate` did the same input than `reference` (the ratio of
    their minimum times: both ran on the same input, whatever each counts as an item)."""
    return reference.best / candidate.best


def print_rows(rows: Sequence[Row], label: str, unit: str) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{label.ljust(width)}  {unit:>10}  {'items':>7}  ratio")
    for name, rate, n, note in rows:
        print(f"{name.ljust(width)}  {rate:10.1f}  {n:7d}  {note}")


def timing_row(timing: Timing, note: str = "", name: str | None = None) -> Row:
    """A table row: rate from the minimum, and the rounds' spread after the note."""
    spread = f"[min of {len(timing.seconds)}, spread {timing.spread:.0%}]"
    return (name or timing.name, timing.rate, timing.items, f"{note} {spread}".strip())


def ratio_note(candidate: Timing, references: Sequence[tuple[Timing | None, str]]) -> str:
    """`0.97x bare trafilatura, 2.31x datatrove` for every reference that was measured."""
    return ", ".join(
        f"{speed_ratio(candidate, ref):.2f}x {label}" for ref, label in references if ref
    )


def profile_top(fn: Callable[[], object], limit: int = 15) -> str:
    """Where `fn`'s time goes: its `limit` most expensive functions by own time, then by
    cumulative time (one cProfile run; the profiler roughly doubles the time of Python-heavy
    code, so read the shares, not the seconds)."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return "\n".join(line for line in lines if not line.startswith("   Random listing"))


def machine_note() -> str:
    """The header line every results file starts with: when, where, how loaded."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{date.today().isoformat()}, {platform.machine()} {os.cpu_count()} CPUs "
        f"(shared), load average {load} at start"
    )


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
        f.write("\n")
