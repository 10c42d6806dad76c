"""The per-trial session inside a worker: ``report``, ``get_checkpoint``, ``get_context``.

One trial runs in a worker process at a time, so the session is a module global;
that also makes ``report`` work from any thread the user's code starts.
"""

from __future__ import annotations

import datetime
import os
import posixpath
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from tune_core.checkpoint import Checkpoint
from tune_core.error import TuneError

__all__ = ["report", "get_checkpoint", "get_context", "TuneContext"]

_session: Optional["_TrialSession"] = None
_HOSTNAME = socket.gethostname()


class _StopTrial(BaseException):
    """Raised inside ``report`` to end a trial the controller stopped or paused.

    A BaseException so that a user's ``except Exception`` does not swallow it.
    """


class TuneContext:
    """Describes the running trial (``tune.get_context()``)."""

    def __init__(self, session: "_TrialSession") -> None:
        self._s = session

    def get_trial_id(self) -> str:
        return self._s.trial_id

    def get_trial_name(self) -> str:
        return self._s.trial_name

    def get_trial_dir(self) -> str:
        return self._s.trial_dir

    def get_experiment_name(self) -> str:
        return self._s.experiment_name

    def get_trial_resources(self) -> Any:
        """The trial's ``PlacementGroupFactory``."""
        return self._s.resources

    def get_world_size(self) -> int:
        return 1

    def get_world_rank(self) -> int:
        return 0

    def get_local_rank(self) -> int:
        return 0

    def get_node_rank(self) -> int:
        return 0

    def get_local_world_size(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"TuneContext(trial_name={self.get_trial_name()!r})"


class _TrialSession:
    """State of one trial inside its worker: counters, the result buffer, stop flags."""

    def __init__(self, *, trial_id: str, trial_name: str, trial_dir: str, experiment_name: str,
                 resources: Any, config: Dict[str, Any], node_ip: str,
                 checkpoint_path: Optional[str], restored_iteration: int,
                 restored_time_total: float, checkpoint_index: int, lookahead: int,
                 storage_trial_dir: Optional[str] = None, storage: Any = None,
                 sync_timeout: float = 1800.0, sync_artifacts: bool = False,
                 sync_artifacts_on_checkpoint: bool = True) -> None:
        # lookahead: results a trial may run ahead of the driver; 0 means each report
        # waits until the driver has taken its result (a scheduler that pauses trials
        # then sees a trial at most one result ahead of its decision).
        self.trial_id = trial_id
        self.trial_name = trial_name
        self.trial_dir = trial_dir
        self.experiment_name = experiment_name
        self.resources = resources
        self.config = config
        self.node_ip = node_ip
        self.pid = os.getpid()
        # trial_dir is the working directory on this node; checkpoints go to
        # storage_trial_dir, on remote storage (fs) when there is one.
        self.storage_trial_dir = storage_trial_dir or trial_dir
        self.remote = storage is not None and not storage.is_local
        self.fs = storage.fs if self.remote else None
        self._storage = storage
        self.sync_timeout = sync_timeout
        self.sync_artifacts_enabled = bool(sync_artifacts) and self.remote
        self.sync_artifacts_on_checkpoint = sync_artifacts_on_checkpoint
        self.loaded_checkpoint = self.checkpoint(checkpoint_path) if checkpoint_path else None
        self.latest_checkpoint_path = checkpoint_path
        # Counters of the newest checkpoint, so a pause resumes counting from it.
        self.checkpoint_iteration = restored_iteration
        self.checkpoint_time_total = restored_time_total
        self.iteration = restored_iteration
        self.time_total = restored_time_total
        self.iterations_since_restore = 0
        self.start_time = time.time()
        self._last_report_time = self.start_time
        self.checkpoint_index = checkpoint_index
        self.lookahead = max(0, lookahead)
        # With lookahead 0 a report returns once the driver has decided on it: what one
        # fetch hands out, the driver's next fetch acknowledges (see take()).
        self._handed_out = 0
        self._acknowledged = 0
        # (iteration counter when reported, result), oldest first
        self._buffer: Deque[Tuple[int, Dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self.stop_requested = False
        self.pause_requested = False
        self.thread_done = False

    # --- called from the trial's thread ------------------------------------------------------
    def fill_auto_fields(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        now = time.time()
        result = dict(metrics)
        self.iteration += 1
        self.iterations_since_restore += 1
        time_this_iter = result.get("time_this_iter_s")
        if not isinstance(time_this_iter, (int, float)):
            time_this_iter = now - self._last_report_time
            result["time_this_iter_s"] = time_this_iter
        self._last_report_time = now
        self.time_total += time_this_iter
        result.setdefault("done", False)
        result.setdefault("training_iteration", self.iteration)
        result["trial_id"] = self.trial_id
        result["time_total_s"] = self.time_total
        result.setdefault("timestamp", int(now))
        result["date"] = datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d_%H-%M-%S")
        result["pid"] = self.pid
        result["hostname"] = _HOSTNAME
        result["node_ip"] = self.node_ip
        result["time_since_restore"] = now - self.start_time
        result["iterations_since_restore"] = self.iterations_since_restore
        return result

    # --- storage -----------------------------------------------------------------------------
    def checkpoint(self, path: str) -> Checkpoint:
        """A Checkpoint of ``path`` on this trial's storage."""
        return Checkpoint(path, filesystem=self.fs)

    def next_checkpoint(self) -> Tuple[str, str]:
        """The name and storage path of the next ``checkpoint_%06d``."""
        name = f"checkpoint_{self.checkpoint_index:06d}"
        self.checkpoint_index += 1
        join = posixpath.join if self.remote else os.path.join
        return name, join(self.storage_trial_dir, name)

    def with_retries(self, fn: Any, what: str) -> Any:
        """Runs a storage operation, retrying for up to ``sync_timeout`` seconds."""
        from tune_core import storage

        return storage.with_retries(fn, what, attempts=1_000_000, max_backoff=5.0,
                                    timeout=self.sync_timeout)

    def _where(self) -> str:
        from tune_core import storage

        uri = self._storage.experiment_uri if self._storage is not None else ""
        return storage.redact_uri(uri)

    def upload_checkpoint_dir(self, src: str, dest: str) -> None:
        """Copies the local checkpoint directory ``src`` to remote ``dest`` (complete or not
        at all), retrying while storage is unreachable."""
        from tune_core import storage

        self.with_retries(lambda: storage.persist_checkpoint_dir(src, self.fs, dest),
                          f"Uploading {posixpath.basename(dest)} of trial {self.trial_id} "
                          f"to {self._where()}")

    def download_checkpoint(self, checkpoint: Checkpoint) -> str:
        """A new local temporary directory holding ``checkpoint``'s files."""
        tmp = tempfile.mkdtemp(prefix="tune_checkpoint_")
        self.with_retries(lambda: checkpoint.to_directory(tmp),
                          f"Downloading checkpoint {checkpoint.path} of trial {self.trial_id}")
        return tmp

    def sync_artifacts(self) -> None:
        """Uploads the files of the working directory (``SyncConfig(sync_artifacts=True)``)."""
        if not self.sync_artifacts_enabled or not os.path.isdir(self.trial_dir):
            return
        from tune_core import storage

        self.with_retries(
            lambda: storage.upload_dir(self.trial_dir, self.fs, self.storage_trial_dir),
            f"Uploading the files of trial {self.trial_id} to {self._where()}")

    def persist_checkpoint(self, checkpoint: Checkpoint) -> str:
        """Copy a reported checkpoint to storage as ``checkpoint_%06d``; return its name.

        Nobody sees half a checkpoint: locally it is written under a temporary name
        and renamed; remotely its completion marker is uploaded last.
        """
        name, dest = self.next_checkpoint()
        downloaded = None
        src = checkpoint.path
        if not checkpoint._is_local():
            downloaded = src = self.download_checkpoint(checkpoint)
        try:
            if self.remote:
                self.upload_checkpoint_dir(src, dest)
            elif os.path.abspath(src) != os.path.abspath(dest):
                tmp = dest + ".tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp)
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
        finally:
            if downloaded is not None:
                shutil.rmtree(downloaded, ignore_errors=True)
        self.note_checkpoint(dest)
        self.loaded_checkpoint = self.checkpoint(dest)
        if self.sync_artifacts_on_checkpoint:
            self.sync_artifacts()
        return name

    def note_checkpoint(self, path: str) -> None:
        """``path`` holds the state as of the current iteration."""
        self.latest_checkpoint_path = path
        self.checkpoint_iteration = self.iteration
        self.checkpoint_time_total = self.time_total

    def put(self, result: Dict[str, Any], *, raise_on_stop: bool = True) -> bool:
        """Queue a result for the driver; blocks while the look-ahead buffer is full.

        When the trial is asked to stop before the result is queued, raises
        ``_StopTrial`` (or returns False with ``raise_on_stop=False``).
        """
        with self._cond:
            while len(self._buffer) >= max(1, self.lookahead) and not self.stop_requested:
                self._cond.wait(0.5)
            if self.stop_requested:
                if raise_on_stop:
                    raise _StopTrial()
                return False
            self._buffer.append((self.iteration, result))
            self._cond.notify_all()
            if self.lookahead == 0:  # wait until the driver has decided on it
                mine = self._handed_out + len(self._buffer)
                while self._acknowledged < mine and not self.stop_requested:
                    self._cond.wait(0.5)
            return True

    def put_last(self, result: Dict[str, Any]) -> None:
        """Queue the last result of a paused trial (the stop request is already known)."""
        with self._cond:
            self._buffer.append((self.iteration, result))
            self._cond.notify_all()

    def drop_after_checkpoint(self) -> None:
        """Forget queued results newer than the newest checkpoint: a resumed trial
        reports them again."""
        with self._cond:
            keep = [item for item in self._buffer if item[0] <= self.checkpoint_iteration]
            self._buffer.clear()
            self._buffer.extend(keep)

    def check_stop(self) -> None:
        if self.stop_requested:
            raise _StopTrial()

    def report(self, metrics: Dict[str, Any], checkpoint: Optional[Checkpoint] = None) -> None:
        self.check_stop()
        if not isinstance(metrics, dict):
            raise TypeError(f"tune.report(metrics) takes a dict of metric name to value, got "
                            f"{type(metrics).__name__}: {metrics!r}")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError("tune.report(checkpoint=...) takes a tune.Checkpoint (for example "
                            f"Checkpoint.from_directory(path)), got {checkpoint!r}")
        result = self.fill_auto_fields(metrics)
        if checkpoint is not None:
            result["checkpoint_dir_name"] = self.persist_checkpoint(checkpoint)
        if not self.put(result, raise_on_stop=False):
            if self.pause_requested and checkpoint is not None:
                # The trial resumes from this checkpoint, so its result must be kept.
                self.put_last(result)
            raise _StopTrial()
        if self.lookahead == 0:
            self.check_stop()  # paused or stopped at this very result: no step past it

    # --- called from the worker's fetch ------------------------------------------------------
    def take(self, timeout: float, ack: bool = True) -> List[Dict[str, Any]]:
        """Wait up to ``timeout`` for results (or the end of the thread) and take them all.

        ``ack``: the driver has decided on everything it took before, so reports
        waiting for that (lookahead 0) return.
        """
        with self._cond:
            if ack:
                self._acknowledged = self._handed_out
                self._cond.notify_all()
            if not self._buffer and not self.thread_done:
                self._cond.wait(timeout)
            out = [result for _, result in self._buffer]
            self._handed_out += len(out)
            self._buffer.clear()
            self._cond.notify_all()
            return out

    def mark_done(self) -> None:
        with self._cond:
            self.thread_done = True
            self._cond.notify_all()

    def request_stop(self, pause: bool = False) -> None:
        with self._cond:
            self.stop_requested = True
            self.pause_requested = pause
            self._cond.notify_all()


def _current(name: str) -> _TrialSession:
    if _session is None:
        raise TuneError(
            f"tune.{name}() was called outside a trial. It only works inside a trainable "
            "that tune_core runs, e.g. a function passed to tune.Tuner(train_fn, ...).fit().")
    return _session


def report(metrics: Dict[str, Any], *, checkpoint: Optional[Checkpoint] = None) -> None:
    """Report metrics (and optionally a checkpoint) for the current trial.

    Args:
        metrics: a dict of metric name to value; automatic fields such as
            ``training_iteration`` and ``time_total_s`` are added.
        checkpoint: a ``Checkpoint`` of a directory you wrote; it is copied into
            the trial's storage before ``report`` returns.
    """
    _current("report").report(metrics, checkpoint)


def get_checkpoint() -> Optional[Checkpoint]:
    """The checkpoint to resume from (after a restart, a pause or a restore), or None."""
    return _current("get_checkpoint").loaded_checkpoint


def get_context() -> TuneContext:
    """Describes the current trial: id, name, directory, experiment name, resources."""
    return TuneContext(_current("get_context"))


def _set_session(session: Optional[_TrialSession]) -> None:
    global _session
    _session = session
