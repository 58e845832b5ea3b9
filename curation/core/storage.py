"""Where data lives: a local directory or an object store, addressed the same way.

Everything goes through `pyarrow.fs`, so `./data`, `file:///mnt/data` and `s3://bucket/prefix`
are all valid roots. On a local disk `move` is a rename, which is what makes our directory
publishes atomic; on object stores the manifest, written last, is the commit marker.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
import pyarrow.fs as pafs

_CHUNK = 1 << 20
CACHE_ENV = "LLAMAPIPE_CACHE"


def cache_dir() -> str:
    """This machine's cache of objects fetched from a store: `$LLAMAPIPE_CACHE`, else
    `~/.cache/llamapipe`."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "llamapipe")


class OutputWriteError(OSError):
    """Output could not be written (disk full, read-only filesystem, no permission): the
    path and the reason in one line, in place of an error from deep inside pyarrow that may
    not name the file (its ENOSPC says only "Error writing bytes to file").

    An OSError with `errno`, `strerror` and `filename` set, so it pickles back from a worker
    process and `except OSError` handlers keep working."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into an OutputWriteError naming it."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OutputWriteError(exc.errno or 0, reason, path) from exc


@dataclass(frozen=True)
class Storage:
    """A filesystem plus the base path inside it; picklable so workers can receive it."""

    root: str

    @cached_property
    def _resolved(self) -> tuple[pafs.FileSystem, str]:
        if "://" not in self.root:
            return pafs.LocalFileSystem(), os.path.abspath(self.root)
        try:
            return pafs.FileSystem.from_uri(self.root)
        except pa.ArrowInvalid:
            # Schemes pyarrow lacks natively (memory://, gcs via gcsfs, ...) come through fsspec.
            import fsspec

            fs, path = fsspec.core.url_to_fs(self.root)
            return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path

    @property
    def fs(self) -> pafs.FileSystem:
        return self._resolved[0]

    @property
    def base(self) -> str:
        return self._resolved[1]

    @property
    def is_local(self) -> bool:
        """Local disks rename directories atomically; object stores do not."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts)

    def uri(self, path: str) -> str:
        """`path` (in this storage) as a location other processes open on their own: the
        path itself on a local root, `scheme://path` on a store (the trainer's data and
        output directories)."""
        if "://" not in self.root:
            return path
        return f"{self.root.split('://', 1)[0]}://{path}"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.Directory

    def size(self, path: str) -> int:
        return self.fs.get_file_info(path).size or 0

    def list_files(self, path: str, suffix: str = "") -> list[str]:
        """Files directly under `path` ending in `suffix`, sorted by name (shard order)."""
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = [i.path for i in infos if i.type == pafs.FileType.File]
        return sorted(p for p in names if p.endswith(suffix))

    def list_dirs(self, path: str) -> list[str]:
        """Directories directly under `path`, sorted by name; none if it does not exist."""
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)

    def makedirs(self, path: str) -> None:
        """A directory on a local disk. Nothing on an object store, where a prefix exists
        once an object is written under it: pyarrow would write an empty marker object per
        level and check the bucket each time, about five requests per call."""
        if self.is_local:
            with writing(path):
                self.fs.create_dir(path, recursive=True)

    def remove_tree(self, path: str) -> None:
        if self.exists(path):
            with writing(path):
                self.fs.delete_dir(path)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path, compression=None) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write beside the target and move into place, so readers never see half a file.
        A failed write removes its partial file (on a full disk it holds the space)."""
        tmp = f"{path}.tmp-{os.getpid()}"
        with writing(path):
            try:
                with self.fs.open_output_stream(tmp, compression=None) as f:
                    f.write(data)
            except OSError:
                self.discard(tmp)
                raise
            self.fs.move(tmp, path)

    def discard(self, path: str) -> None:
        """Delete a file if it is there; for cleaning up after a failure, so never raises."""
        with suppress(OSError):
            self.fs.delete_file(path)

    def copy_tree(self, source: str, target: str, last: str) -> None:
        """Copy every file of `source` to `target`, the file named `last` after all others."""
        infos = self.fs.get_file_info(pafs.FileSelector(source, recursive=True))
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
        for path in sorted(files, key=lambda p: posixpath.basename(p) == last):
            dest = posixpath.join(target, posixpath.relpath(path, source))
            self.makedirs(posixpath.dirname(dest))
            self.fs.copy_file(path, dest)

    def chunks(self, path: str) -> Iterator[bytes]:
        """The file's bytes, a megabyte at a time: for hashing files of any size."""
        with self.fs.open_input_stream(path, compression=None) as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(path):
            digest.update(chunk)
        return digest.hexdigest()

    def local_copy(self, path: str) -> str:
        """A file on this machine's disk with the content of `path`, for native libraries
        (KenLM, fastText, SentencePiece) that open files by name: the file itself on a local
        root. From an object store it is fetched once into the cache, under a key made of the
        object's location, size and modification time, so a replaced object is fetched again
        and concurrent readers on one machine share one copy (each fetch lands by rename).
        Stores keep modification times to the second: an object replaced by one of the same
        size within the second it was written is taken for the old one."""
        if self.is_local:
            return path
        info = self.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"no file {self.fs.type_name}://{path}")
        key = f"{self.fs.type_name}://{path}\0{info.size}\0{info.mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        target = os.path.join(cache_dir(), "objects", digest, posixpath.basename(path))
        if not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp-{os.getpid()}"
            with self.fs.open_input_stream(path, compression=None) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(tmp, target)
        return target

    @contextmanager
    def local_directory(self, path: str) -> Iterator[str]:
        """A directory on this machine's disk whose files end up under `path`, for native
        tools that write files by name (lmplz, fastText, SentencePiece): `path` itself on a
        local root; for an object store a temporary directory, uploaded file by file (each
        object appears whole) when the block exits without an error."""
        if self.is_local:
            self.makedirs(path)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="llamapipe-upload-") as local:
            yield local
            self.upload(local, path)

    def upload(self, local: str, path: str) -> None:
        """Copy a local file, or every file under a local directory, to `path`: each object
        appears whole, and files already under `path` that `local` lacks stay."""
        with writing(path):
            pafs.copy_files(
                local,
                path,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.fs,
            )
