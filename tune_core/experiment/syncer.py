"""Keeps the experiment's files on storage up to date, in a background thread.

The driver writes its files (logs, error files, experiment state) on its own disk.
With remote storage, :class:`ExperimentSyncer` uploads what changed every
``sync_period`` seconds and at the end; uploads run in a thread of their own, so
a slow or unreachable storage service never holds up the controller loop. A failed
upload is retried (in the round and in the next ones) and reported; the final
sync waits up to ``sync_timeout``.

Each round keeps the copy on storage consistent for ``Tuner.restore``: it reads
the experiment state first, then uploads the log files (which are at least as new
as that state, since the loggers flush before each state write), then the state.

Checkpoints that retention dropped are deleted here too, and only once a state that
no longer references them is safe (on the local disk, or uploaded), so a restore
never finds its checkpoint gone.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tune_core import storage as storage_mod
from tune_core.experiment.experiment_state import (
    STATE_FILE, _PICKLE_PREFIX, finished_files)

__all__ = ["ExperimentSyncer"]

logger = logging.getLogger(__name__)


def _is_temporary(name: str) -> bool:
    return name.endswith(".tmp") or ".tmp-" in name or (name.startswith(".") and
                                                         ".tmp" in name)


class ExperimentSyncer:
    """Uploads ``storage.local_experiment_dir`` to remote storage; deletes checkpoints.

    Args:
        storage: the experiment's ``StorageContext``.
        sync_period: seconds between upload rounds (remote storage only).
        sync_timeout: how long the final round may keep retrying.
        warn: where problems are reported (a line of text each); the console by default.
    """

    def __init__(self, storage: Any, *, sync_period: float = 300.0,
                 sync_timeout: float = 1800.0,
                 warn: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._storage = storage
        self.remote = not storage.is_local
        self._local_dir = storage.local_experiment_dir
        self._sync_period = sync_period
        self._sync_timeout = sync_timeout
        self._warn = warn or (lambda text: logger.warning("%s", text))
        self._clock = clock
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._requested = False       # a round is wanted
        self._running = False         # a round is in progress
        self._closing = False
        self._last_round = -float("inf")
        self._uploaded: Dict[str, Any] = {}  # relative path -> (size, mtime_ns) or size
        self._uploaded_generation = -1
        self._first_state_seen = False
        self._awaiting_state: List[str] = []  # deletes waiting for the next state upload
        self._deletes: List[str] = []         # deletes that may go now
        self.last_error: Optional[str] = None
        self.num_rounds = 0
        self.num_failed_rounds = 0
        self._warned_at = -float("inf")

    # --- called from the controller's thread --------------------------------------------------
    def due(self) -> bool:
        """Whether a periodic upload round should start now.

        Also as soon as the first experiment state exists, so that an experiment on
        remote storage can be restored from there early on, not only after a period.
        """
        if not self.remote:
            return False
        now = self._clock()
        if now - self._last_round >= self._sync_period:
            return True
        if self._uploaded_generation < 0 and not self._first_state_seen and \
                now - self._last_round >= 1.0:
            self._first_state_seen = os.path.exists(os.path.join(self._local_dir, STATE_FILE))
            return self._first_state_seen
        return False

    def sync(self) -> None:
        """Start an upload round in the background (merged with one already waiting)."""
        self._last_round = self._clock()
        if self.remote:
            self._request()

    def state_written(self, obsolete_checkpoints: List[str]) -> None:
        """A state that no longer references ``obsolete_checkpoints`` was written locally.

        Locally that state is already what a restore reads, so they go now; remotely
        they go after the next round has uploaded that state.
        """
        if not obsolete_checkpoints:
            return
        with self._cond:
            if self.remote:
                self._awaiting_state.extend(obsolete_checkpoints)
            else:
                self._deletes.extend(obsolete_checkpoints)
                self._requested = True
                self._cond.notify_all()
        self._ensure_thread()

    def close(self) -> bool:
        """The final round: everything uploaded (retrying up to ``sync_timeout``) and the
        deletes done. Returns whether all of it succeeded; reports what did not."""
        deadline = self._clock() + self._sync_timeout
        ok = True
        if self._thread is not None or self.remote or self._deletes:
            self._ensure_thread()
            with self._cond:
                self._closing = True
                self._requested = True
                self._cond.notify_all()
                while self._thread is not None and self._thread.is_alive() and \
                        self._clock() < deadline:
                    self._cond.wait(0.2)
                ok = self._thread is None or not self._thread.is_alive()
            ok = ok and self.last_error is None
        if not ok:
            where = storage_mod.redact_uri(self._storage.experiment_uri)
            self._warn(f"Some experiment files could not be written to {where} within "
                       f"sync_timeout={self._sync_timeout:g} s (last error: {self.last_error}). "
                       f"They are kept in {self._local_dir}; copy them there once the "
                       "storage is reachable.")
        return ok

    # --- the background thread ----------------------------------------------------------------
    def _request(self) -> None:
        with self._cond:
            self._requested = True
            self._cond.notify_all()
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="tune_core-syncer")
            self._thread.start()

    def _loop(self) -> None:
        retry_delay = 1.0
        while True:
            with self._cond:
                while not self._requested:
                    self._cond.wait()
                self._requested = False
                self._running = True
                closing = self._closing
            ok = self._round()
            with self._cond:
                self._running = False
                if ok:
                    retry_delay = 1.0
                    if closing:
                        self._cond.notify_all()
                        return
                else:
                    # Retried soon (and at the next period); the final round keeps trying.
                    self._requested = True
                    self._cond.wait(retry_delay)
                    retry_delay = min(retry_delay * 2, 15.0)
                self._cond.notify_all()

    def _round(self) -> bool:
        self.num_rounds += 1
        try:
            if self.remote:
                with self._cond:
                    awaiting = list(self._awaiting_state)
                state = self._read_state()
                self._upload_files()
                if state is not None:
                    self._upload_state(*state)
                with self._cond:
                    # The state just uploaded was read after these deletes were queued.
                    del self._awaiting_state[:len(awaiting)]
                    self._deletes.extend(awaiting)
            self._run_deletes()
        except Exception as exc:  # reported, and retried by the loop
            self.num_failed_rounds += 1
            self.last_error = f"{type(exc).__name__}: {storage_mod._first_line(exc)}"
            now = self._clock()
            if now - self._warned_at > 30.0:
                self._warned_at = now
                where = storage_mod.redact_uri(self._storage.experiment_uri)
                self._warn(f"Uploading experiment files to {where} failed; retrying. "
                           f"({self.last_error})")
            return False
        self.last_error = None
        return True

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return storage_mod.with_retries(fn, what, attempts=3, backoff=0.5)

    def _read_state(self) -> Optional[Tuple[int, bytes, bytes, List[Tuple[str, bytes]]]]:
        """The newest consistent (generation, pickle, JSON, finished-trial files) on the
        local disk; each finished-trial file cut to the bytes the JSON says are its."""
        for _ in range(10):
            try:
                with open(os.path.join(self._local_dir, STATE_FILE), "rb") as f:
                    data = f.read()
                json_state = json.loads(data)
                gen = int(json_state["generation"])
                with open(os.path.join(self._local_dir, f"{_PICKLE_PREFIX}{gen:06d}.pkl"),
                          "rb") as f:
                    pickled = f.read()
                finished = []
                for name, size in finished_files(json_state):
                    with open(os.path.join(self._local_dir, name), "rb") as f:
                        finished.append((name, f.read(size)))
                return gen, pickled, data, finished
            except FileNotFoundError:
                # Not written yet, or replaced by a newer generation while reading it.
                if not os.path.exists(os.path.join(self._local_dir, STATE_FILE)):
                    return None
        raise OSError("the experiment state kept changing while it was read for upload")

    def _upload_files(self) -> None:
        fs = self._storage.fs
        dest_root = self._storage.experiment_fs_path
        for root, dirs, names in os.walk(self._local_dir):
            dirs.sort()
            rel_root = os.path.relpath(root, self._local_dir)
            rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/")
            for name in sorted(names):
                if _is_temporary(name) or (not rel_root and (
                        name == STATE_FILE or name.startswith(_PICKLE_PREFIX))):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                rel = posixpath.join(rel_root, name) if rel_root else name
                version = (st.st_size, st.st_mtime_ns)
                if self._uploaded.get(rel) == version:
                    continue
                dest = posixpath.join(dest_root, rel)
                self._retry(lambda: storage_mod.upload_file(path, fs, dest),
                            f"Uploading {rel}")
                self._uploaded[rel] = version

    def _upload_state(self, gen: int, pickled: bytes, data: bytes,
                      finished: List[Tuple[str, bytes]] = ()) -> None:
        if gen == self._uploaded_generation:
            return
        fs = self._storage.fs
        root = self._storage.experiment_fs_path
        pkl_name = f"{_PICKLE_PREFIX}{gen:06d}.pkl"
        # What the JSON names goes first (the finished trials' files, the pickle): a
        # reader follows the JSON. An append-only file is uploaded again only when it grew.
        for name, content in finished:
            if self._uploaded.get(name) == len(content):
                continue
            self._retry(lambda: storage_mod.write_bytes_atomic(
                fs, posixpath.join(root, name), content), "Uploading the experiment state")
            self._uploaded[name] = len(content)
        self._retry(lambda: storage_mod.write_bytes_atomic(
            fs, posixpath.join(root, pkl_name), pickled), "Uploading the experiment state")
        self._retry(lambda: storage_mod.write_bytes_atomic(
            fs, posixpath.join(root, STATE_FILE), data), "Uploading the experiment state")
        self._uploaded_generation = gen
        keep = {pkl_name, *(name for name, _ in finished)}
        for name in storage_mod.list_dir(fs, root):
            if name.startswith(_PICKLE_PREFIX) and name not in keep and \
                    (name.endswith(".pkl") or name.endswith(".jsonl")):
                try:
                    fs.delete_file(posixpath.join(root, name))
                except OSError:
                    pass  # left for the next round; readers follow the JSON

    def _run_deletes(self) -> None:
        with self._cond:
            todo = list(self._deletes)
        if not todo:
            return
        fs = self._storage.fs
        for path in todo:
            self._retry(lambda: storage_mod.delete_dir(fs, path), f"Deleting {path}")
            with self._cond:
                self._deletes.remove(path)
