"""The storage layer: every file tune_core reads or writes goes through this module.

A storage location is one of:

* a local path (also an NFS mount): ``"~/tune_results"``, ``"/mnt/nfs/results"``;
* a ``file://`` URI: ``"file:///abs/path"``;
* any URI ``pyarrow.fs.FileSystem.from_uri`` understands, with its options as query
  parameters: ``"s3://bucket/prefix?region=eu-west-1"``,
  ``"s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http"``, ``"gs://..."``;
* a path inside a ``pyarrow.fs.FileSystem`` you build yourself (for example an
  ``S3FileSystem`` with an endpoint override and explicit credentials).

An ``s3://`` URI gets ``allow_delayed_open=true`` unless it sets it: small files are then
one PUT each instead of a multipart upload's three requests.

Paths inside a filesystem ("fs paths") carry no scheme: ``"bucket/prefix/file"`` on S3,
an absolute path on the local disk.

Atomicity, which is what lets a reader or a restore never see half a file:

* a single file is written locally to a temporary name, fsync'd and renamed over the
  target; on an object store (S3, GCS, Azure) an object only becomes visible once its
  upload completes, so a single upload is atomic already;
* a checkpoint directory is copied locally to ``<dest>.tmp`` and renamed; on an object
  store, where there is no rename, all files are uploaded first and the marker file
  ``.tune_checkpoint_complete`` last. Only a directory with the marker counts as a
  checkpoint (:func:`is_complete_checkpoint`).

pyarrow is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import time
import urllib.parse
import uuid
from typing import (TYPE_CHECKING, Any, Callable, Collection, Dict, Iterator, List, Optional,
                    Tuple, TypeVar)

from tune_core.error import TuneError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow.fs

__all__ = [
    "CHECKPOINT_MARKER", "DEFAULT_STORAGE_PATH", "DEFAULT_STAGING_ROOT", "StorageContext",
    "StorageError", "delete_dir", "download_dir", "exists", "is_complete_checkpoint", "is_uri",
    "list_dir", "persist_checkpoint_dir", "read_bytes", "redact_uri", "resolve", "upload_dir",
    "upload_file", "with_retries", "write_bytes_atomic",
]

logger = logging.getLogger(__name__)

#: Written last into a checkpoint directory on an object store; its presence means
#: every other file of the checkpoint is there.
CHECKPOINT_MARKER = ".tune_checkpoint_complete"
#: Where experiments go when ``RunConfig(storage_path=None)``.
DEFAULT_STORAGE_PATH = "~/tune_results"
#: Where the driver stages files (logs, state) before uploading them to remote storage.
DEFAULT_STAGING_ROOT = "~/tune_results/.staging"

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_CHUNK = 8 * 1024 * 1024
_MAX_TRANSFER_THREADS = 16
# Object stores have no directories: a file can be written under any key, and
# creating "directories" would only cost extra requests.
_OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
# OSErrors that retrying cannot fix.
_PERMANENT_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError,
                     NotADirectoryError, PermissionError)

_T = TypeVar("_T")


class StorageError(TuneError, OSError):
    """Reading or writing storage failed for good (after retries, where they apply)."""


def _pafs() -> Any:
    import pyarrow.fs  # deferred: keeps `import tune_core` light

    return pyarrow.fs


# --------------------------------------------------------------------------- locations


def is_uri(path: Any) -> bool:
    """Whether ``path`` is a URI with a scheme (``s3://...``, ``file://...``), not a plain path."""
    return isinstance(path, str) and _URI_RE.match(path) is not None


def redact_uri(uri: str) -> str:
    """``uri`` with any secret in it (``s3://KEY:SECRET@bucket``) replaced by ``***``.

    Use it wherever a URI is printed or logged.
    """
    if not is_uri(uri):
        return uri
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query,
                                    parts.fragment))


