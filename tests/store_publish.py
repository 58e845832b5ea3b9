"""A real stage (`cc_documents`) run through the runner with its output on an object store,
in a process of its own so tests/test_object_store_publish.py can SIGKILL it mid-publish:

    python tests/store_publish.py ROOT INPUT OUTPUT [--die-mid-delete]

ROOT is a store URI (`s3://bucket/data`, the server named by AWS_ENDPOINT_URL); INPUT holds
WARC archives, OUTPUT is the partition. The test process imports `run` for the uninterrupted
reference and the rerun, so all three runs are the same stage over the same inputs.
"""

from __future__ import annotations

import os
import signal
import sys

import pyarrow.fs as pafs

from curation.commoncrawl.documents import CCDocuments
from curation.core.inputs import archive_shards
from curation.core.manifest import Manifest
from curation.core.runner import run_stage
from curation.core.storage import Storage

STAGE = CCDocuments(crawl="t", input_format="warc")


def run(storage: Storage, inputs: str, output: str) -> Manifest:
    """`cc_documents` over every archive in `inputs` into the partition `output`."""
    return run_stage(STAGE, archive_shards(storage, inputs), output, storage)


def die_halfway_through_removing(output: str) -> None:
    """Make this process's removal of `output` (the previous version, at the start of an
    object-store publish) delete the first half of its objects in the order S3 lists them,
    then SIGKILL itself. pyarrow deletes a prefix by DeleteObjects requests of up to 1000
    keys, sent concurrently, and S3 deletes the keys of one request one by one: a crash or a
    reader can meet any such half-removed state, which a test can only hit by chance without
    this hook."""
    remove_tree = Storage.remove_tree

    def dying(self: Storage, path: str) -> None:
        if path != output:
            return remove_tree(self, path)
        infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=True))
        keys = sorted(i.path for i in infos if i.type == pafs.FileType.File)
        for key in keys[: len(keys) // 2]:
            self.fs.delete_file(key)
        os.kill(os.getpid(), signal.SIGKILL)

    Storage.remove_tree = dying


def main(argv: list[str]) -> None:
    root, inputs, output, *options = argv
    if options == ["--die-mid-delete"]:
        die_halfway_through_removing(output)
    run(Storage(root), inputs, output)


if __name__ == "__main__":
    main(sys.argv[1:])
