"""An all-to-all step over files, for the global passes that hash-partition their keys.

Each sender writes one file, whatever the number of receivers, and each receiver reads its
slice of every sender's file by range: the number of files grows with the senders, not with
senders x receivers, which is what lets a pass cut its keys into as many partitions as its
memory bound needs.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pyarrow as pa

from curation.core.storage import Storage


@dataclass(frozen=True)
class Exchange:
    """An all-to-all step over files. Sender i writes one file with a slice for every receiver
    (an Arrow IPC stream each, back to back; an empty slice is no bytes), then the slices' byte
    offsets, last: that file says the sender is done. Receiver j reads slice j of each sender's
    file, one at a time, so it can hold one slice, or fold slices in as they come."""

    storage: Storage
    folder: str
    senders: int
    receivers: int
    schema: pa.Schema

    def _paths(self, sender: int) -> tuple[str, str]:
        base = posixpath.join(self.folder, f"{sender:06d}")
        return f"{base}.arrows", f"{base}.offsets"

    def done(self, sender: int) -> bool:
        return self.storage.exists(self._paths(sender)[1])

    def write(self, sender: int, slices: Iterable[pa.Table]) -> None:
        """One slice per receiver, in receiver order, each written as it comes."""
        data, offsets = self._paths(sender)
        self.storage.makedirs(self.folder)
        tmp, bounds = f"{data}.tmp-{os.getpid()}", [0]
        with self.storage.fs.open_output_stream(tmp, compression=None) as f:
            for table in slices:
                if table.num_rows:
                    with pa.ipc.new_stream(f, self.schema) as writer:
                        writer.write_table(table)
                bounds.append(f.tell())
        if len(bounds) != self.receivers + 1:
            raise ValueError(f"{len(bounds) - 1} slices for {self.receivers} receivers")
        self.storage.fs.move(tmp, data)
        self.storage.write_bytes(offsets, np.array(bounds, "<u8").tobytes())

    def send(self, sender: int, table: pa.Table, receiver: np.ndarray) -> None:
        """Every row of `table` to its receiver."""
        order = np.argsort(receiver, kind="stable")
        bounds = np.searchsorted(receiver[order], np.arange(self.receivers + 1))
        table = table.take(order)
        self.write(sender, (table.slice(lo, hi - lo) for lo, hi in pairwise(bounds)))

    def read(self, sender: int, receiver: int) -> pa.Table:
        data, offsets = self._paths(sender)
        with self.storage.fs.open_input_file(offsets) as f:
            lo, hi = np.frombuffer(f.read_at(16, 8 * receiver), "<u8").tolist()
        if lo == hi:
            return self.schema.empty_table()
        with self.storage.fs.open_input_file(data) as f:
            return pa.ipc.open_stream(f.read_at(hi - lo, lo)).read_all()

    def gather(self, receiver: int) -> Iterator[pa.Table]:
        """The receiver's slice of every sender, in sender order, read as iterated."""
        return (self.read(sender, receiver) for sender in range(self.senders))
