"""The bytes of token shards, wherever they are: memory maps on a local or mounted disk, range
requests on an object store.

The loader reads sequences in a keyed random order, a few KB each from anywhere in a split of
any size. From a store, each read is therefore one range request for exactly the tokens asked
(a whole-shard download would move a shard to use a sequence of it), and since the order is
known in advance the loader asks for the next batches' ranges before it needs them: those
requests run on a small thread pool and their answers wait in a cache bounded by a number of
ranges, so the trainer waits on the store's latency once, not once per sequence. Both readers
give the same tokens for the same range, so batches and resume do not depend on where the
shards are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from curation.core.storage import Storage

# (shard index, first token, end token) of one read
Range = tuple[int, int, int]


class MappedShards:
    """Shards on this machine's filesystem, memory-mapped lazily in the process that reads
    (each DataLoader worker maps its own; maps are not pickled)."""

    def __init__(self, paths: Sequence[str], dtype: np.dtype):
        self.paths, self.dtype = list(paths), dtype
        self._maps: list[np.memmap] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def read(self, index: int, lo: int, hi: int) -> np.ndarray:
        if self._maps is None:
            self._maps = [np.memmap(p, dtype=self.dtype, mode="r") for p in self.paths]
        return self._maps[index][lo:hi]

    def prefetch(self, ranges: Iterable[Range]) -> None:
        """The page cache reads ahead for memory maps."""


class StoreShards:
    """Shards in an object store, read by range with read-ahead (see the module docstring).
    Threads, open files and pending reads belong to the process that reads: none is pickled
    into DataLoader workers."""

    def __init__(
        self,
        storage: Storage,
        paths: Sequence[str],
        dtype: np.dtype,
        threads: int = 8,
        max_pending: int = 1024,
    ):
        self.storage, self.paths, self.dtype = storage, list(paths), np.dtype(dtype)
        self.threads, self.max_pending = threads, max_pending
        self._reset()

    def _reset(self) -> None:
        self._files: dict[int, pa.NativeFile] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[Range, Future] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("_files", "_pool", "_pending"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def read(self, index: int, lo: int, hi: int) -> np.ndarray:
        pending = self._pending.pop((index, lo, hi), None)
        return pending.result() if pending is not None else self._fetch(index, lo, hi)

    def prefetch(self, ranges: Iterable[Range]) -> None:
        """Start reading `ranges` in the background; the oldest pending read is dropped when
        the cache is full (it is read again if it is ever asked for)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="shard-read")
        for key in ranges:
            if key in self._pending:
                continue
            if len(self._pending) >= self.max_pending:
                self._pending.pop(next(iter(self._pending)))
            self._pending[key] = self._pool.submit(self._fetch, *key)

    def _fetch(self, index: int, lo: int, hi: int) -> np.ndarray:
        size = self.dtype.itemsize
        if index not in self._files:
            self._files[index] = self.storage.fs.open_input_file(self.paths[index])
        data = self._files[index].read_at((hi - lo) * size, lo * size)
        if len(data) != (hi - lo) * size:
            raise OSError(f"{self.paths[index]}: short read of tokens [{lo}, {hi})")
        return np.frombuffer(data, dtype=self.dtype)