def _local_abspath(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _accepted(name: str, fs_name: str) -> str:
    return (f"use a local path, file:///absolute/path, or a URI pyarrow.fs understands such "
            f"as s3://bucket/prefix (options as query parameters, e.g. "
            f"?endpoint_override=host:port&scheme=http&region=...), or pass {fs_name}= a "
            f"pyarrow.fs.FileSystem and make {name} a path inside it")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def resolve(path_or_uri: "str | os.PathLike[str]", filesystem: Any = None, *,
            owner: str = "RunConfig", name: str = "storage_path",
            fs_name: str = "storage_filesystem") -> Tuple["pyarrow.fs.FileSystem", str]:
    """Turns a path or URI (and an optional filesystem) into ``(filesystem, fs_path)``.

    Args:
        path_or_uri: a local path (``~`` is expanded, relative paths made absolute),
            ``file:///abs/path``, or a URI ``pyarrow.fs.FileSystem.from_uri`` accepts.
            With ``filesystem`` given: a path inside it; a ``scheme://`` prefix is dropped.
        filesystem: a ``pyarrow.fs.FileSystem``, or None to derive one from the URI.
        owner, name, fs_name: how the caller's arguments are called, for error
            messages (``RunConfig(storage_path=...)`` by default).

    Returns:
        The filesystem and the path inside it, without a trailing slash.

    Raises:
        ValueError: the path, URI or filesystem is not valid; the message names the
            argument, its value (secrets redacted) and what is accepted.
        StorageError: the URI is valid but opening its filesystem failed (for example
            looking up an S3 bucket's region over the network).
    """
    pafs = _pafs()
    if isinstance(path_or_uri, os.PathLike):
        path_or_uri = os.fspath(path_or_uri)
    if not isinstance(path_or_uri, str) or not path_or_uri.strip():
        raise ValueError(f"{owner}({name}={path_or_uri!r}) is not valid: "
                         f"{_accepted(name, fs_name)}")
    path = path_or_uri
    shown = redact_uri(path)

    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            raise ValueError(
                f"{owner}({fs_name}={filesystem!r}) is not valid: use a pyarrow.fs.FileSystem "
                f"instance (e.g. pyarrow.fs.S3FileSystem(endpoint_override=...)), or None to "
                f"derive the filesystem from {name}")
        if is_uri(path):
            parts = urllib.parse.urlsplit(path)
            if parts.query or parts.username or parts.password:
                raise ValueError(
                    f"{owner}({name}={shown!r}) is not valid together with {fs_name}: the "
                    f"filesystem's options and credentials would be ignored; set them on the "
                    f"filesystem and make {name} a plain path inside it, such as "
                    f"'bucket/prefix'")
            path = parts.netloc + parts.path
        if isinstance(filesystem, pafs.LocalFileSystem):
            return filesystem, _local_abspath(path)
        stripped = path.rstrip("/")
        return filesystem, stripped or path

    if not is_uri(path):
        return pafs.LocalFileSystem(), _local_abspath(path)

    parts = urllib.parse.urlsplit(path)
    if parts.scheme.lower() == "file":
        local = urllib.parse.unquote(parts.path)
        if parts.netloc not in ("", "localhost") or parts.query or not local.startswith("/"):
            raise ValueError(f"{owner}({name}={shown!r}) is not valid: a file:// URI names an "
                             f"absolute local path, as in file:///abs/path")
        return pafs.LocalFileSystem(), _local_abspath(local)
    if parts.scheme.lower() == "s3" and "allow_delayed_open" not in parts.query:
        # A small file is then one PUT instead of a multipart upload's three requests
        # (a checkpoint of two files: 5 requests instead of 11). Errors still surface,
        # when the file is closed at the latest, and every write here is closed.
        query = parts.query + ("&" if parts.query else "") + "allow_delayed_open=true"
        path = urllib.parse.urlunsplit(parts._replace(query=query))
    try:
        fs, fs_path = pafs.FileSystem.from_uri(path)
    except ValueError as e:  # pyarrow.lib.ArrowInvalid: unknown scheme or option
        raise ValueError(f"{owner}({name}={shown!r}) is not valid ({_first_line(e)}): "
                         f"{_accepted(name, fs_name)}") from e
    except OSError as e:
        raise StorageError(f"{owner}({name}={shown!r}): could not open this storage: "
                           f"{_first_line(e)}") from e
    stripped = fs_path.rstrip("/")
    return fs, stripped or fs_path


def _check_dirname(kind: str, value: Any) -> str:
    if (not isinstance(value, str) or not value.strip() or "/" in value or "\\" in value
            or value in (".", "..")):
        raise ValueError(f"{kind}={value!r} is not valid: use a non-empty folder name "
                         f"without slashes")
    return value


class StorageContext:
    """Where one experiment's files live, locally and on storage.

    Layout: ``<storage>/<experiment_name>/<trial_dirname>/...``. The driver writes
    logs and state into :attr:`local_experiment_dir` first; when storage is local that
    *is* the experiment directory, otherwise it is a staging directory whose files are
    uploaded (see :func:`upload_file`, :func:`upload_dir`).

    A StorageContext is picklable and travels to Ray workers: it carries the storage
    path or URI and the user's filesystem (if any) and re-creates the filesystem lazily
    on the other side.

    Args:
        storage_path: a local path or URI (see :func:`resolve`); None means
            ``~/tune_results``. A local path is made absolute on the driver.
        experiment_name: the experiment's folder under ``storage_path``.
        storage_filesystem: a ``pyarrow.fs.FileSystem``; ``storage_path`` is then a
            path inside it.
        local_staging_root: where staging directories of remote experiments go;
            ``~/tune_results/.staging`` by default (``~`` expands on each machine).

    Raises:
        ValueError: a bad argument (named in the message).
    """

    def __init__(self, storage_path: "Optional[str | os.PathLike[str]]", experiment_name: str,
                 storage_filesystem: Any = None, *,
                 local_staging_root: Optional[str] = None) -> None:
        if storage_path is None:
            storage_path = DEFAULT_STORAGE_PATH
        if isinstance(storage_path, os.PathLike):
            storage_path = os.fspath(storage_path)
        self.experiment_name = _check_experiment_name(experiment_name)
        self.storage_filesystem = storage_filesystem
        self.local_staging_root = local_staging_root
        self._fs: Any = None
        self._storage_fs_path: Optional[str] = None
        # Resolving now reports a bad storage_path before anything runs.
        self._resolve(storage_path)
        if isinstance(self._fs, _pafs().LocalFileSystem) and not is_uri(storage_path):
            # "~" and the cwd are the driver's, not a worker's.
            storage_path = self._storage_fs_path
        self.storage_path: str = storage_path  # type: ignore[assignment]

    def _resolve(self, storage_path: Any) -> None:
        self._fs, self._storage_fs_path = resolve(storage_path, self.storage_filesystem)

    # -- pickling: the filesystem is re-created on the other side

    def __getstate__(self) -> Dict[str, Any]:
        return {"storage_path": self.storage_path, "experiment_name": self.experiment_name,
                "storage_filesystem": self.storage_filesystem,
                "local_staging_root": self.local_staging_root}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None
        self._storage_fs_path = None

    # -- where things are

    @property
    def fs(self) -> "pyarrow.fs.FileSystem":
        """The filesystem all of this experiment's files are on."""
        if self._fs is None:
            self._resolve(self.storage_path)
        return self._fs

    @property
    def storage_fs_path(self) -> str:
        """``storage_path`` as a path inside :attr:`fs`."""
        if self._storage_fs_path is None:
            self._resolve(self.storage_path)
        return self._storage_fs_path  # type: ignore[return-value]

    @property
    def is_local(self) -> bool:
        """Whether storage is the local disk (or a mount of it, such as NFS)."""
        return isinstance(self.fs, _pafs().LocalFileSystem)

    def _join(self, *parts: str) -> str:
        join = os.path.join if self.is_local else posixpath.join
        return join(self.storage_fs_path, *parts)

    @property
    def experiment_fs_path(self) -> str:
        """The experiment directory as a path inside :attr:`fs`."""
        return self._join(self.experiment_name)

    def trial_fs_path(self, trial_dirname: str) -> str:
        """A trial's directory as a path inside :attr:`fs`."""
        return self._join(self.experiment_name, _check_dirname("trial_dirname", trial_dirname))

    @property
    def experiment_uri(self) -> str:
        """What to pass to ``Tuner.restore``: a local absolute path or a URI.

        A URI keeps its query parameters and credentials (print it with
        :func:`redact_uri`). With an explicit ``storage_filesystem`` this is
        ``<type>://<path>``, and restoring needs the same filesystem passed again.
        """
        if self.is_local:
            return self.experiment_fs_path
        if self.storage_filesystem is None and is_uri(self.storage_path):
            parts = urllib.parse.urlsplit(self.storage_path)
            path = parts.path.rstrip("/") + "/" + self.experiment_name
            return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query,
                                            parts.fragment))
        return f"{self.fs.type_name}://{self.experiment_fs_path}"

    @property
    def local_experiment_dir(self) -> str:
        """Where the driver writes the experiment's files locally (not created here).

        The experiment directory itself when storage is local; otherwise
        ``<local_staging_root>/<experiment_name>``.
        """
        if self.is_local:
            return self.experiment_fs_path
        root = _local_abspath(self.local_staging_root or DEFAULT_STAGING_ROOT)
        return os.path.join(root, self.experiment_name)

    def local_trial_dir(self, trial_dirname: str) -> str:
        """A trial's directory under :attr:`local_experiment_dir`."""
        return os.path.join(self.local_experiment_dir,
                            _check_dirname("trial_dirname", trial_dirname))

    def worker_trial_dir(self, trial_dirname: str) -> str:
        """A trial's working directory in its worker process.

        With local storage it is the trial directory itself. With remote storage it
        is a local directory of the worker's node, apart from the driver's staging
        directory (on the head node both exist); what the trial writes there is
        uploaded when ``SyncConfig(sync_artifacts=True)``.
        """
        if self.is_local:
            return self.trial_fs_path(trial_dirname)
        root = _local_abspath(self.local_staging_root or DEFAULT_STAGING_ROOT)
        return os.path.join(root, ".workdirs", self.experiment_name,
                            _check_dirname("trial_dirname", trial_dirname))

    def __repr__(self) -> str:
        return f"StorageContext({redact_uri(self.experiment_uri)!r})"


