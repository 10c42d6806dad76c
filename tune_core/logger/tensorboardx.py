"""``TBXLoggerCallback``: TensorBoard event files (scalars and HParams) per trial.

The files are written without tensorboardX (``_tfevents`` encodes the few messages
needed): importing it would cost a driver 0.13 s or more. As in Ray Tune, the logger
is on by default only where tensorboardX is installed (the ``tensorboard`` extra, which
also brings the C CRC-32C that makes writing events cheap).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from tune_core._util import flatten_dict
from tune_core.logger import _tfevents
from tune_core.logger.logger import LoggerCallback

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["TBXLoggerCallback"]

logger = logging.getLogger(__name__)

EVENT_FILE_PREFIX = "events"  # files are named events.out.tfevents.<time>.<host>.<suffix>
_EVENT_FILE_START = f"{EVENT_FILE_PREFIX}.out.tfevents."

# Result keys that are not metrics worth a curve: the step itself, the config (it goes
# to the HParams view), and bookkeeping that is the same for every step or a wall clock.
_NOT_SCALARS = frozenset({"config", "training_iteration", "timestamp", "pid"})

# The automatic fields: logged as curves, but left out of the HParams view's metric
# columns so that the user's metrics are not drowned in bookkeeping.
_AUTO_FIELDS = frozenset({
    "done", "trial_id", "experiment_tag", "date", "hostname", "node_ip", "time_this_iter_s",
    "time_total_s", "time_since_restore", "iterations_since_restore", "timesteps_total",
    "timesteps_since_restore", "episodes_total", "should_checkpoint", "checkpoint_dir_name",
})

# HParams values longer than this (the str of a large config object) are cut.
_MAX_HPARAM_STR = 500

_HOSTNAME = socket.gethostname()


def tensorboardx_available() -> bool:
    """True if tensorboardX can be imported (without importing it when it cannot)."""
    import importlib.util

    return importlib.util.find_spec("tensorboardX") is not None


class _EventFile:
    """One event file: TFRecords of ``Event`` messages (see ``_tfevents``), named as
    tensorboardX names them, first event the file version. ``flush`` hands the bytes to
    the OS without an fsync: like the JSON and CSV logs, the file survives a crash of the
    driver, and a trial start or end does not wait for the disk (tensorboardX fsyncs on
    every flush: two waits per trial)."""

    def __init__(self, file_prefix: str, filename_suffix: str = "") -> None:
        self.path = (f"{file_prefix}.out.tfevents.{str(time.time())[:10]}."
                     f"{_HOSTNAME}{filename_suffix}")
        self._file = open(self.path, "ab")
        self.write_event(_tfevents.event(time.time(), file_version="brain.Event:2"))

    def write_event(self, event: bytes) -> None:
        self._file.write(_tfevents.record(event))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _TrialWriter:
    """A trial's open event file and its flush bookkeeping."""

    __slots__ = ("writer", "last_flush", "dirty")

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.last_flush = -math.inf
        self.dirty = False


