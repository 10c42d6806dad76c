"""``JsonLoggerCallback``: ``params.json`` and ``result.json`` (JSON lines) per trial."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from tune_core.logger.logger import _FileLoggerCallback, _json_dumps, _OpenFile, _write_atomically

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["JsonLoggerCallback", "EXPR_PARAM_FILE", "EXPR_RESULT_FILE"]

EXPR_PARAM_FILE = "params.json"
EXPR_RESULT_FILE = "result.json"


class JsonLoggerCallback(_FileLoggerCallback):
    """Writes each trial's config and results as JSON into the trial directory.

    * ``params.json``: the trial's config, written (atomically) when the trial
      starts.
    * ``result.json``: one JSON object per line, one line per result, including
      the ``config`` key as the result carries it. The file is opened in append
      mode, so a trial that is resumed continues it.

    Values ``json`` cannot encode never make logging fail: numpy/torch numbers
    and arrays become numbers and lists, anything else is written as its
    ``repr``. NaN and infinities are written as Python's ``json`` writes them
    (``NaN``, ``Infinity``).

    The result file stays open while the trial runs and is flushed at most
    every ``flush_interval_s`` seconds (plus once per controller step when data
    has waited that long), and always when the trial ends or the experiment
    ends: after ``log_trial_end`` the file is complete and closed.

    Args:
        flush_interval_s: The longest a result may wait in a buffer while the
            trial keeps running, in seconds (0 flushes after every result).
    """

    def __init__(self, *, flush_interval_s: float = 0.5) -> None:
        super().__init__(flush_interval_s=flush_interval_s)

    def log_trial_start(self, trial: "Trial") -> None:
        with self._lock:
            self._start(trial)

    def _start(self, trial: "Trial") -> Optional[_OpenFile]:
        trial_dir = self._trial_dir(trial)
        if trial_dir is None:
            self._files.close(trial.trial_id)
            return None
        self._write_params(trial_dir, trial.config)
        path = os.path.join(trial_dir, EXPR_RESULT_FILE)
        self._prepare_resume(trial, path)
        return self._files.open(trial.trial_id, path)

    @staticmethod
    def _keep_rows(lines: List[str], keep_iteration: int) -> List[str]:
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(row, dict) and row.get("training_iteration", 0) <= keep_iteration:
                kept.append(line)
        return kept

    def update_config(self, trial: "Trial", config: Dict[str, Any]) -> None:
        """Rewrites the trial's ``params.json`` with ``config``.

        Args:
            trial: The trial.
            config: Its new config.
        """
        with self._lock:
            trial_dir = self._trial_dir(trial)
            if trial_dir is not None:
                self._write_params(trial_dir, config)

    @staticmethod
    def _write_params(trial_dir: str, config: Dict[str, Any]) -> None:
        text = _json_dumps(config, indent=2, sort_keys=True)
        path = os.path.join(trial_dir, EXPR_PARAM_FILE)
        try:  # the trial's first: there is no file a reader could see half replaced
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            return
        except FileExistsError:
            pass
        _write_atomically(path, text)  # a new config (PBT): old or new, never half

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict[str, Any]) -> None:
        line = _json_dumps(result) + "\n"  # outside the lock: the costly part
        with self._lock:
            entry = self._files.get(trial.trial_id)
            if entry is None:
                entry = self._start(trial)  # a result before (or without) log_trial_start
                if entry is None:
                    return
            entry.handle.write(line)
            self._files.written(entry)
