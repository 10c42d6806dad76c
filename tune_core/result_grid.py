"""All trials' outcomes, as returned by ``Tuner.fit()``."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, List, Optional

from tune_core.checkpoint import Checkpoint
from tune_core.experiment.trial import Trial, TrialStatus
from tune_core.result import Result

__all__ = ["ResultGrid"]

_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


class ResultGrid:
    """The results of an experiment: one :class:`Result` per trial, in creation order."""

    def __init__(self, trials: List[Trial], experiment_path: str,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 filesystem: Any = None) -> None:
        self._trials = list(trials)
        self._experiment_path = experiment_path
        self._filesystem = filesystem
        self._metric = metric
        self._mode = mode
        self._results = [self._to_result(t) for t in self._trials]

    @classmethod
    def from_path(cls, experiment_path: str, metric: Optional[str] = None,
                  mode: Optional[str] = None, *,
                  storage_filesystem: Any = None) -> "ResultGrid":
        """The results of the experiment saved in ``experiment_path``: a local path or a
        URI such as ``s3://bucket/prefix/experiment`` (or a path inside
        ``storage_filesystem``). Reads JSON only; no trainable needed."""
        import json
        import posixpath

        from tune_core import storage
        from tune_core.experiment.checkpoint_manager import CheckpointManager
        from tune_core.experiment.experiment_state import (
            STATE_FILE, read_json_state, state_reader, trial_from_state)

        fs, path = storage.resolve(experiment_path, storage_filesystem,
                                   owner="ResultGrid.from_path", name="experiment_path")
        local = storage._local_path(fs, path) is not None
        join = os.path.join if local else posixpath.join
        shown = storage.redact_uri(str(experiment_path))
        try:
            data = storage.read_bytes(fs, join(path, STATE_FILE))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"ResultGrid.from_path({shown!r}): no experiment there ({STATE_FILE} "
                "is missing); pass the directory of one experiment") from None
        cfs = None if local else fs
        state = read_json_state(
            state_reader(storage._local_path(fs, path) if local else path, cfs), data)
        trials = [trial_from_state(t, path, None, cfs, CheckpointManager())[0]
                  for t in state["trials"]]
        return cls(trials, experiment_path, metric, mode, filesystem=cfs)

    def _to_result(self, trial: Trial) -> Result:
        error = trial.error if trial.status == TrialStatus.ERROR else None
        manager = trial.checkpoint_manager
        if manager is not None and manager.checkpoints:
            fs = trial.checkpoint.filesystem if trial.checkpoint is not None and \
                not trial.checkpoint._is_local() else self._filesystem
            best = [(trial.checkpoint if trial.checkpoint is not None and
                     cp.path == trial.checkpoint.path else Checkpoint(cp.path, filesystem=fs),
                     dict(cp.metrics)) for cp in manager.best_checkpoints()]
        else:
            best = [(trial.checkpoint, dict(trial.last_result))] if trial.checkpoint else []
        # The driver's own copy of the logs, where there is one apart from storage.
        local = trial.local_path if self._filesystem is None or \
            trial.local_experiment_path != trial.experiment_path else None
        return Result(metrics=dict(trial.last_result) if trial.last_result else {},
                      checkpoint=trial.checkpoint, error=error, path=trial.path,
                      best_checkpoints=best, filesystem=self._filesystem, _local_path=local,
                      _config=dict(trial.config))

    @property
    def filesystem(self) -> Any:
        """The ``pyarrow.fs.FileSystem`` of the trials' paths (None: the local disk)."""
        return self._filesystem

    @property
    def experiment_path(self) -> str:
        return self._experiment_path

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> List[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return sum(1 for t in self._trials if t.status == TrialStatus.ERROR)

    @property
    def num_terminated(self) -> int:
        return sum(1 for t in self._trials if t.status == TrialStatus.TERMINATED)

    def _metric_mode(self, metric: Optional[str], mode: Optional[str]):
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError("get_best_result needs a metric and a mode: pass them "
                             '(get_best_result(metric="loss", mode="min")) or set them in '
                             "TuneConfig(metric=..., mode=...)")
        if mode not in ("min", "max"):
            raise ValueError(f'get_best_result(mode={mode!r}): use "min" or "max"')
        return metric, mode

    def _score(self, result: Result, metric: str, scope: str, mode: str) -> Optional[float]:
        if scope == "last":
            value = (result.metrics or {}).get(metric)
            return value if _finite(value) else None
        df = result.metrics_dataframe
        if df is None or metric not in getattr(df, "columns", ()):
            return None
        series = df[metric].dropna()
        series = series[series.map(_finite)]
        if series.empty:
            return None
        if scope == "all":
            return float(series.max() if mode == "max" else series.min())
        if scope == "avg":
            return float(series.mean())
        n = 5 if scope == "last-5-avg" else 10
        return float(series.tail(n).mean())

    def get_best_result(self, metric: Optional[str] = None, mode: Optional[str] = None,
                        scope: str = "last", filter_nan_and_inf: bool = True) -> Result:
        """The trial with the best ``metric``.

        Args:
            scope: ``last`` (the last result), ``avg``, ``last-5-avg``, ``last-10-avg``
                (averages over results) or ``all`` (the best result the trial ever had).
        """
        metric, mode = self._metric_mode(metric, mode)
        if scope not in _SCOPES:
            raise ValueError(f"get_best_result(scope={scope!r}): use one of {', '.join(_SCOPES)}")
        best, best_score = None, None
        for result in self._results:
            score = self._score(result, metric, scope, mode)
            if score is None:
                continue
            if best_score is None or (score > best_score if mode == "max" else
                                      score < best_score):
                best, best_score = result, score
        if best is None:
            reported = sorted({k for r in self._results for k in (r.metrics or {})
                               if k != "config"})
            raise RuntimeError(f"No trial reported a finite value of {metric!r}; the trials "
                               f"reported: {reported}")
        return best

    def get_dataframe(self, filter_metric: Optional[str] = None,
                      filter_mode: Optional[str] = None) -> Any:
        """One row per trial: its last result (or its best by ``filter_metric``) and config."""
        import pandas as pd

        from tune_core._util import flatten_dict

        if (filter_metric is None) != (filter_mode is None):
            raise ValueError("get_dataframe: pass filter_metric and filter_mode together")
        if filter_mode is not None and filter_mode not in ("min", "max"):
            raise ValueError(f'get_dataframe(filter_mode={filter_mode!r}): use "min" or "max"')
        rows: List[Dict[str, Any]] = []
        for trial, result in zip(self._trials, self._results):
            row: Dict[str, Any] = dict(result.metrics or {})
            if filter_metric is not None:
                df = result.metrics_dataframe
                if filter_metric in getattr(df, "columns", ()) and \
                        not df[filter_metric].dropna().empty:
                    col = df[filter_metric]
                    idx = col.idxmax() if filter_mode == "max" else col.idxmin()
                    row.update({k: v for k, v in df.loc[idx].to_dict().items()})
            config = row.pop("config", trial.config)
            flat = flatten_dict(row)
            flat.update({f"config/{k}": v for k, v in flatten_dict(config or {}).items()})
            flat["trial_id"] = trial.trial_id
            flat["logdir"] = trial.path
            rows.append(flat)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} results, {self.num_errors} errors>"
