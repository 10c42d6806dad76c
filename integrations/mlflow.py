"""``MLflowLoggerCallback``: one MLflow run per trial (Ray Tune's names and arguments).

MLflow is optional: install ``mlflow-skinny`` (the client, enough for a tracking
server or a local store) or the extra, ``pip install 'tune-core[mlflow]'``. It is
imported when the callback is created, never when ``integrations`` is imported.

Only ``mlflow.tracking.MlflowClient`` is used, never MLflow's fluent API (``mlflow.
start_run`` and its global "active run"): each trial's run is addressed by its id,
so concurrent trials, and the user's own use of MLflow in the same process, do not
interfere.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set

from tune_core._util import flatten_dict
from tune_core.logger import LoggerCallback

if TYPE_CHECKING:
    from tune_core.experiment.trial import Trial

__all__ = ["MLflowLoggerCallback"]

logger = logging.getLogger(__name__)

# MLflow accepts these characters in metric and param names; others become "_".
_INVALID_NAME_CHARS = re.compile(r"[^/\w.\- ]")
# Param values are cut to the length every MLflow server accepts.
_MAX_PARAM_VALUE = 500
# Result keys that are not metrics: the step itself, the config (logged as params).
_NOT_METRICS = frozenset({"config", "training_iteration"})
# MLflow's limits per log_batch call.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100


def _import_mlflow_client() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError(
            "MLflowLoggerCallback needs MLflow's client: pip install mlflow-skinny "
            "(or the extra: pip install 'tune-core[mlflow]')") from exc
    return MlflowClient


class MLflowLoggerCallback(LoggerCallback):
    """Logs each trial to MLflow as a run of its own.

    * The run is named after the trial and tagged with ``trial_name``,
      ``trial_id`` and ``tune_experiment`` (plus ``tags``).
    * Params: the trial's config, flattened with ``/`` (``{"a": {"b": 1}}``
      gives ``a/b``); values as their ``str``, cut to 500 characters.
    * Metrics: every numeric value of every result (nested dicts flattened
      with ``/``; booleans, strings and lists are left out) at step
      ``training_iteration``.
    * The run ends ``FINISHED`` when the trial completes, ``FAILED`` when it
      errors; runs of trials still going when the experiment stops (an
      interrupted experiment) end ``KILLED``. With ``save_artifact=True`` the
      trial directory (results, checkpoints the driver holds) is logged as the
      run's artifacts when the trial ends.

    A trial that starts again (after a pause or a failure) keeps its run. A
    restored experiment (``Tuner.restore``) finds a trial's run again by its
    ``trial_id`` tag and continues it. MLflow params cannot change, so a
    config value a scheduler changes (PBT) keeps the value first logged; a
    resumed trial's repeated steps are logged again (MLflow keeps every point).

    Logging errors after setup (a tracking server that goes away) are logged
    as warnings and do not stop the experiment.

    Differences from Ray Tune: without ``experiment_name`` (and without the
    ``MLFLOW_EXPERIMENT_NAME`` environment variable) runs go to an MLflow
    experiment named after the Tune experiment, not to MLflow's default one;
    the step is always ``training_iteration``.

    Args:
        tracking_uri: Where MLflow stores runs: a server (``http://...``), a
            database (``sqlite:///...``) or a directory (``file:///...``).
            None uses MLflow's default (``MLFLOW_TRACKING_URI``, else a local
            store).
        registry_uri: The model registry's URI (None: MLflow's default).
        experiment_name: The MLflow experiment to log to, created if missing.
        tags: Tags set on every run.
        tracking_token: A token for the tracking server (sets
            ``MLFLOW_TRACKING_TOKEN`` for this process).
        save_artifact: Log the trial directory as artifacts when it ends.
        log_params_on_trial_end: Log the params when the trial ends instead of
            when it starts (then the final config of a PBT trial is logged).

    Raises:
        ImportError: If MLflow is not installed.
    """

    def __init__(self, tracking_uri: Optional[str] = None, *,
                 registry_uri: Optional[str] = None, experiment_name: Optional[str] = None,
                 tags: Optional[Mapping[str, Any]] = None, tracking_token: Optional[str] = None,
                 save_artifact: bool = False, log_params_on_trial_end: bool = False) -> None:
        if tags is not None and not isinstance(tags, Mapping):
            raise TypeError(f"MLflowLoggerCallback: `tags` must be a dict of tag names to "
                            f"values; got {type(tags).__name__} {tags!r}.")
        _import_mlflow_client()
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags: Dict[str, Any] = dict(tags or {})
        self.tracking_token = tracking_token
        self.save_artifact = bool(save_artifact)
        self.log_params_on_trial_end = bool(log_params_on_trial_end)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._client: Any = None
        self._experiment_id: Optional[str] = None
        self._tune_experiment = ""
        self._runs: Dict[str, str] = {}  # trial_id -> MLflow run id
        self._params: Dict[str, Set[str]] = {}  # trial_id -> param keys logged
        self._warned: Set[str] = set()

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_client", "_experiment_id", "_tune_experiment", "_runs", "_params",
                    "_warned"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def experiment_id(self) -> Optional[str]:
        """The id of the MLflow experiment the runs go to (known after ``setup``)."""
        return self._experiment_id

    # --- hooks ---------------------------------------------------------------------------------

    def setup(self, stop: Optional[Any] = None, num_samples: Optional[int] = None,
              total_num_samples: Optional[int] = None, **info: Any) -> None:
        if self.tracking_token is not None:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.tracking_token
        client_cls = _import_mlflow_client()
        self._client = client_cls(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        self._tune_experiment = str(info.get("experiment_name") or "")
        name = (self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
                or self._tune_experiment or "Default")
        self._experiment_id = self._get_or_create_experiment(name)

    def log_trial_start(self, trial: "Trial") -> None:
        self._guarded(trial, "start its run", self._start, trial)

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict[str, Any]) -> None:
        self._guarded(trial, "log a result", self._log_result, trial, result)

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        self._guarded(trial, "end its run", self._end, trial, "FAILED" if failed else "FINISHED")

    def on_experiment_end(self, trials: List["Trial"], **info: Any) -> None:
        for trial_id, run_id in list(self._runs.items()):
            try:
                self._client.set_terminated(run_id, status="KILLED")
            except Exception:
                logger.warning("MLflowLoggerCallback: could not end run %s", run_id,
                               exc_info=True)
        self._runs.clear()
        self._params.clear()

    # --- mechanics -----------------------------------------------------------------------------

    def _guarded(self, trial: "Trial", what: str, fn: Any, *args: Any) -> None:
        if self._client is None:
            raise RuntimeError("MLflowLoggerCallback: setup() was not called; pass the "
                               "callback in RunConfig(callbacks=[...]).")
        try:
            fn(*args)
        except Exception:
            key = f"{trial.trial_id}:{what}"
            if key not in self._warned:  # once per trial and kind: a dead server is loud enough
                self._warned.add(key)
                logger.warning("MLflowLoggerCallback: could not %s for trial %s",
                               what, trial.trial_name, exc_info=True)

    def _get_or_create_experiment(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise ValueError(f"MLflowLoggerCallback: the MLflow experiment {name!r} is "
                                 "deleted; restore it or pass another experiment_name.")
            return experiment.experiment_id
        try:
            return self._client.create_experiment(name)
        except Exception:
            experiment = self._client.get_experiment_by_name(name)  # created meanwhile
            if experiment is None:
                raise
            return experiment.experiment_id

    def _run_id(self, trial: "Trial") -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        found = None
        if trial.last_result:  # it reported before: a restored experiment may have its run
            found = self._client.search_runs(
                [self._experiment_id], filter_string=f"tags.trial_id = '{trial.trial_id}'",
                max_results=1, order_by=["attributes.start_time DESC"])
        if found:  # a restored experiment: continue the trial's run
            run_id = found[0].info.run_id
            self._client.update_run(run_id, status="RUNNING")
            self._params[trial.trial_id] = set(found[0].data.params)
        else:
            tags = {str(k): str(v) for k, v in self.tags.items()}
            tags.update(trial_name=trial.trial_name, trial_id=trial.trial_id)
            if self._tune_experiment:
                tags["tune_experiment"] = self._tune_experiment
            run = self._client.create_run(self._experiment_id, run_name=trial.trial_name,
                                          tags=tags)
            run_id = run.info.run_id
            self._params[trial.trial_id] = set()
        self._runs[trial.trial_id] = run_id
        return run_id

    def _start(self, trial: "Trial") -> None:
        run_id = self._run_id(trial)
        if not self.log_params_on_trial_end:
            self._log_params(trial, run_id)

    def _log_params(self, trial: "Trial", run_id: str) -> None:
        from mlflow.entities import Param

        logged = self._params.setdefault(trial.trial_id, set())
        params = {}
        for key, value in flatten_dict(dict(trial.config or {}), delimiter="/").items():
            name = _clean_name(str(key))
            if name not in logged and name not in params:  # params are immutable in MLflow
                params[name] = _param_value(value)
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH])
            logged.update(p.key for p in items[i:i + _MAX_PARAMS_PER_BATCH])

    def _log_result(self, trial: "Trial", result: Dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id = self._run_id(trial)
        step = result.get("training_iteration")
        step = int(step) if isinstance(step, numbers.Integral) else 0
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, step) for key, value in _metric_items(result)]
        for i in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=metrics[i:i + _MAX_METRICS_PER_BATCH])

    def _end(self, trial: "Trial", status: str) -> None:
        run_id = self._run_id(trial)
        try:
            if self.log_params_on_trial_end:
                self._log_params(trial, run_id)
            if self.save_artifact and trial.local_path and os.path.isdir(trial.local_path):
                self._client.log_artifacts(run_id, trial.local_path)
        finally:
            self._runs.pop(trial.trial_id, None)
            self._params.pop(trial.trial_id, None)
            self._client.set_terminated(run_id, status=status)


def _clean_name(name: str) -> str:
    return _INVALID_NAME_CHARS.sub("_", name)


def _param_value(value: Any) -> str:
    if callable(value) and getattr(value, "__name__", None):
        text = value.__name__
    else:
        text = str(value)
    return text if len(text) <= _MAX_PARAM_VALUE else text[:_MAX_PARAM_VALUE - 3] + "..."


def _metric_items(result: Mapping[str, Any]) -> List[tuple]:
    """The (name, value) pairs of ``result`` that MLflow logs as metrics."""
    out = []
    flat = flatten_dict({k: v for k, v in result.items() if k not in _NOT_METRICS},
                        delimiter="/")
    for key, value in flat.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                out.append((_clean_name(str(key)), float(value)))
            except (TypeError, ValueError, OverflowError):
                continue
    return out
