"""Checkpoints: a directory of files a trial saved, wherever it is stored."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional

__all__ = ["Checkpoint"]


class Checkpoint:
    """A reference to a checkpoint directory.

    Create one from a directory your training code wrote
    (``Checkpoint.from_directory(d)``) and hand it to ``tune.report``; the
    worker copies it into the trial's storage. ``tune.get_checkpoint()`` and
    ``Result.checkpoint`` give you one back.

    Args:
        path: the checkpoint directory.
        filesystem: a ``pyarrow.fs.FileSystem``; None means the local disk.
    """

    def __init__(self, path: str, filesystem: Any = None) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Checkpoint path must be a str or os.PathLike, got {path!r}")
        self.path = os.fspath(path)
        self._filesystem = filesystem

    @classmethod
    def from_directory(cls, path: "str | os.PathLike[str]") -> "Checkpoint":
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_directory: {path!r} is not a directory")
        return cls(os.path.abspath(path))

    @property
    def filesystem(self) -> Any:
        if self._filesystem is None:
            import pyarrow.fs  # deferred: keeps `import tune_core` light

            self._filesystem = pyarrow.fs.LocalFileSystem()
        return self._filesystem

    def _is_local(self) -> bool:
        if self._filesystem is None:
            return True
        return type(self._filesystem).__name__ == "LocalFileSystem"

    def to_directory(self, path: Optional[str] = None) -> str:
        """Copy the checkpoint's files into ``path`` (a new temp dir if None); return it."""
        dest = path or tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(dest, exist_ok=True)
        if self._is_local():
            shutil.copytree(self.path, dest, dirs_exist_ok=True)
        else:
            import pyarrow.fs

            pyarrow.fs.copy_files(self.path, dest, source_filesystem=self.filesystem,
                                  destination_filesystem=pyarrow.fs.LocalFileSystem())
        return dest

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files; downloaded first if remote."""
        if self._is_local():
            yield self.path
            return
        tmp = self.to_directory()
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r})"

    def __getstate__(self):
        # A pyarrow filesystem pickles fine, but the local default is rebuilt lazily.
        return {"path": self.path, "_filesystem": None if self._is_local() else self._filesystem}

    def __setstate__(self, state):
        self.path = state["path"]
        self._filesystem = state["_filesystem"]