def _check_experiment_name(name: Any) -> str:
    if (not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name
            or name in (".", "..")):
        raise ValueError(f"RunConfig(name={name!r}) is not valid: use a non-empty folder name "
                         f"without slashes")
    return name


# --------------------------------------------------------------------------- files


def _local_path(fs: Any, path: str) -> Optional[str]:
    """The OS path behind ``path`` if ``fs`` is the local disk (possibly a subtree of it)."""
    pafs = _pafs()
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    if isinstance(fs, pafs.SubTreeFileSystem) and isinstance(fs.base_fs, pafs.LocalFileSystem):
        return os.path.join(fs.base_path, path.lstrip("/"))
    return None


def _fsync_dir(path: str) -> None:
    # Makes a rename durable; not every filesystem allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_local_atomic(path: str, chunks: Iterator[bytes]) -> None:
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 honours the umask, as a plain open() would (mkstemp uses 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)


def _make_parent(fs: Any, path: str) -> None:
    if fs.type_name in _OBJECT_STORES:
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)


def _write_remote(fs: Any, path: str, chunks: Iterator[bytes]) -> None:
    _make_parent(fs, path)
    stream = fs.open_output_stream(path)
    try:
        for chunk in chunks:
            stream.write(chunk)
    except BaseException:
        # pyarrow offers no way to abort an upload: closing the stream publishes what
        # was written so far. So close it and delete the partial object at once.
        with contextlib.suppress(Exception):
            stream.close()
        with contextlib.suppress(Exception):
            fs.delete_file(path)
        raise
    stream.close()  # the object appears only now, complete


