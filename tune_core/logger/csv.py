"""``CSVLoggerCallback``: ``progress.csv`` per trial, one row per result."""

from __future__ import annotations

import csv
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from tune_core._util import flatten_dict
from tune_core.logger.logger import _FileLoggerCallback, _OpenFile

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["CSVLoggerCallback", "EXPR_PROGRESS_FILE"]

EXPR_PROGRESS_FILE = "progress.csv"

logger = logging.getLogger(__name__)


class _CsvTrial:
    """A trial's open ``progress.csv``: its columns and a writer bound to the file."""

    __slots__ = ("path", "entry", "columns", "column_set", "writer")

    def __init__(self, path: str, entry: _OpenFile, columns: List[str]) -> None:
        self.path = path
        self.columns = columns
        self.column_set: Set[str] = set(columns)
        self.bind(entry)

    def bind(self, entry: _OpenFile) -> None:
        self.entry = entry
        self.writer = csv.writer(entry.handle, lineterminator="\n")


class CSVLoggerCallback(_FileLoggerCallback):
    """Writes each trial's results to ``progress.csv`` in the trial directory.

    Each result becomes one row. Nested dicts are flattened with ``/``
    (``{"a": {"b": 1}}`` gives a column ``a/b``); lists are written in their
    ``str`` form; the ``config`` key is left out (it is in ``params.json``).

    Difference from Ray Tune: a metric that first appears in a later result is
    not dropped. The file is rewritten (atomically: a temporary file, then
    ``os.replace``) with the widened header, earlier rows getting empty cells
    for the new columns, and appending continues. This costs one pass over the
    file each time a new column appears, which is rare in practice.

    The file is opened in append mode: a resumed trial whose ``progress.csv``
    exists continues it with the columns of its header. Flushing and closing
    follow the same policy as ``JsonLoggerCallback``: after ``log_trial_end``
    the file is complete and closed.

    Args:
        flush_interval_s: The longest a row may wait in a buffer while the
            trial keeps running, in seconds (0 flushes after every result).
    """

    def __init__(self, *, flush_interval_s: float = 0.5) -> None:
        super().__init__(flush_interval_s=flush_interval_s)

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._trials: Dict[str, _CsvTrial] = {}

    def _forget_trial(self, trial_id: str) -> None:
        self._trials.pop(trial_id, None)

    def log_trial_start(self, trial: "Trial") -> None:
        with self._lock:
            self._start(trial)

    def _start(self, trial: "Trial") -> Optional[_CsvTrial]:
        self._forget_trial(trial.trial_id)
        trial_dir = self._trial_dir(trial)
        if trial_dir is None:
            self._files.close(trial.trial_id)
            return None
        path = os.path.join(trial_dir, EXPR_PROGRESS_FILE)
        self._prepare_resume(trial, path)
        columns = _read_header(path)  # resuming: continue with the file's columns
        entry = self._files.open(trial.trial_id, path, newline="")
        state = _CsvTrial(path, entry, columns)
        self._trials[trial.trial_id] = state
        return state

    @staticmethod
    def _keep_rows(lines: List[str], keep_iteration: int) -> List[str]:
        if not lines:
            return lines
        header = next(csv.reader(lines[:1]), [])
        if "training_iteration" not in header:
            return lines[:1]
        col = header.index("training_iteration")
        kept = lines[:1]
        for line, row in zip(lines[1:], csv.reader(lines[1:])):
            if len(row) != len(header):
                continue  # a row cut short by a crash
            try:
                if float(row[col]) <= keep_iteration:
                    kept.append(line)
            except ValueError:
                continue
        return kept

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict[str, Any]) -> None:
        if "config" in result:
            result = dict(result)
            del result["config"]
        flat = flatten_dict(result, delimiter="/")
        with self._lock:
            state = self._trials.get(trial.trial_id)
            if state is None:
                state = self._start(trial)  # a result before (or without) log_trial_start
                if state is None:
                    return
            if not state.column_set.issuperset(flat):
                new_columns = [key for key in flat if key not in state.column_set]
                if state.columns:
                    self._widen(trial.trial_id, state, new_columns)
                else:  # a new (or empty) file: this result sets the header
                    state.columns = new_columns
                    state.column_set = set(new_columns)
                    state.writer.writerow(new_columns)
            state.writer.writerow([flat.get(column) for column in state.columns])
            self._files.written(state.entry)

    def _widen(self, trial_id: str, state: _CsvTrial, new_columns: List[str]) -> None:
        """Rewrites the file with ``new_columns`` added, then reopens it for appending."""
        self._files.close(trial_id)  # flushes what was buffered
        columns = state.columns + new_columns
        width = len(columns)
        directory, name = os.path.split(state.path)
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(state.path, newline="", encoding="utf-8", errors="replace") as src, \
                    open(tmp, "w", newline="", encoding="utf-8") as dst:
                reader = csv.reader(src)
                writer = csv.writer(dst, lineterminator="\n")
                writer.writerow(columns)
                next(reader, None)  # the old header
                for row in reader:
                    if not row:
                        continue
                    if len(row) < width:
                        row.extend([""] * (width - len(row)))
                    writer.writerow(row)
            os.replace(tmp, state.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        finally:
            # Keep logging to the file whatever happened above.
            state.bind(self._files.open(trial_id, state.path, newline=""))
        state.columns = columns
        state.column_set.update(new_columns)


def _read_header(path: str) -> List[str]:
    """The header of an existing ``progress.csv``, or [] if there is none."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f), None)
    except FileNotFoundError:
        return []
    except csv.Error as exc:
        logger.warning("Could not read the header of %s (%s); new rows may not line up "
                       "with the existing ones.", path, exc)
        return []
    return list(header) if header else []