class TBXLoggerCallback(LoggerCallback):
    """Writes each trial's metrics and hyperparameters as TensorBoard event files.

    On by default when tensorboardX is installed. Point TensorBoard at the
    experiment directory (``tensorboard --logdir <storage_path>/<name>``): each
    trial is one run.

    * Scalars: every numeric value of every result, nested dicts flattened with
      ``/`` (``{"a": {"b": 1}}`` gives the tag ``a/b``), at step
      ``training_iteration``. Booleans, strings, lists and the ``config`` key
      are not written; nor are ``training_iteration`` (it is the step),
      ``timestamp`` and ``pid``.
    * HParams: when the trial ends, its config (flattened with ``/``; numbers,
      strings and booleans as they are, anything else as its ``str``) and its
      final metrics (the last result's user metrics, not the automatic fields),
      with the session status (success or failure). They are written into the
      trial's own event files, so TensorBoard's HParams view pairs them with
      the trial's curves. TensorBoard takes the columns (hparam and metric
      names) from one run's summary, which is right when trials share their
      config keys and metric names; and it keeps the first HParams a run holds,
      so a trial that ends again (an errored trial resumed by
      ``Tuner.restore(..., resume_errored=True)``) shows its first status.

    A trial that starts again (after a pause, a failure, or a scheduler's
    restart) gets a new event file in the same directory; TensorBoard reads
    the files in order, so the curves continue. When it resumes from a
    checkpoint at iteration ``k`` (or starts over from scratch, ``k = 0``),
    the new file begins with a restart marker at step ``k + 1``, and
    TensorBoard drops the points the earlier attempt wrote after ``k``: each
    step then shows once, as in ``result.json``.

    Differences from Ray Tune: tags are the metric names themselves (Ray Tune
    prefixes ``ray/tune/``), the step is always ``training_iteration``, the
    HParams status says whether the trial failed, and a resumed trial's
    repeated steps are hidden.

    Events are written synchronously on the driver (no thread per trial) and
    handed to the OS at most every ``flush_interval_s`` seconds while a trial
    runs, and always when it ends: after ``log_trial_end`` its files are
    complete and closed.

    Args:
        flush_interval_s: The longest events may wait in a buffer while the
            trial keeps running, in seconds (0 flushes after every result).
    """

    def __init__(self, *, flush_interval_s: float = 2.0) -> None:
        if (isinstance(flush_interval_s, bool) or not isinstance(flush_interval_s, numbers.Real)
                or not flush_interval_s >= 0):
            raise ValueError(
                f"TBXLoggerCallback: `flush_interval_s` must be a number of seconds >= 0 "
                f"(0 flushes after every result); got {flush_interval_s!r}.")
        self._flush_interval_s = float(flush_interval_s)
        self._init_runtime()

    def _init_runtime(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._writers: Dict[str, _TrialWriter] = {}
        self._warned_no_dir: Set[str] = set()
        self._last_sweep = -math.inf

    def __getstate__(self) -> Dict[str, Any]:
        return {"_flush_interval_s": self._flush_interval_s}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # --- hooks ---------------------------------------------------------------------------------

    def log_trial_start(self, trial: "Trial") -> None:
        with self._lock:
            self._open(trial)

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict[str, Any]) -> None:
        step = result.get("training_iteration")
        if not isinstance(step, numbers.Integral) or isinstance(step, bool):
            step = None
        summary = _scalars_summary(result)
        with self._lock:
            entry = self._writers.get(trial.trial_id)
            if entry is None:
                entry = self._open(trial)  # a result before (or without) log_trial_start
                if entry is None:
                    return
            if summary is not None:
                self._write(entry, summary, step)
                self._written(entry)

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        with self._lock:
            entry = self._writers.pop(trial.trial_id, None)
            if entry is None:
                return
            try:
                for summary in _hparams_summaries(trial, failed):
                    self._write(entry, summary, 0)
            except Exception:  # never let a bad config stop the experiment
                logger.warning("TBXLoggerCallback: could not write the HParams of trial %s",
                               trial.trial_name, exc_info=True)
            finally:
                entry.writer.close()  # flushes

    def on_step_end(self, iteration: int, trials: List["Trial"], **info: Any) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last_sweep < self._flush_interval_s / 2:
                return
            self._last_sweep = now
            for entry in self._writers.values():
                if entry.dirty and now - entry.last_flush >= self._flush_interval_s:
                    self._flush_entry(entry, now)

    def flush(self) -> None:
        """Hand everything written so far to the OS (before the experiment state is saved)."""
        with self._lock:
            now = self._clock()
            for entry in self._writers.values():
                if entry.dirty:
                    self._flush_entry(entry, now)

    def on_experiment_end(self, trials: List["Trial"], **info: Any) -> None:
        with self._lock:
            writers, self._writers = self._writers, {}
            for entry in writers.values():
                try:
                    entry.writer.close()
                except OSError:
                    logger.warning("TBXLoggerCallback: could not close an event file",
                                   exc_info=True)

    # --- mechanics -----------------------------------------------------------------------------

    def _open(self, trial: "Trial") -> Optional[_TrialWriter]:
        """Opens a new event file for ``trial`` (closing the one it had)."""
        old = self._writers.pop(trial.trial_id, None)
        if old is not None:
            old.writer.close()
        path = trial.local_path
        if not path:
            if trial.trial_id not in self._warned_no_dir:
                self._warned_no_dir.add(trial.trial_id)
                logger.warning("TBXLoggerCallback: trial %s has no directory "
                               "(trial.local_path is empty); not logging it.", trial.trial_id)
            return None
        try:
            restarting = any(name.startswith(_EVENT_FILE_START) for name in os.listdir(path))
        except FileNotFoundError:
            os.makedirs(path, exist_ok=True)
            restarting = False

        # tensorboardX names a file by the second it was created and opens it with "wb":
        # the suffix keeps a restart within the same second from truncating the earlier
        # file, and sorts after it (TensorBoard reads a run's files in name order).
        writer = _EventFile(os.path.join(path, EVENT_FILE_PREFIX),
                            filename_suffix=f".{time.time_ns()}")
        entry = _TrialWriter(writer)
        keep = getattr(trial, "resume_iteration", None)
        if restarting and keep is not None:
            # TensorBoard drops the earlier points at steps >= this one (tensorboardX's
            # `purge_step`): the steps after the checkpoint are reported again.
            writer.write_event(_tfevents.event(time.time(), int(keep) + 1,
                                               session_start=True))
        self._writers[trial.trial_id] = entry
        self._flush_entry(entry, self._clock())  # the file exists (and is readable) at once
        return entry

    @staticmethod
    def _write(entry: _TrialWriter, summary: bytes, step: Optional[int]) -> None:
        entry.writer.write_event(_tfevents.event(time.time(), step, summary=summary))

    def _written(self, entry: _TrialWriter) -> None:
        now = self._clock()
        if now - entry.last_flush >= self._flush_interval_s:
            self._flush_entry(entry, now)
        else:
            entry.dirty = True

    @staticmethod
    def _flush_entry(entry: _TrialWriter, now: float) -> None:
        entry.writer.flush()
        entry.last_flush = now
        entry.dirty = False


