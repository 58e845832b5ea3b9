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

GPU benchmarks (`interleaved_staged`) keep the same rounds, but a contender there is a model
to build, compile and warm up first: that set-up stays outside the timed span (its seconds
are reported apart), and where the models cannot all stay in memory it is redone before each
turn. The timed span is bracketed by device synchronizations, so queued kernels count in it.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def _nothing() -> None:
    """The default hook: no device to synchronize, nothing held to release."""


@dataclass(frozen=True)
class Staged:
    """A contender with a set-up that must not be timed: on a GPU, building the model,
    compiling it and warming it up. `run` is the timed work and returns the items it
    processed; `release` frees what `setup` holds (device memory) and must tolerate a
    `setup` that failed half-way."""

    name: str
    setup: Callable[[], None]
    run: Callable[[], int]
    release: Callable[[], None] = _nothing


@dataclass
class StagedTiming(Timing):
    """A `Timing` with the seconds of every set-up (the first is the cold one: compilation
    included) and, for a contender without a full set of rounds, why: `error` (it raised, or
    ran past the budget) or `skipped` (never started: the budget would not hold it)."""

    setup_s: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    def complete(self, rounds: int) -> bool:
        return self.error is None and self.skipped is None and len(self.seconds) >= rounds

    def missing(self, rounds: int) -> dict[str, str]:
        """Why there is no rate, for a result row: {"error": ...} or {"skipped": ...}; empty
        when every round was timed."""
        if self.error is not None:
            return {"error": self.error}
        if self.skipped is not None:
            return {"skipped": self.skipped}
        if len(self.seconds) < rounds:
            return {"skipped": f"{len(self.seconds)} of {rounds} rounds"}
        return {}

    def turn_note(self) -> str:
        """A progress line after one of this contender's turns."""
        if self.skipped is not None:
            return f"{self.name}: skipped, {self.skipped}"
        if self.error is not None:
            return f"{self.name}: failed in round {len(self.seconds)}: {self.error}"
        note = f"{self.name}: round {len(self.seconds) - 1}, {self.seconds[-1]:.4f} s"
        if len(self.seconds) == 1:
            note += f" after set-up {' + '.join(f'{s:.1f}' for s in self.setup_s)} s"
        elif len(self.setup_s) > 1:  # rebuilt for every turn
            note += f" after a {self.setup_s[-1]:.1f} s rebuild"
        return note

    def as_dict(self) -> dict:
        return {
            **super().as_dict(),
            "setup_s": self.setup_s,
            "error": self.error,
            "skipped": self.skipped,
        }


class Timeout(Exception):
    """A turn ran past the budget left when it started."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Timeout` in the main thread after `seconds` (checked between Python bytecodes,
    so a long kernel or compile step ends first); no limit when `seconds` is infinite."""
    if math.isinf(seconds):
        yield
        return

    def expire(*_: object) -> None:
        raise Timeout(f"over the budget left ({seconds:.1f} s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interleaved_staged(
    contenders: Sequence[Staged],
    rounds: int = MIN_ROUNDS,
    *,
    resident: bool,
    budget_s: float = math.inf,
    synchronize: Callable[[], None] = _nothing,
    after_turn: Callable[[StagedTiming], None] = lambda timing: None,
) -> dict[str, StagedTiming]:
    """`interleaved` for contenders with an untimed set-up, in `rounds` rounds.

    Round 0 takes the contenders in the listed order, each set up cold (its warm-up) and then
    timed once; later rounds rotate the order. `resident`: every contender stays set up until
    the end (they must fit in memory together). Otherwise each is released after every turn
    and set up again before the next (a rebuild: compilation caches make it short), so only
    one holds the device at a time; in round 0 it is then built twice, cold (compiling, which
    fills the caches) and once more as every later turn will, so that each timed run follows
    the same kind of rebuild and the budget estimate below knows a rebuild's cost. Set-up
    seconds are recorded (`setup_s`, the cold one first), never timed.

    Budget: a contender starts round 0 only if its round 0 and every later round still fit in
    `budget_s`, estimated from the contenders so far (its round 0 as long as the slowest one
    yet, a later round as long as their last turns, plus the slowest once more for itself);
    otherwise it is skipped. Every turn runs under a `time_limit` of the budget left. A turn
    that raises (out of memory, a compile error, the time limit) ends that contender alone:
    its error is kept, its device memory released and the others go on. `after_turn` gets the
    contender's timing after each of its turns (to report progress and save partial results).
    """
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds (the minimum of fewer is noise)")
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names repeat: {names}")
    started = time.monotonic()
    timings = {c.name: StagedTiming(c.name) for c in contenders}
    first_turns: list[float] = []  # round 0's seconds, per admitted contender
    later_turns: list[float] = []  # a later turn's seconds, per admitted contender

    def set_up(contender: Staged, timing: StagedTiming) -> None:
        began = time.perf_counter()
        contender.setup()
        synchronize()
        timing.setup_s.append(time.perf_counter() - began)

    def turn(contender: Staged, first: bool) -> None:
        timing = timings[contender.name]
        left = budget_s - (time.monotonic() - started)
        try:
            if left <= 0:
                raise Timeout(f"budget spent before round {len(timing.seconds)}")
            with time_limit(left):
                if first or not resident:
                    set_up(contender, timing)
                if first and not resident:
                    contender.release()
                    set_up(contender, timing)
                synchronize()
                began = time.perf_counter()
                timing.items = contender.run()
                synchronize()
                timing.seconds.append(time.perf_counter() - began)
                if not resident:
                    contender.release()
        except Exception as e:  # an OOM or compile error must not lose the other contenders
            timing.error = repr(e)[:500]
            print("".join(traceback.format_exc().splitlines(True)[-30:]), file=sys.stderr)
            contender.release()
        after_turn(timing)

    for contender in contenders:
        timing = timings[contender.name]
        elapsed = time.monotonic() - started
        later = sum(later_turns) + max(later_turns, default=0.0)
        need = max(first_turns, default=0.0) + (rounds - 1) * later
        if elapsed + need > budget_s:
            timing.skipped = f"budget: {elapsed:.0f} s used, about {need:.0f} s more needed"
            after_turn(timing)
            continue
        began = time.monotonic()
        turn(contender, first=True)
        if timing.error is None:
            first_turns.append(time.monotonic() - began)
            rebuild = 0.0 if resident else timing.setup_s[-1]
            later_turns.append(rebuild + timing.seconds[0])
    for r in range(1, rounds):
        alive = [c for c in contenders if timings[c.name].complete(r)]
        for i in rotation(len(alive), r):
            turn(alive[i], first=False)
    if resident:
        for contender in contenders:
            timing = timings[contender.name]
            if timing.setup_s and timing.error is None:
                contender.release()
    return timings


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
