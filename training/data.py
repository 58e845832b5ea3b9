"""The pre-training data loader over `tokenized_shards`: packed sequences, seeded order, exact
resume, split across ranks and DataLoader workers.

Stream and sequences. A split (`train/` or `validation/`) is read as one token stream, its
shards memory-mapped in order; documents are packed across boundaries, each framed
`<s> ids </s>` by the shard writer (curation/tokens/shards.py), so the model learns every
document from the `<s>` that starts prompts at inference. Sequence i is the window of
`seq_len + 1` tokens starting at i * seq_len: inputs are its first `seq_len` tokens, targets
its last `seq_len`. Consecutive windows overlap by one token, so every next-token transition
of the stream is a target exactly once per epoch and none is lost at a boundary; there are
(n_tokens - 1) // seq_len sequences. A window may start inside a document and hold several:
packing wastes no position on padding.

Order. Epoch e visits the sequences in the order of a keyed pseudo-random permutation of
[0, n): a Feistel network (6 rounds, keyed by BLAKE2b of seed and epoch) on the smallest
power-of-4 domain >= n, cycle-walked back into [0, n). It is a bijection computed per index
in O(1) time and memory, so a 1T-token split (~500M sequences of 2048) needs no permutation
array, and any position can be looked up directly, which is what makes resume free.

Positions, ranks, workers. The run consumes one global sequence stream: position g is
sequence perm_{g // n}(g % n) (epochs follow each other without a gap). A step of the whole
job takes `world_size * batch_size` consecutive positions; rank r takes the r-th block of
`batch_size`. Inside a rank, DataLoader worker w of k produces the rank's local steps w,
w + k, w + 2k, ..., and the DataLoader returns them round-robin, i.e. in step order. So every
position goes to exactly one (rank, step), each step to exactly one worker, and the batches a
rank sees do not depend on the number of workers.

Resume. The state is `consumed_sequences`, a global count, identical on every rank: a
resumed loader starts its first batch at that position. Because the position is global, a
run may resume with another number of workers, another world size or another batch size: it
continues the same global stream from the same sequence (resuming with a world size that
does not divide the position evenly is fine; the blocks are cut from the position on). The
state also records seed, sequence geometry and the split's sequence count, and
`load_state_dict` refuses a state made for different data or geometry, which would silently
repeat or skip data.

Where. The shards are memory-mapped from a local or mounted filesystem, or read by range
from an object store with read-ahead (`training.shard_files`); the batches are the same.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curation.core.manifest import MANIFEST_NAME
from curation.core.storage import Storage
from curation.tokens.shards_manifest import TokenShardsManifest, read_shards_manifest
from curation.tokens.tokenizer import MODEL_NAME
from training.shard_files import MappedShards, Range, StoreShards

BIN_SUFFIX = ".bin"
READAHEAD_BATCHES = 4  # a worker's batches whose tokens are requested before they are needed
_ROUNDS = 6


def tokens_per_step(seq_len: int, batch_size: int, world_size: int = 1, grad_accum: int = 1) -> int:
    """Target tokens one optimizer step consumes across the job."""
    return seq_len * batch_size * world_size * grad_accum


@dataclass(frozen=True)
class LoaderConfig:
    seq_len: int = 2048
    batch_size: int = 1  # sequences per rank per batch (a micro-batch)
    seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.batch_size < 1:
            raise ValueError("seq_len must be >= 2 and batch_size >= 1")


def shards_manifest(directory: str) -> TokenShardsManifest:
    """The manifest of the tokenized_shards output `directory`: a local path or a store URI."""
    storage = Storage(directory)
    manifest = read_shards_manifest(storage, storage.base)
    if manifest is None:
        raise FileNotFoundError(
            f"{posixpath.join(directory, MANIFEST_NAME)} not found: "
            "data_dir must be a tokenized_shards output"
        )
    return manifest


def tokenizer_file(directory: str) -> str:
    """The SentencePiece model `tokenized_shards` keeps beside its shards, as a file on this
    machine (fetched into the cache from a store) for SentencePiece to open."""
    storage = Storage(directory)
    return storage.local_copy(storage.path(MODEL_NAME))


class TokenStream:
    """One split of a tokenized-shards directory (a local path or a store URI) as a single
    token array, read through `training.shard_files`.

    Shards written before documents were framed `<s> ids </s>` (their manifest's format has
    no `bos_id`) are refused: they would train another convention than the one evaluation and
    generation use."""

    def __init__(self, directory: str, split: str = "train"):
        manifest = shards_manifest(directory)  # refuses shards without the framing
        self.bos_id, self.eos_id = manifest.format.bos_id, manifest.format.eos_id
        shards = manifest.splits[split].shards
        storage = Storage(directory)
        paths = [storage.path(split, s.name + BIN_SUFFIX) for s in shards]
        dtype = manifest.format.numpy_dtype
        self.files = (
            MappedShards(paths, dtype) if storage.is_local else StoreShards(storage, paths, dtype)
        )
        sizes = np.array([s.tokens for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self.n_tokens = int(self.starts[-1])

    def ranges(self, start: int, stop: int) -> list[Range]:
        """Tokens [start, stop) of the stream as (shard, first, end) pieces, in order."""
        if not 0 <= start <= stop <= self.n_tokens:
            raise IndexError(f"[{start}, {stop}) outside a stream of {self.n_tokens} tokens")
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces, pos = [], start
        while pos < stop:
            local = pos - int(self.starts[first])
            take = min(stop, int(self.starts[first + 1])) - pos
            pieces.append((first, local, local + take))
            pos += take
            first += 1
        return pieces

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream, across shard boundaries."""
        pieces = [self.files.read(*piece) for piece in self.ranges(start, stop)]
        return np.concatenate(pieces) if len(pieces) != 1 else np.array(pieces[0])

    def prefetch(self, start: int, stop: int) -> None:
        """Tokens [start, stop) will be read soon."""
        self.files.prefetch(self.ranges(start, stop))