def _file_chunks(local_path: str) -> Iterator[bytes]:
    with open(local_path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return
            yield chunk


def write_bytes_atomic(fs: Any, path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old content or all of the new.

    Locally: a temporary file in the same directory, fsync'd, renamed over ``path``.
    On an object store: one upload, which becomes visible only once complete. Parent
    directories are created as needed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_bytes_atomic(data=...) takes bytes, got {type(data).__name__}")
    local = _local_path(fs, path)
    if local is not None:
        _write_local_atomic(local, iter([bytes(data)]))
    else:
        _write_remote(fs, path, iter([bytes(data)]))


def read_bytes(fs: Any, path: str, *, attempts: int = 5) -> bytes:
    """The whole content of the file ``path``; FileNotFoundError if there is none.

    Whole means one version of it, even while a writer replaces the file: locally the
    open file keeps the version it opened; remotely the object is fetched in a single
    request (a streamed read issues several ranged requests, which may straddle an
    overwrite) and its ETag is compared before and after, rereading if it changed.

    Raises:
        StorageError: the file changed during each of ``attempts`` remote reads.
    """
    local = _local_path(fs, path)
    if local is not None:
        with open(local, "rb") as f:
            return f.read()
    for _ in range(attempts):
        with fs.open_input_file(path) as f:
            version = _version(f)
            size = f.size()
            data = f.read_at(size, 0) if size else b""
        if len(data) == size:
            with fs.open_input_file(path) as f:
                if _version(f) == version:
                    return data
    raise StorageError(f"reading {fs.type_name} file {path!r}: it changed during each of "
                       f"{attempts} attempts to read it whole")


def _version(f: Any) -> Tuple[Any, Any, int]:
    """What identifies the version of an open remote file (ETag where the store has one)."""
    meta = f.metadata() or {}
    return meta.get("ETag"), meta.get("Last-Modified"), f.size()


def exists(fs: Any, path: str) -> bool:
    """Whether a file or directory (on an object store: any key under the prefix) exists."""
    return fs.get_file_info(path).type != _pafs().FileType.NotFound


def list_dir(fs: Any, path: str) -> List[str]:
    """The sorted names of the entries directly in directory ``path``; [] if it is missing."""
    selector = _pafs().FileSelector(path, allow_not_found=True, recursive=False)
    return sorted(info.base_name for info in fs.get_file_info(selector))


def delete_dir(fs: Any, path: str) -> None:
    """Deletes directory ``path`` and everything in it; nothing happens if it is missing."""
    if not path.strip("/"):
        raise ValueError(f"delete_dir(path={path!r}) refuses to delete a filesystem's root")
    local = _local_path(fs, path)
    if local is None and fs.type_name in _OBJECT_STORES and "/" not in path.strip("/"):
        raise ValueError(f"delete_dir(path={path!r}) refuses to delete a whole bucket")
    if local is not None:
        if os.path.islink(local):
            os.unlink(local)  # the link, never what it points to
        elif os.path.isdir(local):
            shutil.rmtree(local)
        return
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(path)


def upload_file(local_path: str, fs: Any, fs_path: str) -> None:
    """Copies one local file to ``fs_path``, atomically (as :func:`write_bytes_atomic`)."""
    if not os.path.isfile(local_path):
        raise FileNotFoundError(f"upload_file: {local_path!r} is not a file")
    local = _local_path(fs, fs_path)
    if local is not None:
        _write_local_atomic(local, _file_chunks(local_path))
    else:
        _write_remote(fs, fs_path, _file_chunks(local_path))


def _run_all(tasks: List[Callable[[], None]]) -> None:
    """Runs the transfer ``tasks`` in threads (pyarrow releases the GIL); raises the first error."""
    if len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(_MAX_TRANSFER_THREADS, len(tasks)),
            thread_name_prefix="tune_storage") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:  # don't start what is left; running ones finish
                future.cancel()
            raise


def upload_dir(local_dir: str, fs: Any, fs_path: str,
               exclude: Collection[str] = ()) -> List[str]:
    """Copies the tree under ``local_dir`` into ``fs_path`` (merging with what is there).

    Each file is written atomically; the directory as a whole is not (see
    :func:`persist_checkpoint_dir` for that). Object stores keep no empty directories.

    Args:
        exclude: relative paths (with ``/``) not to copy.

    Returns:
        The relative paths (with ``/``) of the files copied.
    """
    if not os.path.isdir(local_dir):
        raise FileNotFoundError(f"upload_dir: {local_dir!r} is not a directory")
    local_dest = _local_path(fs, fs_path)
    files: List[str] = []
    tasks: List[Callable[[], None]] = []
    for root, dirs, names in os.walk(local_dir, followlinks=True):
        dirs.sort()
        rel_root = os.path.relpath(root, local_dir)
        rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/")
        if local_dest is not None:
            os.makedirs(os.path.join(local_dest, rel_root), exist_ok=True)
        for name in sorted(names):
            rel = posixpath.join(rel_root, name) if rel_root else name
            if rel in exclude:
                continue
            files.append(rel)
            src = os.path.join(root, name)
            dest = posixpath.join(fs_path, rel)
            tasks.append(lambda src=src, dest=dest: upload_file(src, fs, dest))
    _run_all(tasks)
    return files


def _download_file(fs: Any, fs_path: str, local_path: str) -> None:
    os.makedirs(os.path.dirname(local_path), exist_ok=True)
    with fs.open_input_stream(fs_path) as src, open(local_path, "wb") as dst:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            dst.write(chunk)


def download_dir(fs: Any, fs_path: str, local_dir: str,
                 exclude: Collection[str] = (),
                 skip: Optional[Callable[[str], bool]] = None) -> List[str]:
    """Copies the tree under ``fs_path`` into the local directory ``local_dir``.

    Args:
        exclude: relative paths (with ``/``) not to copy.
        skip: ``skip(relative_path)`` True leaves out that file or directory (and,
            for a directory, everything under it).

    Returns:
        The relative paths (with ``/``) of the files copied.

    Raises:
        FileNotFoundError: nothing is stored under ``fs_path``.
    """
    pafs = _pafs()
    base = fs_path.rstrip("/")
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"download_dir: {fs.type_name} path {fs_path!r} is not a "
                                f"directory" + (" (it does not exist)" if info.type ==
                                                 pafs.FileType.NotFound else ""))
    os.makedirs(local_dir, exist_ok=True)
    files: List[str] = []
    tasks: List[Callable[[], None]] = []
    skipped: List[str] = []
    for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        rel = entry.path[len(base):].lstrip("/")
        if not rel or rel in exclude:
            continue
        if any(rel.startswith(d + "/") for d in skipped):
            continue
        if skip is not None and skip(rel):
            if entry.type == pafs.FileType.Directory:
                skipped.append(rel)
            continue
        dest = os.path.join(local_dir, *rel.split("/"))
        if entry.type == pafs.FileType.Directory:
            os.makedirs(dest, exist_ok=True)
        elif entry.type == pafs.FileType.File:
            files.append(rel)
            tasks.append(lambda src=entry.path, dest=dest: _download_file(fs, src, dest))
    _run_all(tasks)
    return sorted(files)


