"""Atomic, resumable training checkpoints with torch.distributed.checkpoint (DCP).

Layout under `<output_dir>/checkpoints/`:

    step-0000100/            one committed checkpoint
        .metadata, *.distcp  DCP: model and optimizer, each rank writing its own shards
        rng-rank00000.json   per rank: torch CPU (and CUDA), Python and NumPy generator states
        trainer.json         step, tokens seen, loader and scheduler state, the configs
    latest                   the name of the newest committed checkpoint ("step-0000100")

Commit protocol: every rank writes into `step-NNNNNNN.tmp/`; after a barrier rank 0 writes
`trainer.json`, renames the directory to its final name, then replaces `latest` (written to a
temporary file and renamed, so it always names a complete checkpoint), then deletes all but
the newest `keep` checkpoints. A crash at any point leaves `latest` on the previous complete
checkpoint; a leftover `.tmp` directory is deleted by the next save. On several nodes,
`output_dir` must be one shared filesystem, or an object store.

On an object store (`output_dir` a URI such as `s3://bucket/run`; DCP writes through fsspec)
no directory can be renamed, so the ranks write under the final name and `trainer.json`,
written last, is what makes it a checkpoint; `latest` (one whole object) still moves only
after it, so readers that follow `latest` see the same commits as on a disk.

Model and optimizer go through `get_state_dict`/`set_state_dict`, so the same code saves a
plain module and an FSDP-sharded one, and a checkpoint loads under another world size (DCP
reshards). Nothing is unpickled beyond plain data: DCP's tensor reads use
`torch.load(weights_only=True)`; its non-tensor entries (the optimizer's hyperparameters) are
read by `SafeLoadPlanner` with `weights_only=True` too; the rest is JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import posixpath
import random
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from curation.core.storage import Storage
from model import Llama, LlamaConfig
from training.data import tokenizer_file

Location = str | Path  # a path on this machine, or a store URI such as s3://bucket/run

LATEST = "latest"
TRAINER_FILE = "trainer.json"
_TMP = ".tmp"


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, except that the non-tensor entries are unpickled with
    `weights_only=True` (the default planner allows arbitrary objects there)."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        torch.load(value, weights_only=True)  # raises on anything but plain data
        value.seek(0)
        super().load_bytes(read_item, value)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns at every save and load without a process group, even when asked for that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _is_store(location: Location) -> bool:
    return "://" in str(location)


def _join(location: Location, *parts: str) -> Location:
    """A path under `location`: a Path on this machine, a URI on a store."""
    if _is_store(location):
        return posixpath.join(str(location), *parts)
    return Path(location, *parts)


def _name(location: Location) -> str:
    return posixpath.basename(str(location).rstrip("/"))


def _storage(location: Location) -> tuple[Storage, str]:
    storage = Storage(str(location))
    return storage, storage.base


def _is_file(location: Location) -> bool:
    storage, path = _storage(location)
    return storage.exists(path) and not storage.is_dir(path)


def _read_text(location: Location) -> str | None:
    """The file's text; None when there is no such file."""
    storage, path = _storage(location)
    return storage.read_bytes(path).decode() if _is_file(location) else None


def _write_text(location: Location, text: str) -> None:
    """Write a small file so that readers see the old content or the new, never a part: a
    rename after fsync on a disk, one whole PUT on a store."""
    if _is_store(location):
        storage, path = _storage(location)
        storage.write_bytes(path, text.encode())
        return
    path = Path(location)
    tmp = path.with_name(path.name + _TMP)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_tree(location: Location) -> None:
    storage, path = _storage(location)
    storage.remove_tree(path)


def _staging(final: Location) -> Location:
    """Where a checkpoint is written before its commit: beside its final name on a disk (the
    commit renames it); on a store, which cannot rename a directory, the final name itself,
    which its trainer.json, written last, commits."""
    if _is_store(final):
        return final
    return Path(final).with_name(_name(final) + _TMP)


def _commit(root: Location, staging: Location, final: Location, trainer_state: dict) -> None:
    """Rank 0's part of a save: trainer.json, the move into place, then `latest`."""
    _write_text(_join(staging, TRAINER_FILE), json.dumps(trainer_state, indent=2))
    if staging != final:
        shutil.rmtree(final, ignore_errors=True)  # an uncommitted save of the same step
        os.replace(staging, final)
    _write_text(_join(root, LATEST), _name(final) + "\n")


