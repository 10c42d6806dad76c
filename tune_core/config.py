"""The experiment's settings: every knob is a keyword argument of one of these dataclasses."""

from __future__ import annotations

import dataclasses
import datetime
import numbers
import os
from typing import Any, Callable, List, Optional, Tuple, Union

__all__ = ["TuneConfig", "RunConfig", "CheckpointConfig", "FailureConfig", "SyncConfig"]


def _bad(owner: str, name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{owner}({name}={value!r}) is not valid: {accepted}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass
class TuneConfig:
    """How the search runs (Ray Tune's ``TuneConfig``).

    Args:
        metric: the result key to optimise; used by ``get_best_result`` and, unless
            they name their own, by the scheduler and the searcher.
        mode: ``"min"`` or ``"max"``.
        search_alg: a ``Searcher`` or ``SearchAlgorithm``; random/grid search by default.
        scheduler: a ``TrialScheduler``; first-in-first-out by default.
        num_samples: how many times to sample the space (times every grid point);
            -1 samples until ``time_budget_s`` or a stopper ends the experiment.
        max_concurrent_trials: at most this many trials run at once, whatever the
            searcher; None means as many as resources allow.
        time_budget_s: end the experiment after this many seconds (or a timedelta).
        reuse_actors: None (default) reuses worker processes between trials of the same
            resource shape, with a fresh trainable each time; True also reuses a class
            trainable's object through ``reset_config``; False starts a new worker per trial.
        keep_workers_s: seconds that idle worker processes outlive ``fit()``, for the next
            ``fit()`` in this driver process to start its trials in them at once instead of
            starting new processes (which takes Ray 0.5-1 s each). Meanwhile they keep
            their CPUs/GPUs reserved. 0 (default): they end when ``fit()`` returns.
        trial_name_creator: ``f(trial) -> str`` naming trials in the console.
        trial_dirname_creator: ``f(trial) -> str`` naming trial directories.
    """

    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Union[None, float, datetime.timedelta] = None
    reuse_actors: Optional[bool] = None
    keep_workers_s: float = 0.0
    trial_name_creator: Optional[Callable[[Any], str]] = None
    trial_dirname_creator: Optional[Callable[[Any], str]] = None

    def __post_init__(self) -> None:
        if self.mode not in (None, "min", "max"):
            raise _bad("TuneConfig", "mode", self.mode, 'use "min" or "max"')
        if self.metric is not None and not isinstance(self.metric, str):
            raise _bad("TuneConfig", "metric", self.metric, "use the name of a reported metric")
        if (self.metric is None) != (self.mode is None):
            given = "metric" if self.metric is not None else "mode"
            raise ValueError(f"TuneConfig: {given} was given without "
                             f"{'mode' if given == 'metric' else 'metric'}; set both "
                             '(e.g. metric="loss", mode="min") or neither')
        if not _is_int(self.num_samples) or (self.num_samples < 1 and self.num_samples != -1):
            raise _bad("TuneConfig", "num_samples", self.num_samples,
                       "use an integer >= 1, or -1 for unbounded sampling")
        if self.max_concurrent_trials is not None and (
                not _is_int(self.max_concurrent_trials) or self.max_concurrent_trials < 1):
            raise _bad("TuneConfig", "max_concurrent_trials", self.max_concurrent_trials,
                       "use an integer >= 1 or None")
        if isinstance(self.time_budget_s, datetime.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s is not None and (
                isinstance(self.time_budget_s, bool) or
                not isinstance(self.time_budget_s, (int, float)) or self.time_budget_s <= 0):
            raise _bad("TuneConfig", "time_budget_s", self.time_budget_s,
                       "use a number of seconds > 0, a datetime.timedelta, or None")
        if self.reuse_actors not in (None, True, False):
            raise _bad("TuneConfig", "reuse_actors", self.reuse_actors, "use None, True or False")
        if isinstance(self.keep_workers_s, bool) or \
                not isinstance(self.keep_workers_s, (int, float)) or \
                not 0 <= self.keep_workers_s < float("inf"):
            raise _bad("TuneConfig", "keep_workers_s", self.keep_workers_s,
                       "use a number of seconds >= 0 (0 ends idle workers with fit())")
        if self.keep_workers_s and self.reuse_actors is False:
            raise ValueError(f"TuneConfig(keep_workers_s={self.keep_workers_s!r}) keeps worker "
                             "processes for reuse, but reuse_actors=False asks for a new one "
                             "per trial; use one or the other")
        for name in ("trial_name_creator", "trial_dirname_creator"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise _bad("TuneConfig", name, value, "use a function of the trial")


@dataclasses.dataclass
class CheckpointConfig:
    """Which checkpoints to take and keep (Ray Tune's ``CheckpointConfig``)."""

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (not _is_int(self.num_to_keep) or
                                             self.num_to_keep < 1):
            raise _bad("CheckpointConfig", "num_to_keep", self.num_to_keep,
                       "use an integer >= 1 or None (keep all)")
        if self.checkpoint_score_order not in ("max", "min"):
            raise _bad("CheckpointConfig", "checkpoint_score_order",
                       self.checkpoint_score_order, 'use "max" or "min"')
        if not _is_int(self.checkpoint_frequency) or self.checkpoint_frequency < 0:
            raise _bad("CheckpointConfig", "checkpoint_frequency", self.checkpoint_frequency,
                       "use an integer >= 0 (0 = never)")


@dataclasses.dataclass
class FailureConfig:
    """What to do when trials fail (Ray Tune's ``FailureConfig``).

    Args:
        max_failures: retries per trial (from its newest checkpoint); -1 = unlimited.
        fail_fast: True stops the experiment at the first trial error; ``"raise"``
            also re-raises that error from ``fit()``.
    """

    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self) -> None:
        if not _is_int(self.max_failures) or self.max_failures < -1:
            raise _bad("FailureConfig", "max_failures", self.max_failures,
                       "use an integer >= 0, or -1 for unlimited retries")
        if self.fail_fast not in (True, False, "raise"):
            raise _bad("FailureConfig", "fail_fast", self.fail_fast,
                       'use True, False or "raise"')


@dataclasses.dataclass
class SyncConfig:
    """Uploading trial files to remote storage (Ray Tune's ``SyncConfig``)."""

    sync_period: float = 300
    sync_timeout: float = 1800
    sync_artifacts: bool = False
    sync_artifacts_on_checkpoint: bool = True

    def __post_init__(self) -> None:
        for name in ("sync_period", "sync_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise _bad("SyncConfig", name, value, "use a number of seconds > 0")


@dataclasses.dataclass
class RunConfig:
    """Where results go and how the run behaves (Ray Tune's ``RunConfig``).

    Args:
        name: the experiment's folder under ``storage_path``; default
            ``<trainable>_<date>``.
        storage_path: where experiments are written; default ``~/tune_results``.
        stop: a dict of result thresholds, a function ``(trial_id, result) -> bool``,
            a ``Stopper`` or a list of them.
        callbacks: a list of ``tune.Callback``.
        verbose: 0 silent, 1 status tables (default), 2 also trial events, 3 also results.
        log_to_file: also write what trials print to files in each trial's directory:
            True for files ``stdout`` and ``stderr``; a file name for both streams in
            one file; a pair of names ``(stdout_file, stderr_file)``, either None to
            leave that stream out. The console still shows everything.
    """

    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Optional[SyncConfig] = None
    verbose: Optional[int] = None
    stop: Any = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Union[bool, str, tuple] = False

    def log_files(self) -> Tuple[Optional[str], Optional[str]]:
        """``log_to_file`` as (stdout file, stderr file) names; None: not written."""
        value = self.log_to_file
        accepted = ("use True (files 'stdout' and 'stderr'), False, a file name, or a "
                    "pair (stdout_file, stderr_file) of file names or None")
        if value is True:
            return "stdout", "stderr"
        if value is False or value is None:
            return None, None
        if isinstance(value, str):
            pair: Tuple[Any, Any] = (value, value)
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            pair = (value[0], value[1])
        else:
            raise _bad("RunConfig", "log_to_file", value, accepted)
        for name in pair:
            if name is not None and (not isinstance(name, str) or not name.strip()
                                     or os.path.isabs(name) or ".." in name.split("/")):
                raise _bad("RunConfig", "log_to_file", value,
                           accepted + ", relative to the trial directory")
        return pair[0], pair[1]

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()
                                      or "/" in self.name or "\\" in self.name):
            raise _bad("RunConfig", "name", self.name,
                       "use a non-empty folder name without slashes")
        if self.storage_path is not None and not isinstance(self.storage_path, str):
            import os

            if isinstance(self.storage_path, os.PathLike):
                self.storage_path = os.fspath(self.storage_path)
            else:
                raise _bad("RunConfig", "storage_path", self.storage_path,
                           "use a local path or a URI such as s3://bucket/prefix")
        self.log_files()  # a bad log_to_file fails here
        self.failure_config = self.failure_config or FailureConfig()
        self.checkpoint_config = self.checkpoint_config or CheckpointConfig()
        self.sync_config = self.sync_config or SyncConfig()
        for name, cls in (("failure_config", FailureConfig),
                          ("checkpoint_config", CheckpointConfig), ("sync_config", SyncConfig)):
            if not isinstance(getattr(self, name), cls):
                raise _bad("RunConfig", name, getattr(self, name), f"use a {cls.__name__}")
        if self.verbose is not None and (not _is_int(self.verbose) or
                                         not 0 <= int(self.verbose) <= 3):
            raise _bad("RunConfig", "verbose", self.verbose, "use 0, 1, 2 or 3")
        if self.callbacks is not None:
            from tune_core.callback import Callback

            if not isinstance(self.callbacks, (list, tuple)):
                raise _bad("RunConfig", "callbacks", self.callbacks,
                           "use a list of tune.Callback objects")
            for cb in self.callbacks:
                if not isinstance(cb, Callback):
                    raise _bad("RunConfig", "callbacks", self.callbacks,
                               f"every element must be a tune.Callback; {cb!r} is not")