# --------------------------------------------------------------------------- checkpoints


def persist_checkpoint_dir(local_src_dir: str, fs: Any, dest_fs_path: str) -> str:
    """Copies a checkpoint directory to storage so that it appears complete or not at all.

    Locally the files go to ``<dest>.tmp``, which is then renamed to ``<dest>``. On remote
    storage whatever a failed earlier attempt left at ``<dest>`` is deleted, the files
    are uploaded, and :data:`CHECKPOINT_MARKER` is written last. Calling it again after
    a failure is safe.

    Returns:
        ``dest_fs_path``.
    """
    if not os.path.isdir(local_src_dir):
        raise FileNotFoundError(f"persist_checkpoint_dir: {local_src_dir!r} is not a directory")
    local = _local_path(fs, dest_fs_path)
    if local is not None:
        local = local.rstrip("/") or local
        if os.path.abspath(local_src_dir) == os.path.abspath(local):
            return dest_fs_path
        tmp = local + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(local_src_dir, tmp, ignore=shutil.ignore_patterns(CHECKPOINT_MARKER))
            if os.path.isdir(local):  # an earlier attempt at the same checkpoint
                shutil.rmtree(local)
            os.replace(tmp, local)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(os.path.dirname(local))
        return dest_fs_path
    # Clearing an earlier attempt (its marker included) first means no reader takes a
    # mix of two attempts for a complete checkpoint.
    delete_dir(fs, dest_fs_path)
    files = upload_dir(local_src_dir, fs, dest_fs_path, exclude={CHECKPOINT_MARKER})
    marker = json.dumps({"files": len(files), "time": time.time()}).encode()
    write_bytes_atomic(fs, posixpath.join(dest_fs_path, CHECKPOINT_MARKER), marker)
    return dest_fs_path