# --- summaries -----------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    # numpy scalars register as numbers.Real; bools (Python's and numpy's) are left out.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _metric_items(result: Mapping[str, Any]) -> List[Tuple[str, float]]:
    """The (tag, value) pairs of ``result`` that become scalars."""
    if any(key in result for key in _NOT_SCALARS):
        result = {k: v for k, v in result.items() if k not in _NOT_SCALARS}
    items = []
    for key, value in flatten_dict(result, delimiter="/").items():
        if _is_number(value):
            try:
                items.append((str(key), float(value)))
            except (TypeError, ValueError, OverflowError):
                continue
    return items


def _scalars_summary(result: Mapping[str, Any]) -> Optional[bytes]:
    """One ``Summary`` holding every scalar of ``result`` (None if it has none)."""
    return _tfevents.scalars_summary(_metric_items(result))


def _hparam_value(value: Any) -> Any:
    """A value the HParams view shows: a number, a string or a bool."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_":  # numpy's bool
        return bool(value)
    if _is_number(value):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, str):
        text = value
    else:
        text = str(getattr(value, "__name__", None) or value) if callable(value) else str(value)
    return text if len(text) <= _MAX_HPARAM_STR else text[:_MAX_HPARAM_STR - 3] + "..."


def _hparams_summaries(trial: "Trial", failed: bool) -> List[bytes]:
    """The HParams plugin's experiment, session-start and session-end summaries."""
    hparams = []
    for key, raw in flatten_dict(dict(trial.config or {}), delimiter="/").items():
        if raw is None:
            continue
        value = _hparam_value(raw)
        kind = _tfevents.BOOL if isinstance(value, bool) else \
            _tfevents.FLOAT64 if isinstance(value, float) else _tfevents.STRING
        hparams.append((str(key), value, kind))
    last = trial.last_result or {}
    metric_tags = sorted({tag for tag, _ in _metric_items(last) if tag not in _AUTO_FIELDS})
    start = float(trial.start_time) if trial.start_time is not None else None
    return _tfevents.hparams_summaries(hparams, metric_tags, start, time.time(), failed)
