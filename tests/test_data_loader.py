import dataclasses
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from token_corpus import documents, write_parts

from curation.core.manifest import MANIFEST_NAME
from curation.core.storage import Storage
from curation.tokens.shards import TokenShardsConfig, write_token_shards
from curation.tokens.tokenizer import MODEL_NAME, TokenizerConfig, train_tokenizer
from training.data import (
    LoaderConfig,
    Permutation,
    SequenceDataset,
    TokenLoader,
    TokenStream,
    tokens_per_step,
)

SEQ = 32
CONFIG = LoaderConfig(seq_len=SEQ, batch_size=3, seed=0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """About 20k tokens in shards of 1000: sequences cross shard boundaries."""
    root = tmp_path_factory.mktemp("shards")
    storage = Storage(str(root))
    parts = write_parts(root / "corpus", documents(240), 60)
    tokenizer = TokenizerConfig(vocab_size=600, character_coverage=0.995)
    model = train_tokenizer(parts, str(root / "tok"), storage, tokenizer).model_path
    out = str(root / "shards")
    write_token_shards(parts, model, out, storage, config=TokenShardsConfig(shard_tokens=1000))
    return out


def _take(loader: TokenLoader, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(itertools.islice(iter(loader), steps))


def _config(**changes) -> LoaderConfig:
    return dataclasses.replace(CONFIG, **changes)


def test_sequences_are_overlapping_windows_of_the_stream(shards):
    stream = TokenStream(shards)
    full = stream.read(0, stream.n_tokens)
    dataset = SequenceDataset(stream, CONFIG)
    assert dataset.n_sequences == (stream.n_tokens - 1) // SEQ
    assert len(stream.files.paths) > 10
    inputs, targets = dataset.batch(0)
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.shape == targets.shape == (3, SEQ)
    for row, index in enumerate(dataset.sequence_indices(0).tolist()):
        window = torch.from_numpy(full[index * SEQ : index * SEQ + SEQ + 1].astype(np.int64))
        assert torch.equal(inputs[row], window[:-1]) and torch.equal(targets[row], window[1:])


def test_ranks_and_workers_partition_every_epoch(shards):
    world, workers = 3, 2
    n = TokenLoader(shards, config=CONFIG).n_sequences
    steps = -(-n // (world * CONFIG.batch_size)) + 2  # past the end of epoch 0
    positions, first_epoch = [], []
    for rank in range(world):
        config = _config(num_workers=workers)
        loader = TokenLoader(shards, config=config, rank=rank, world_size=world)
        dataset = SequenceDataset(loader.stream, config, rank, world)
        for step, (inputs, targets) in enumerate(_take(loader, steps)):
            expected = dataset.batch(step)  # what this (rank, step) must be, computed inline
            assert torch.equal(inputs, expected[0]) and torch.equal(targets, expected[1])
            positions.extend(dataset.positions(step).tolist())
            in_epoch = dataset.positions(step) < n
            first_epoch.extend(dataset.sequence_indices(step)[in_epoch].tolist())
    assert sorted(positions) == list(range(steps * world * CONFIG.batch_size))
    assert sorted(first_epoch) == list(range(n))


def test_the_seed_decides_the_order(shards):
    stream = TokenStream(shards)

    def order(seed: int) -> list[int]:
        dataset = SequenceDataset(stream, _config(seed=seed, batch_size=50))
        return dataset.sequence_indices(0).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    epochs = SequenceDataset(stream, _config(batch_size=50), start=0)
    second = SequenceDataset(stream, _config(batch_size=50), start=epochs.n_sequences)
    assert epochs.sequence_indices(0).tolist() != second.sequence_indices(0).tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 17, 64, 65, 1000, 4097])
def test_permutation_is_a_bijection(n):
    values = Permutation(n, seed=3, epoch=1)(np.arange(n))
    assert sorted(values.tolist()) == list(range(n))
    if n > 16:
        assert values.tolist() != list(range(n))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_resume_equals_the_uninterrupted_run_with_other_workers(shards):
    uninterrupted = _take(TokenLoader(shards, config=_config(num_workers=2)), 12)
    first = TokenLoader(shards, config=_config(num_workers=2))
    before = _take(first, 5)
    state = first.state_dict()
    assert state["consumed_sequences"] == 5 * CONFIG.batch_size
    assert all(type(v) is int for v in state.values())
    for workers in (0, 3):
        resumed = TokenLoader(shards, config=_config(num_workers=workers))
        resumed.load_state_dict(state)
        after = _take(resumed, 7)
        for (x, y), (ex, ey) in zip(before + after, uninterrupted, strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)


def test_a_new_world_size_continues_the_same_global_stream(shards):
    """Position is global: 2 ranks for 4 steps, then 3 ranks, see the sequences one rank with
    batch 1 sees, in the same order."""
    single = [x for x, _ in _take(TokenLoader(shards, config=_config(batch_size=1)), 4 * 6 + 3 * 5)]
    seen = []
    loaders = [
        TokenLoader(shards, config=_config(batch_size=3), rank=r, world_size=2) for r in (0, 1)
    ]
    iterators = [iter(loader) for loader in loaders]
    for _ in range(4):
        for it in iterators:
            seen.extend(next(it)[0])
    state = loaders[0].state_dict()
    assert state == loaders[1].state_dict()
    resumed = [
        TokenLoader(shards, config=_config(batch_size=5), rank=r, world_size=3) for r in range(3)
    ]
    for loader in resumed:
        loader.load_state_dict(state)
    for loader in resumed:
        seen.extend(next(iter(loader))[0])
    assert len(seen) == len(single)
    assert all(torch.equal(a, b[0]) for a, b in zip(seen, single, strict=True))


def test_a_state_for_other_data_or_geometry_is_refused(shards):
    loader = TokenLoader(shards, config=CONFIG)
    _take(loader, 2)
    state = loader.state_dict()
    for changes in ({"seed": 1}, {"seq_len": SEQ + 1}):
        with pytest.raises(ValueError, match="another data order"):
            TokenLoader(shards, config=_config(**changes)).load_state_dict(state)


def test_training_batches_start_every_document_with_bos(shards):
    """What the model trains on, decoded: `<s>` before every document, `</s>` after it."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(shards, MODEL_NAME))
    bos, eos = sp.bos_id(), sp.eos_id()
    texts = {row["text"].replace("\u2581", " ") for row in documents(240)}
    loader = TokenLoader(shards, config=_config(seq_len=256, batch_size=8))
    assert loader.stream.read(0, 1)[0] == bos
    whole = 0
    for inputs, targets in _take(loader, -(-loader.n_sequences // 8)):  # an epoch
        for window in torch.cat([inputs, targets[:, -1:]], dim=1).tolist():
            after_eos = [b for a, b in itertools.pairwise(window) if a == eos]
            before_bos = [a for a, b in itertools.pairwise(window) if b == bos]
            assert set(after_eos) <= {bos} and set(before_bos) <= {eos}
            # Each whole document in the window decodes to a text of the corpus.
            for piece in np.split(np.array(window), np.flatnonzero(np.array(window) == eos) + 1):
                if len(piece) > 1 and piece[0] == bos and piece[-1] == eos:
                    assert sp.decode(piece[1:-1].tolist()) in texts
                    whole += 1
    assert whole >= 40


def test_shards_without_bos_framing_are_refused(shards, tmp_path):
    manifest = json.loads(Path(shards, MANIFEST_NAME).read_text())
    del manifest["format"]["bos_id"]  # what tokenized_shards version 1 wrote
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="without <s> framing"):
        TokenStream(str(tmp_path))


def test_tokens_per_step():
    assert tokens_per_step(2048, 8, world_size=4, grad_accum=2) == 2048 * 8 * 4 * 2
