"""Checkpoints: a directory of files a trial saved, wherever it is stored."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional

from tune_core import storage

__all__ = ["Checkpoint"]


class Checkpoint:
    """A reference to a checkpoint directory, on the local disk or on remote storage.

    Create one from a directory your training code wrote
    (``Checkpoint.from_directory(d)``) and hand it to ``tune.report``; the
    worker copies it into the trial's storage. ``tune.get_checkpoint()`` and
    ``Result.checkpoint`` give you one back. Read its files with
    ``with checkpoint.as_directory() as d: ...`` whether it is local or remote.

    Args:
        path: the checkpoint directory: a local path, a URI such as
            ``s3://bucket/prefix/checkpoint_000001`` (options as query parameters, as
            ``RunConfig(storage_path=...)`` takes them), or, with ``filesystem``, a
            path inside that filesystem.
        filesystem: a ``pyarrow.fs.FileSystem``; None means the local disk, or the
            filesystem the URI names.

    Attributes:
        path: the directory as a path inside :attr:`filesystem` (for a URI, without its
            scheme: ``bucket/prefix/checkpoint_000001``).
    """

    def __init__(self, path: "str | os.PathLike[str]", filesystem: Any = None) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Checkpoint(path={path!r}) is not valid: use a str or "
                            f"os.PathLike naming a directory, or a URI such as "
                            f"s3://bucket/prefix")
        path = os.fspath(path)
        self._filesystem: Any = None
        if filesystem is not None or storage.is_uri(path):
            fs, path = storage.resolve(path, filesystem, owner="Checkpoint", name="path",
                                       fs_name="filesystem")
            if type(fs).__name__ != "LocalFileSystem":
                self._filesystem = fs
        self.path = path

    @classmethod
    def from_directory(cls, path: "str | os.PathLike[str]") -> "Checkpoint":
        """A checkpoint of the directory ``path`` (a local directory, or a URI)."""
        path = os.fspath(path)
        if storage.is_uri(path):
            return cls(path)
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_directory: {path!r} is not a directory")
        return cls(os.path.abspath(path))

    @property
    def filesystem(self) -> Any:
        """The ``pyarrow.fs.FileSystem`` the checkpoint is on."""
        if self._filesystem is None:
            import pyarrow.fs  # deferred: keeps `import tune_core` light

            return pyarrow.fs.LocalFileSystem()
        return self._filesystem

    def _is_local(self) -> bool:
        return self._filesystem is None

    def to_directory(self, path: "Optional[str | os.PathLike[str]]" = None) -> str:
        """Copy the checkpoint's files into ``path`` (a new temp dir if None); return it."""
        dest = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(dest, exist_ok=True)
        if self._is_local():
            if not os.path.isdir(self.path):
                raise FileNotFoundError(f"Checkpoint {self.path!r} does not exist (or is not "
                                        f"a directory)")
            if os.path.abspath(dest) != os.path.abspath(self.path):
                shutil.copytree(self.path, dest, dirs_exist_ok=True)
        else:
            storage.download_dir(self._filesystem, self.path, dest,
                                 exclude={storage.CHECKPOINT_MARKER})
        return dest

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files; downloaded first if remote.

        A local checkpoint's own directory is yielded: read, don't modify. A remote one
        is downloaded into a temporary directory that is deleted afterwards.
        """
        if self._is_local():
            yield self.path
            return
        tmp = tempfile.mkdtemp(prefix="checkpoint_")
        try:
            self.to_directory(tmp)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint) or other.path != self.path:
            return False
        if self._is_local() or other._is_local():
            return self._is_local() and other._is_local()
        return self._filesystem.equals(other._filesystem)

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        if self._is_local():
            return f"Checkpoint(path={self.path!r})"
        return f"Checkpoint(path={self.path!r}, filesystem={self._filesystem.type_name})"

    def __getstate__(self):
        # A pyarrow filesystem pickles its options (endpoint, region, credentials) and is
        # re-created from them on the other side; the local default is rebuilt lazily.
        return {"path": self.path, "_filesystem": self._filesystem}

    def __setstate__(self, state):
        self.path = state["path"]
        fs = state["_filesystem"]
        # Older pickles may carry an explicit LocalFileSystem: that is the local default.
        self._filesystem = None if type(fs).__name__ == "LocalFileSystem" else fs