def committed_checkpoints(output_dir: Location) -> list[Location]:
    """The run's complete checkpoints, oldest first."""
    root = _join(output_dir, "checkpoints")
    storage, path = _storage(root)
    names = [_name(d) for d in storage.list_dirs(path)]
    steps = [_join(root, n) for n in names if n.startswith("step-") and not n.endswith(_TMP)]
    return [step for step in steps if _is_file(_join(step, TRAINER_FILE))]


def rng_state() -> dict:
    """This process's generator states as JSON-able data."""
    np_state = np.random.get_state(legacy=True)
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def set_rng_state(state: dict) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(state["torch"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensor(state["cuda"]))


def latest_checkpoint(output_dir: Location) -> Location | None:
    """The committed checkpoint `latest` names, or None for a fresh run."""
    root = _join(output_dir, "checkpoints")
    name = _read_text(_join(root, LATEST))
    if name is None:
        return None
    path = _join(root, name.strip())
    if not _is_file(_join(path, TRAINER_FILE)):
        raise RuntimeError(
            f"{_join(root, LATEST)} names {path}, which is not a complete checkpoint"
        )
    return path


def save_checkpoint(
    output_dir: Location,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    keep: int,
) -> Location:
    """Save and commit a checkpoint of `step` (collective: every rank calls it)."""
    root = _join(output_dir, "checkpoints")
    final = _join(root, checkpoint_name(step))
    staging = _staging(final)
    if _rank() == 0:
        storage, path = _storage(root)
        storage.makedirs(path)
        _remove_tree(staging)  # left by a save that was killed
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save(
            {"model": model_state, "optimizer": optim_state},
            checkpoint_id=staging,
            no_dist=not dist.is_initialized(),
        )
    _write_text(_join(staging, f"rng-rank{_rank():05d}.json"), json.dumps(rng_state()))
    _barrier()
    if _rank() == 0:
        _commit(root, staging, final, trainer_state)
        for old in committed_checkpoints(output_dir)[:-keep]:
            _remove_tree(old)
    _barrier()
    return final


def load_checkpoint(path: Location, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load model and optimizer state in place (collective); return the trainer state. The RNG
    state of this rank is restored when the checkpoint has one for it (same world size)."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    with _quiet_single_process():
        dcp.load(
            state,
            checkpoint_id=path,
            planner=SafeLoadPlanner(),
            no_dist=not dist.is_initialized(),
        )
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    rng = _read_text(_join(path, f"rng-rank{_rank():05d}.json"))
    if rng is not None:
        set_rng_state(json.loads(rng))
    return json.loads(_read_text(_join(path, TRAINER_FILE)))


def resolve_checkpoint(path: Location) -> Location:
    """A checkpoint directory as given, or the one a run's output directory names `latest`."""
    path = path if _is_store(path) else Path(path)
    if _is_file(_join(path, TRAINER_FILE)):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path} is neither a checkpoint nor a run with checkpoints")
    return latest


def tokenizer_of(trainer_state: dict) -> str:
    """The tokenizer a checkpoint's tokens were made with: the copy `tokenized_shards` keeps
    in the run's data directory (as a local file)."""
    return tokenizer_file(trainer_state["config"]["data_dir"])


def load_model(path: str | Path) -> tuple[Llama, dict]:
    """The network of a checkpoint on the CPU in float32, without its optimizer: what export,
    evaluation and generation need. One process reads a checkpoint of any world size (DCP
    reshards); the trainer state (configs, step) comes with it."""
    checkpoint = resolve_checkpoint(path)
    trainer = json.loads(_read_text(_join(checkpoint, TRAINER_FILE)))
    model = Llama(LlamaConfig(**trainer["model_config"]))
    state = {"model": model.state_dict()}
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=checkpoint, planner=SafeLoadPlanner(), no_dist=True)
    model.load_state_dict(state["model"])
    return model, trainer


def save_model(model: Llama, output_dir: Location, trainer_state: dict) -> Location:
    """A model-only checkpoint at step 0 under `output_dir` (e.g. weights imported from HF):
    `load_model`, export and generation read it; training from it starts a fresh optimizer."""
    root = _join(output_dir, "checkpoints")
    final = _join(root, checkpoint_name(0))
    staging = _staging(final)
    _remove_tree(staging)
    with _quiet_single_process():
        dcp.save({"model": model.state_dict()}, checkpoint_id=staging, no_dist=True)
    state = {**trainer_state, "model_config": dataclasses.asdict(model.config)}
    _commit(root, staging, final, state)
    return final
