"""numpy arrays as files on a `Storage`: the state of the global passes (hashes, masks).

`allow_pickle=False`: these files live in shared staging directories and are only numbers.
"""

from __future__ import annotations

import io

import numpy as np

from curation.storage import Storage


def save_array(storage: Storage, path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    storage.write_bytes(path, buffer.getvalue())


def load_array(storage: Storage, path: str) -> np.ndarray:
    return np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
