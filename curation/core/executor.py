"""Shard executors: how the per-shard map runs. Outputs never depend on which one ran it.

The local executor is a process pool; `workers=1` runs inline (no pickling, easy to debug).
Ray (`ray_executor.py`) and Slurm job arrays (`slurm_executor.py`) plug in behind the same
`map_unordered`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cpus() -> int:
    """CPUs this process may really use: affinity, capped by a cgroup v2 CPU quota.

    `os.cpu_count()` reports the host's cores, which in a container can be far more than the
    quota; sizing pools by it oversubscribes the machine.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus or 1, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus or 1)


class ShardExecutor(Protocol):
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Apply `fn` to every item; yield results as they finish, raise the first failure
        only after every other item has finished (so finished shards are kept for resume)."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """A process pool of `workers` processes (0 means one per available CPU)."""

    workers: int = 0

    @property
    def size(self) -> int:
        return self.workers or available_cpus()

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        items = list(items)
        if self.size == 1 or len(items) <= 1:
            yield from _inline(fn, items)
            return
        # spawn, not fork: the caller may be a Dagster step or a webserver with live threads.
        context = multiprocessing.get_context("spawn")
        failure: BaseException | None = None
        with ProcessPoolExecutor(min(self.size, len(items)), mp_context=context) as pool:
            futures = [pool.submit(fn, item) for item in items]
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the rest
                    failure = failure or exc
        if failure is not None:
            raise failure


def task_name(fn: Callable) -> str:
    """What a cluster shows for a map's tasks: the shard function's class or name."""
    target = getattr(fn, "func", fn)  # functools.partial
    return getattr(target, "__qualname__", None) or type(target).__qualname__


def _inline(fn: Callable[[T], R], items: list[T]) -> Iterator[R]:
    failure: BaseException | None = None
    for item in items:
        try:
            yield fn(item)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the rest
            failure = failure or exc
    if failure is not None:
        raise failure