def _blake64(*parts: int) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a fast, well-mixing 64-bit hash (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Permutation:
    """A keyed bijection of [0, n): Feistel rounds on 2 * half_bits, cycle-walked into [0, n)."""

    def __init__(self, n: int, seed: int, epoch: int):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = n
        self.half_bits = max(1, math.ceil(math.log2(n) / 2))
        self.mask = np.uint64((1 << self.half_bits) - 1)
        self.keys = [np.uint64(_blake64(seed, epoch, r)) for r in range(_ROUNDS)]

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half_bits)
        left, right = x >> h, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << h) | right

    def __call__(self, index: np.ndarray) -> np.ndarray:
        x = self._feistel(np.asarray(index, dtype=np.uint64))
        outside = x >= np.uint64(self.n)
        while outside.any():
            x[outside] = self._feistel(x[outside])
            outside = x >= np.uint64(self.n)
        return x.astype(np.int64)


class SequenceDataset(IterableDataset):
    """One rank's batches from global position `start` on, endless (epochs follow each other);
    each DataLoader worker yields every k-th of the rank's steps."""

    def __init__(
        self,
        stream: TokenStream,
        config: LoaderConfig,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.stream, self.config = stream, config
        self.rank, self.world_size, self.start = rank, world_size, start
        self.n_sequences = num_sequences(stream.n_tokens, config)
        self._permutations: dict[int, Permutation] = {}

    def positions(self, step: int) -> np.ndarray:
        """Global stream positions of this rank's batch at local step `step`."""
        b = self.config.batch_size
        first = self.start + (step * self.world_size + self.rank) * b
        return np.arange(first, first + b, dtype=np.int64)

    def sequence_indices(self, step: int) -> np.ndarray:
        """Which sequences (0 .. n_sequences - 1) make up the batch at local step `step`."""
        positions = self.positions(step)
        epochs, offsets = np.divmod(positions, self.n_sequences)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs).tolist():
            here = epochs == epoch
            out[here] = self._permutation(epoch)(offsets[here])
        return out

    def _permutation(self, epoch: int) -> Permutation:
        if epoch not in self._permutations:
            self._permutations = {epoch: Permutation(self.n_sequences, self.config.seed, epoch)}
        return self._permutations[epoch]

    def windows(self, step: int) -> list[tuple[int, int]]:
        """The token windows [start, stop) of the batch at local step `step`."""
        seq_len = self.config.seq_len
        return [(i * seq_len, (i + 1) * seq_len + 1) for i in self.sequence_indices(step).tolist()]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), int64 of shape (batch_size, seq_len)."""
        rows = [self.stream.read(start, stop) for start, stop in self.windows(step)]
        tokens = torch.from_numpy(np.stack(rows).astype(np.int64))
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        if info is not None:
            # A scheduler's SIGTERM reaches every process of the job (torchrun signals its
            # process group, Slurm the whole step); a worker killed by it would crash the
            # trainer before its preemption checkpoint. Workers still exit with their parent.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for ahead in range(READAHEAD_BATCHES):
            self._prefetch(worker + ahead * workers)
        step = worker
        while True:
            self._prefetch(step + READAHEAD_BATCHES * workers)
            yield self.batch(step)
            step += workers

    def _prefetch(self, step: int) -> None:
        for start, stop in self.windows(step):
            self.stream.prefetch(start, stop)


def num_sequences(n_tokens: int, config: LoaderConfig) -> int:
    """Sequences in one epoch of a stream of `n_tokens` (each needs seq_len + 1 tokens)."""
    n = (n_tokens - 1) // config.seq_len
    if n < 1:
        raise ValueError(
            f"the split has {n_tokens} tokens, fewer than one sequence of {config.seq_len + 1}"
        )
    return n


class TokenLoader:
    """What the trainer iterates: (inputs, targets) batches for one rank, with an exact,
    resumable position.

    `consumed_sequences` counts the global sequences of every batch handed out (all ranks
    together), so save `state_dict()` after training on every batch taken. Iterating again,
    after `load_state_dict` or not, continues from that position with a fresh DataLoader."""

    def __init__(
        self,
        directory: str,
        split: str = "train",
        config: LoaderConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.config = config or LoaderConfig()
        self.stream = TokenStream(directory, split)
        self.rank, self.world_size = rank, world_size
        self.n_sequences = num_sequences(self.stream.n_tokens, self.config)
        self.consumed_sequences = 0

    @property
    def global_batch(self) -> int:
        """Sequences one batch step consumes across all ranks."""
        return self.world_size * self.config.batch_size

    @property
    def epoch(self) -> float:
        return self.consumed_sequences / self.n_sequences

    def dataset(self) -> SequenceDataset:
        return SequenceDataset(
            self.stream, self.config, self.rank, self.world_size, self.consumed_sequences
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = self.config.num_workers
        loader = DataLoader(
            self.dataset(),
            batch_size=None,
            num_workers=workers,
            pin_memory=self.config.pin_memory,
            prefetch_factor=self.config.prefetch_factor if workers else None,
            persistent_workers=False,
        )
        for inputs, targets in loader:
            self.consumed_sequences += self.global_batch
            yield inputs, targets

    def state_dict(self) -> dict[str, int]:
        """Plain ints (fits a torch.distributed.checkpoint state dict)."""
        return {
            "consumed_sequences": self.consumed_sequences,
            "seed": self.config.seed,
            "seq_len": self.config.seq_len,
            "n_sequences": self.n_sequences,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from `state`'s position; refuse a state for other data or geometry."""
        mine = self.state_dict()
        mismatched = {
            key: (int(state[key]), mine[key])
            for key in ("seed", "seq_len", "n_sequences")
            if int(state[key]) != mine[key]
        }
        if mismatched:
            details = ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in mismatched.items())
            raise ValueError(
                f"loader state is for another data order ({details}): resuming would repeat or "
                "skip data; resume with the same split, seed and sequence geometry"
            )
        self.consumed_sequences = int(state["consumed_sequences"])
