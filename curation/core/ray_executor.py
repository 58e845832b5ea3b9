"""The shard map on a Ray cluster: one Ray task per item, behind the `ShardExecutor` protocol.

Ray is imported only when a map runs, so `curation` imports (and the local executor works)
without it. The outputs do not depend on the executor: each item is processed by the same
function either way, and every stage names its outputs by item, never by arrival order.

Code on the workers: by default the driver ships its own `curation` package to the cluster
(Ray runtime env `py_modules`), so every task runs exactly the code that computed the run's
fingerprint, even when a node has an older install. The third-party dependencies (pyarrow,
fastText, KenLM, ...) must be installed on the nodes; `ship_code=False` relies on the nodes'
own install of this project for the code too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from curation.core.executor import task_name

T = TypeVar("T")
R = TypeVar("R")

RAY_MISSING = "the Ray shard executor needs ray: run `make setup` (or pip install -e '.[ray]')"


@dataclass(frozen=True)
class RayExecutor:
    """Runs each item as a Ray task on the cluster at `address`.

    `address`: "auto" (the cluster this node belongs to, or RAY_ADDRESS), "ray://head:10001"
    (Ray Client, from outside the cluster), "10.0.0.1:6379" (the head's GCS, from a node of
    the cluster), or "" to start a local single-node Ray in this process.
    `num_cpus`: CPUs each task reserves (a stage that uses more threads per shard asks more).
    `max_in_flight`: tasks submitted at once; more are submitted as results come back. It
    bounds the cost of each `ray.wait` and the refs held for a crawl of 90,000 shards while
    still queueing enough work for the cluster (and its autoscaler) to use every node.
    """

    address: str = "auto"
    num_cpus: float = 1.0
    max_in_flight: int = 1000
    ship_code: bool = True

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        ray = self.connect()
        task = ray.remote(_apply).options(num_cpus=self.num_cpus, name=task_name(fn))
        fn_ref = ray.put(fn)  # once in the object store, not pickled again per task
        todo = iter(items)
        pending: list = []
        failure: BaseException | None = None
        try:
            while True:
                for item in todo:
                    pending.append(task.remote(fn_ref, item))
                    if len(pending) >= self.max_in_flight:
                        break
                if not pending:
                    break
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the rest
                    failure = failure or _original(exc)
                    continue
                yield result
        finally:
            for ref in pending:  # the consumer stopped early: free the cluster
                ray.cancel(ref)
        if failure is not None:
            raise failure

    def connect(self) -> Any:
        """The `ray` module, connected to the cluster (once per process; a connection that
        already exists, e.g. the caller's own `ray.init`, is used as it is)."""
        try:
            import ray
        except ImportError as exc:
            raise ImportError(RAY_MISSING) from exc
        if not ray.is_initialized():
            ray.init(
                address=self.address or None,
                runtime_env=_code_env() if self.ship_code else None,
                logging_level=logging.WARNING,
            )
        return ray


def _apply(fn: Callable[[T], R], item: T) -> R:
    """The Ray task: a plain module-level function, so Ray can import it on every worker."""
    return fn(item)


def _code_env() -> dict:
    """A runtime env that ships this process's `curation` package to the workers."""
    import curation

    return {"py_modules": [os.path.dirname(os.path.abspath(curation.__file__))]}


def _original(exc: BaseException) -> BaseException:
    """The exception the task raised, as the process pool would give it: its own type and
    message, with Ray's error (and the worker's traceback) as its cause. Ray's own failures
    (a worker or node lost, a task cancelled) are returned unchanged."""
    from ray.exceptions import RayTaskError

    cause = getattr(exc, "cause", None)
    if isinstance(exc, RayTaskError) and isinstance(cause, Exception):
        cause.__cause__ = exc
        return cause
    return exc