def is_complete_checkpoint(fs: Any, path: str) -> bool:
    """Whether ``path`` holds a whole checkpoint written by :func:`persist_checkpoint_dir`.

    Locally: the directory exists and is not a ``.tmp`` one. Remotely: the marker is there.
    """
    local = _local_path(fs, path)
    if local is not None:
        local = local.rstrip("/")
        return not local.endswith(".tmp") and os.path.isdir(local)
    return exists(fs, posixpath.join(path, CHECKPOINT_MARKER))


# --------------------------------------------------------------------------- retries


def with_retries(fn: Callable[[], _T], what: str, *, attempts: int = 5, backoff: float = 0.5,
                 max_backoff: float = 8.0,
                 on_retry: Optional[Callable[[int, BaseException], None]] = None,
                 sleep: Callable[[float], None] = time.sleep,
                 timeout: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> _T:
    """Calls ``fn()`` until it succeeds, retrying transient storage errors.

    Transient means an ``OSError`` (pyarrow's network and I/O errors are OSErrors)
    other than not-found, exists, is-a-directory, not-a-directory or permission errors,
    which are raised at once. Between attempts it waits ``backoff`` seconds, doubling up
    to ``max_backoff``. ``fn`` must be safe to repeat (all helpers here are).

    Args:
        fn: the operation.
        what: what it does, for messages ("uploading checkpoint_000003 to s3://...").
        attempts: how many tries in all (>= 1).
        backoff: the first wait, in seconds.
        max_backoff: the longest wait.
        on_retry: called as ``on_retry(attempt, error)`` after a failed attempt that
            will be retried.
        sleep: the function that waits (tests pass a fake one).
        timeout: stop retrying once this many seconds have passed since the first
            attempt (None: only ``attempts`` limits it).
        clock: the clock ``timeout`` is measured on.

    Raises:
        StorageError: every attempt failed; names ``what`` and the last error, which is
            also its ``__cause__``.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"with_retries(attempts={attempts!r}) is not valid: use an int >= 1")
    if backoff < 0 or max_backoff < 0:
        raise ValueError(f"with_retries(backoff={backoff!r}, max_backoff={max_backoff!r}) is "
                         f"not valid: use seconds >= 0")
    delay = backoff
    last: Optional[BaseException] = None
    deadline = None if timeout is None else clock() + timeout
    attempt = 0
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except _PERMANENT_ERRORS:
            raise
        except OSError as e:
            last = e
            if attempt == attempts or (deadline is not None and clock() + delay > deadline):
                break
            logger.warning("%s failed (attempt %d of %d), retrying in %.1f s: %s",
                           what, attempt, attempts, delay, _first_line(e))
            if on_retry is not None:
                on_retry(attempt, e)
            sleep(delay)
            delay = min(delay * 2, max_backoff)
    raise StorageError(f"{what} failed after {attempt} attempt(s); last error: "
                       f"{type(last).__name__}: {_first_line(last)}") from last
