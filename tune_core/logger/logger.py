"""``LoggerCallback``: the base of callbacks that log trials (Ray Tune's interface).

Also holds the private machinery the file loggers share: per-trial append-mode
files flushed on a cadence, and a JSON encoder that never fails.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Set, TextIO

from tune_core.callback import Callback

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["LoggerCallback"]

logger = logging.getLogger(__name__)


class LoggerCallback(Callback):
    """Base class for callbacks that log trial events.

    It turns the controller's callback hooks into five simpler methods, all
    no-ops by default:

    ======================  ==========================================
    hook                    calls
    ======================  ==========================================
    ``on_trial_start``      ``log_trial_start(trial)``
    ``on_trial_restore``    ``log_trial_restore(trial)``
    ``on_trial_save``       ``log_trial_save(trial)``
    ``on_trial_result``     ``log_trial_result(iteration, trial, result)``
    ``on_trial_complete``   ``log_trial_end(trial, failed=False)``
    ``on_trial_error``      ``log_trial_end(trial, failed=True)``
    ======================  ==========================================

    A trial may start several times (after a pause or a failure it is started
    again), so ``log_trial_start`` must tolerate a trial it already knows.
    Implementations release what they hold for a trial (open files, writers)
    in ``log_trial_end``, so that long experiments do not leak resources.
    """

    def log_trial_start(self, trial: "Trial") -> None:
        """Handles a trial starting (or starting again after a pause or failure).

        Args:
            trial: The trial.
        """

    def log_trial_restore(self, trial: "Trial") -> None:
        """Handles a trial being restored from a checkpoint.

        Args:
            trial: The trial.
        """

    def log_trial_save(self, trial: "Trial") -> None:
        """Handles a trial having saved a checkpoint.

        Args:
            trial: The trial.
        """

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict[str, Any]) -> None:
        """Handles a result reported by a trial.

        Args:
            iteration: The controller's step counter when the result arrived.
            trial: The trial that reported it.
            result: The result dict (treat it as read-only).
        """

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        """Handles a trial ending; release what is held for it here.

        Args:
            trial: The trial.
            failed: True if the trial ended in error, False if it completed.
        """

    def on_trial_result(self, iteration: int, trials: List["Trial"], trial: "Trial",
                        result: Dict[str, Any], **info: Any) -> None:
        self.log_trial_result(iteration, trial, result)

    def on_trial_start(self, iteration: int, trials: List["Trial"], trial: "Trial",
                       **info: Any) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: List["Trial"], trial: "Trial",
                         **info: Any) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: List["Trial"], trial: "Trial",
                      **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_complete(self, iteration: int, trials: List["Trial"], trial: "Trial",
                          **info: Any) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: List["Trial"], trial: "Trial",
                       **info: Any) -> None:
        self.log_trial_end(trial, failed=True)


# --- private: files kept open per trial, flushed on a cadence ----------------------------------

class _OpenFile:
    __slots__ = ("path", "handle", "last_flush", "dirty")

    def __init__(self, path: str, handle: TextIO) -> None:
        self.path = path
        self.handle = handle
        self.last_flush = -math.inf  # the first write is flushed at once
        self.dirty = False


class _TrialFiles:
    """One append-mode file per trial, flushed at most every ``flush_interval_s``.

    A write flushes its file when the file's last flush is older than the
    interval; :meth:`flush_due` (called once per controller step) flushes the
    files that have unflushed data and were last flushed longer ago than that,
    so a file is flushed at most once per interval while data never waits
    much longer than the interval, whatever the reporting rate. Not
    thread-safe: the owner holds a lock.
    """

    def __init__(self, flush_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = flush_interval_s
        self._clock = clock
        self._files: Dict[str, _OpenFile] = {}
        self._last_sweep = -math.inf

    def __len__(self) -> int:
        return len(self._files)

    def keys(self) -> List[str]:
        return list(self._files)

    def get(self, key: str) -> Optional[_OpenFile]:
        return self._files.get(key)

    def open(self, key: str, path: str, newline: Optional[str] = None) -> _OpenFile:
        """Opens ``path`` for appending (closing any file already open for ``key``)."""
        self.close(key)
        # A run killed mid-write can leave a last line without its newline: end it, so the
        # next record starts on a line of its own instead of corrupting a good one.
        needs_newline = False
        try:
            with open(path, "rb") as existing:
                existing.seek(0, os.SEEK_END)
                if existing.tell() > 0:
                    existing.seek(-1, os.SEEK_END)
                    needs_newline = existing.read(1) not in (b"\n", b"\r")
        except FileNotFoundError:
            pass
        handle = open(path, "a", encoding="utf-8", newline=newline)
        if needs_newline:
            handle.write("\n")
        entry = _OpenFile(path, handle)
        self._files[key] = entry
        return entry

    def written(self, entry: _OpenFile) -> None:
        """Records a write to ``entry``; flushes it if its last flush is old enough."""
        now = self._clock()
        if now - entry.last_flush >= self._interval:
            entry.handle.flush()
            entry.last_flush = now
            entry.dirty = False
        else:
            entry.dirty = True

    def flush_due(self) -> None:
        """Flushes every file with unflushed data whose last flush is older than the interval.

        Cheap to call often: it looks at the files at most twice per interval, so
        data waits at most about 1.5 intervals in a buffer.
        """
        now = self._clock()
        if now - self._last_sweep < self._interval / 2:
            return
        self._last_sweep = now
        for entry in self._files.values():
            if entry.dirty and now - entry.last_flush >= self._interval:
                entry.handle.flush()
                entry.last_flush = now
                entry.dirty = False

    def flush_all(self) -> None:
        for entry in self._files.values():
            if entry.dirty:
                entry.handle.flush()
                entry.dirty = False

    def close(self, key: str) -> None:
        entry = self._files.pop(key, None)
        if entry is not None:
            entry.handle.close()  # flushes

    def close_all(self) -> None:
        errors: List[BaseException] = []
        for key in list(self._files):
            try:
                self.close(key)
            except OSError as exc:  # close the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


class _FileLoggerCallback(LoggerCallback):
    """Shared mechanics of the loggers that append to one file per trial.

    Thread-safe (one lock per callback); picklable (open files are not part of
    the state: a restored callback reopens files in append mode when trials
    start again).
    """

    def __init__(self, *, flush_interval_s: float = 0.5) -> None:
        if (isinstance(flush_interval_s, bool) or not isinstance(flush_interval_s, numbers.Real)
                or not flush_interval_s >= 0):
            raise ValueError(
                f"{type(self).__name__}: `flush_interval_s` must be a number of seconds "
                f">= 0 (0 flushes after every result); got {flush_interval_s!r}.")
        self._flush_interval_s = float(flush_interval_s)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.RLock()
        self._files = _TrialFiles(self._flush_interval_s)
        self._warned_no_dir: Set[str] = set()

    def __getstate__(self) -> Dict[str, Any]:
        return {"_flush_interval_s": self._flush_interval_s}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def _trial_dir(self, trial: "Trial") -> Optional[str]:
        """The trial's local directory, created if needed; None (warned once) if it has none.

        Loggers write on the driver's disk; with remote storage the files are
        uploaded from there.
        """
        path = trial.local_path
        if not path:
            if trial.trial_id not in self._warned_no_dir:
                self._warned_no_dir.add(trial.trial_id)
                logger.warning("%s: trial %s has no directory (trial.local_path is empty); "
                               "not logging it.", type(self).__name__, trial.trial_id)
            return None
        os.makedirs(path, exist_ok=True)
        return path

    def _forget_trial(self, trial_id: str) -> None:
        """Drops per-trial state beyond the open file (subclasses extend)."""

    def _prepare_resume(self, trial: "Trial", path: str) -> None:
        """A trial (re)starting from a checkpoint reports the iterations after it again:
        drop those rows now so that each ``training_iteration`` is in the file once."""
        keep = getattr(trial, "resume_iteration", None)
        if keep is None:
            return
        self._files.close(trial.trial_id)
        if os.path.exists(path):
            _rewrite_atomically(path, lambda lines: self._keep_rows(lines, keep))

    @staticmethod
    def _keep_rows(lines: List[str], keep_iteration: int) -> List[str]:
        raise NotImplementedError

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        with self._lock:
            self._forget_trial(trial.trial_id)
            self._files.close(trial.trial_id)

    def on_step_end(self, iteration: int, trials: List["Trial"], **info: Any) -> None:
        with self._lock:
            self._files.flush_due()

    def flush(self) -> None:
        """Hand everything written so far to the OS (before the experiment state is saved,
        so the state never claims results that a killed driver had not written)."""
        with self._lock:
            self._files.flush_all()

    def on_experiment_end(self, trials: List["Trial"], **info: Any) -> None:
        with self._lock:
            for key in self._files.keys():
                self._forget_trial(key)
            self._files.close_all()


# --- private: JSON that never fails --------------------------------------------------------------

def _json_default(value: Any) -> Any:
    """``json``'s fallback for values it cannot encode: numbers stay numbers, else repr."""
    if isinstance(value, Mapping):
        return dict(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if not (key is None or isinstance(key, (bool, int, float))):
        key = _json_default(key)  # e.g. a numpy integer becomes an int, a tuple its repr
        if isinstance(key, str):
            return key
        if not (key is None or isinstance(key, (bool, int, float))):
            return repr(key)
    return json.dumps(key)  # as json writes such keys: 1 -> "1", True -> "true"


def _jsonable(value: Any, active: Set[int]) -> Any:
    """A copy of ``value`` that ``json`` can encode: str keys, no cycles, fallbacks applied."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in active:
            return "<circular reference>"
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {_json_key(k): _jsonable(v, active) for k, v in value.items()}
            return [_jsonable(v, active) for v in value]
        finally:
            active.discard(id(value))
    converted = _json_default(value)
    if isinstance(converted, (list, dict)):
        return _jsonable(converted, active)
    return converted if isinstance(converted, (str, int, float, bool)) else repr(converted)


def _json_dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never raises: unencodable values become numbers or their repr.

    NaN and infinities are written as Python's ``json`` does (``NaN``, ``Infinity``).
    """
    try:
        return json.dumps(value, default=_json_default, **kwargs)
    except (TypeError, ValueError, RecursionError):
        pass  # non-str keys that cannot be sorted, cycles, pathological objects
    try:
        return json.dumps(_jsonable(value, set()), default=_json_default, **kwargs)
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unserializable": repr(value)[:10_000]}, **kwargs)


def _write_atomically(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` so a reader sees the old or the new file, never half."""
    tmp = os.path.join(os.path.dirname(path),
                       f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _rewrite_atomically(path: str, transform: Callable[[List[str]], List[str]]) -> None:
    """Replaces the text file at ``path`` by ``transform`` of its lines, atomically."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().splitlines(keepends=True)
    kept = transform(lines)
    if kept == lines:
        return
    tmp = f"{path}.{os.getpid()}.resume.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
    os.replace(tmp, path)


def pretty_print(result: Dict[str, Any], exclude: Optional[Set[str]] = None) -> str:
    """A result as readable YAML-style text (Ray Tune's ``ray.tune.logger.pretty_print``).

    The ``config`` and keys whose value is None are left out, as are the keys in
    ``exclude``; values that are not plain data (NumPy numbers, sets, objects) are shown
    as JSON would store them.

    Example::

        print(pretty_print({"loss": 0.1, "training_iteration": 3, "config": {...}}))
    """
    import yaml  # a dependency of Ray's

    skip = {"config"} | set(exclude or ())
    shown = {k: v for k, v in result.items() if k not in skip and v is not None}
    plain = json.loads(_json_dumps(shown))
    return yaml.safe_dump(plain, default_flow_style=False, sort_keys=True)
