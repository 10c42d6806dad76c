"""``Tuner``: the entry point (Ray Tune's ``tune.Tuner``)."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import os
import signal
import sys
import threading
from typing import Any, Dict, List, Optional

from tune_core.callback import Callback
from tune_core.config import RunConfig, TuneConfig
from tune_core.error import TuneError
from tune_core.result_grid import ResultGrid
from tune_core.trainable.trainable import Trainable
from tune_core.trainable.util import (
    get_trainable_name, has_static_resources, resolve_resources)

__all__ = ["Tuner"]

DEFAULT_STORAGE_PATH = "~/tune_results"


def _check_trainable(trainable: Any) -> None:
    if trainable is None:
        raise TypeError("Tuner(trainable): pass a function train_fn(config) or a "
                        "tune.Trainable subclass")
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise TypeError(f"Tuner(trainable={trainable!r}): a class trainable must subclass "
                            "tune.Trainable")
        return
    if isinstance(trainable, str):
        raise TypeError(f"Tuner(trainable={trainable!r}): registered trainable names are not "
                        "supported; pass the function or class itself")
    if not callable(trainable):
        raise TypeError(f"Tuner(trainable={trainable!r}): pass a function train_fn(config) "
                        "or a tune.Trainable subclass")


class Tuner:
    """Runs a hyperparameter search.

    Args:
        trainable: a function ``train_fn(config)`` or a ``tune.Trainable`` subclass
            (optionally wrapped by ``with_parameters``/``with_resources``).
        param_space: the search space: a dict of constants, domains
            (``tune.uniform`` ...), ``tune.grid_search`` and ``tune.sample_from``.
        tune_config: how to search (``TuneConfig``).
        run_config: where results go and when to stop (``RunConfig``).
    """

    def __init__(self, trainable: Any = None, *, param_space: Optional[Dict[str, Any]] = None,
                 tune_config: Optional[TuneConfig] = None,
                 run_config: Optional[RunConfig] = None) -> None:
        _check_trainable(trainable)
        if param_space is None:
            param_space = {}
        if not isinstance(param_space, dict):
            raise TypeError(f"Tuner(param_space={param_space!r}): use a dict of parameter name "
                            "to value or search domain")
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(f"Tuner(tune_config={tune_config!r}): use a tune.TuneConfig")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"Tuner(run_config={run_config!r}): use a tune.RunConfig")
        from tune_core.search.variant_generator import validate_param_space

        validate_param_space(param_space)
        self._trainable = trainable
        self._param_space = param_space
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._results: Optional[ResultGrid] = None
        self._restore: Optional[Dict[str, Any]] = None  # set by Tuner.restore

    # --- restoring -----------------------------------------------------------------------------
    @classmethod
    def can_restore(cls, path: "str | os.PathLike[str]") -> bool:
        """Whether ``path`` holds an experiment that ``Tuner.restore`` can continue."""
        from tune_core.experiment.experiment_state import STATE_FILE, TUNER_FILE

        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        return os.path.exists(os.path.join(path, STATE_FILE)) and \
            os.path.exists(os.path.join(path, TUNER_FILE))

    @classmethod
    def restore(cls, path: "str | os.PathLike[str]", trainable: Any, *,
                resume_unfinished: bool = True, resume_errored: bool = False,
                restart_errored: bool = False, param_space: Optional[Dict[str, Any]] = None,
                storage_filesystem: Any = None) -> "Tuner":
        """Continue an interrupted experiment where it stopped.

        Args:
            path: the experiment directory (``results.experiment_path``).
            trainable: the same trainable (it is not saved with the experiment).
            resume_unfinished: continue trials that had not ended (from their
                newest checkpoint); False marks them TERMINATED.
            resume_errored: continue errored trials from their newest checkpoint.
            restart_errored: start errored trials over from scratch.
            param_space: the search space again, if it held objects that could
                not be saved (it must be the same space).
        """
        import cloudpickle

        from tune_core.experiment.experiment_state import TUNER_FILE

        _check_trainable(trainable)
        if resume_errored and restart_errored:
            raise ValueError("Tuner.restore: pass resume_errored=True or restart_errored=True, "
                             "not both")
        local = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not cls.can_restore(local):
            raise ValueError(f"Tuner.restore(path={os.fspath(path)!r}): no experiment to "
                             "restore there (experiment_state.json and tuner.pkl are "
                             "needed); pass the directory printed at the start of the run")
        with open(os.path.join(local, TUNER_FILE), "rb") as f:
            saved = cloudpickle.loads(f.read())
        run_config = dataclasses.replace(saved["run_config"],
                                         storage_path=os.path.dirname(local),
                                         name=os.path.basename(local))
        tuner = cls(trainable, param_space=param_space if param_space is not None
                    else saved["param_space"], tune_config=saved["tune_config"],
                    run_config=run_config)
        tuner._restore = {"path": local, "resume_unfinished": resume_unfinished,
                          "resume_errored": resume_errored, "restart_errored": restart_errored}
        return tuner

    # --- assembling the experiment -------------------------------------------------------------
    def _search_alg(self):
        from tune_core.search.basic_variant import BasicVariantGenerator
        from tune_core.search.search_algorithm import SearchAlgorithm
        from tune_core.search.search_generator import SearchGenerator
        from tune_core.search.searcher import Searcher

        alg = self._tune_config.search_alg
        if alg is None:
            alg = BasicVariantGenerator()
        elif isinstance(alg, Searcher):
            alg = SearchGenerator(alg)
        elif not isinstance(alg, SearchAlgorithm):
            raise TypeError(f"TuneConfig(search_alg={alg!r}): use a tune Searcher (e.g. "
                            "searchers.optuna.OptunaSearch) or a SearchAlgorithm")
        tc = self._tune_config
        if not alg.set_search_properties(tc.metric, tc.mode, self._param_space):
            raise ValueError(f"TuneConfig(metric={tc.metric!r}, mode={tc.mode!r}) conflicts with "
                             f"the metric/mode given to the search algorithm {alg!r}; set them "
                             "in one place")
        alg.add_configurations(self._param_space, tc.num_samples)
        return alg

    def _scheduler(self):
        from tune_core.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

        sched = self._tune_config.scheduler or FIFOScheduler()
        if not isinstance(sched, TrialScheduler):
            raise TypeError(f"TuneConfig(scheduler={sched!r}): use a tune TrialScheduler (e.g. "
                            "schedulers.ASHAScheduler)")
        tc = self._tune_config
        if not sched.set_search_properties(tc.metric, tc.mode):
            raise ValueError(f"TuneConfig(metric={tc.metric!r}, mode={tc.mode!r}) conflicts with "
                             f"the scheduler's metric={sched.metric!r}, mode={sched.mode!r}; set "
                             "them in one place")
        if not isinstance(sched, FIFOScheduler) and not (sched.metric and sched.mode):
            raise ValueError(f"{type(sched).__name__} needs a metric and a mode: pass them to the "
                             "scheduler or set TuneConfig(metric=..., mode=...)")
        return sched

    def _stopper(self):
        from tune_core.stopper import CombinedStopper, TimeoutStopper
        from tune_core.stopper._resolve import resolve_stopper

        stoppers = []
        user = resolve_stopper(self._run_config.stop)
        if user is not None:
            stoppers.append(user)
        if self._tune_config.time_budget_s is not None:
            stoppers.append(TimeoutStopper(self._tune_config.time_budget_s))
        if not stoppers:
            return None
        return stoppers[0] if len(stoppers) == 1 else CombinedStopper(*stoppers)

    def _experiment_path(self, trainable_name: str) -> tuple:
        rc = self._run_config
        storage = os.path.abspath(os.path.expanduser(rc.storage_path or DEFAULT_STORAGE_PATH))
        if rc.storage_path and "://" in rc.storage_path and not rc.storage_path.startswith(
                "file://"):
            raise NotImplementedError(f"RunConfig(storage_path={rc.storage_path!r}): remote "
                                      "storage is not supported yet; use a local or NFS path")
        if rc.storage_path and rc.storage_path.startswith("file://"):
            storage = rc.storage_path[len("file://"):]
        name = rc.name
        if name is not None:
            from tune_core.experiment.experiment_state import STATE_FILE

            if os.path.exists(os.path.join(storage, name, STATE_FILE)):
                raise ValueError(
                    f"RunConfig(name={name!r}): {os.path.join(storage, name)} already holds an "
                    "experiment. Continue it with tune.Tuner.restore(path, trainable), or "
                    "choose another name (or none, for a new dated one)")
        if name is None:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            name = f"{trainable_name}_{stamp}"
            base, n = name, 1
            while os.path.exists(os.path.join(storage, name)):
                n += 1
                name = f"{base}_{n}"
        path = os.path.join(storage, name)
        os.makedirs(path, exist_ok=True)
        return name, path

    def _strict_metrics(self, search_alg, scheduler, stopper) -> Dict[str, str]:
        """Metric names every trial must report, each with where it was configured."""
        from tune_core.schedulers.trial_scheduler import FIFOScheduler

        names: Dict[str, str] = {}
        for key in getattr(stopper, "keys", None) or []:
            names.setdefault(key, "RunConfig(stop=...)")
        searcher = getattr(search_alg, "searcher", None)
        if isinstance(getattr(searcher, "metric", None), str):
            names[searcher.metric] = f"{type(searcher).__name__}(metric=...)"
        if not isinstance(scheduler, FIFOScheduler) and scheduler.metric:
            names[scheduler.metric] = f"{type(scheduler).__name__}(metric=...)"
        if self._tune_config.metric:
            names[self._tune_config.metric] = "TuneConfig(metric=...)"
        return names

    # --- running -------------------------------------------------------------------------------
    def fit(self) -> ResultGrid:
        """Run the experiment and return its results.

        Trial errors do not raise here (unless ``FailureConfig(fail_fast="raise")``):
        they are in ``ResultGrid.errors`` and each trial's ``error.txt``.
        """
        import ray

        from tune_core.execution.ray_executor import RayExecutor
        from tune_core.execution.tune_controller import TuneController
        from tune_core.logger import CSVLoggerCallback, JsonLoggerCallback
        from tune_core.progress_reporter import ProgressReporterCallback

        from tune_core.experiment.experiment_state import (
            ExperimentStateWriter, load_experiment_state)

        tc, rc = self._tune_config, self._run_config
        trainable_name = get_trainable_name(self._trainable)
        restored_state = None
        if self._restore is not None:
            _, restored_state = load_experiment_state(self._restore["path"])
            search_alg, scheduler = restored_state["search_alg"], restored_state["scheduler"]
        else:
            search_alg = self._search_alg()
            scheduler = self._scheduler()
        stopper = self._stopper()
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True)
        executor = RayExecutor(self._trainable, reuse_actors=tc.reuse_actors,
                               experiment_name=rc.name or trainable_name,
                               stop_timeout=_env_seconds("TUNE_FORCE_TRIAL_CLEANUP_S", 30.0))
        executor.setup()
        if has_static_resources(self._trainable):
            self._check_static_resources(executor)
        if self._restore is not None:
            path = self._restore["path"]
            name = os.path.basename(path)
        else:
            name, path = self._experiment_path(trainable_name)
            self._save_tuner(path)
        verbose = 1 if rc.verbose is None else int(rc.verbose)
        callbacks: List[Callback] = list(rc.callbacks or [])
        callbacks += [JsonLoggerCallback(), CSVLoggerCallback()]
        reporter = ProgressReporterCallback(verbose=verbose, reporter=rc.progress_reporter,
                                            metric=tc.metric, mode=tc.mode)
        callbacks.append(reporter)
        cc = rc.checkpoint_config
        is_class = inspect.isclass(self._trainable)
        saves = is_class and self._trainable.save_checkpoint is not Trainable.save_checkpoint
        if is_class and not saves and (cc.checkpoint_at_end or cc.checkpoint_frequency):
            raise ValueError(f"CheckpointConfig asks for checkpoints (checkpoint_at_end="
                             f"{cc.checkpoint_at_end!r}, checkpoint_frequency="
                             f"{cc.checkpoint_frequency!r}) but {trainable_name} does not "
                             "implement save_checkpoint(checkpoint_dir)")
        # By default a class trainable saves at the end when it knows how to save.
        at_end = bool(cc.checkpoint_at_end) if cc.checkpoint_at_end is not None else saves
        if not inspect.isclass(self._trainable) and (cc.checkpoint_frequency or
                                                     cc.checkpoint_at_end):
            raise ValueError("CheckpointConfig(checkpoint_frequency=..., checkpoint_at_end=...) "
                             "only apply to class trainables; a function trainable saves "
                             "checkpoints with tune.report(metrics, checkpoint=...)")
        controller = TuneController(
            executor=executor, search_alg=search_alg, scheduler=scheduler, stopper=stopper,
            callbacks=callbacks,
            resources_fn=lambda config: resolve_resources(self._trainable, config),
            trainable_name=trainable_name, experiment_name=name, experiment_path=path,
            strict_metrics=self._strict_metrics(search_alg, scheduler, stopper),
            max_concurrent_trials=tc.max_concurrent_trials,
            max_failures=rc.failure_config.max_failures,
            fail_fast=rc.failure_config.fail_fast,
            trial_name_creator=tc.trial_name_creator,
            trial_dirname_creator=tc.trial_dirname_creator,
            checkpoint_frequency=cc.checkpoint_frequency if inspect.isclass(self._trainable)
            else 0, checkpoint_at_end=at_end and inspect.isclass(self._trainable),
            state_writer=ExperimentStateWriter(path))
        if restored_state is not None:
            controller.restore_state(
                restored_state, resume_unfinished=self._restore["resume_unfinished"],
                resume_errored=self._restore["resume_errored"],
                restart_errored=self._restore["restart_errored"])
        for cb in callbacks:
            cb.setup(stop=rc.stop, num_samples=tc.num_samples,
                     total_num_samples=search_alg.total_samples, experiment_name=name,
                     experiment_path=path, time_budget_s=tc.time_budget_s,
                     total_resources=executor.total_resources(),
                     search_alg_name=type(getattr(search_alg, "searcher", search_alg)).__name__,
                     scheduler_name=type(scheduler).__name__)
        with _graceful_sigint(controller):
            trials = controller.run()
        if controller.interrupted and verbose:
            sys.stderr.write(f"Experiment interrupted; its state is saved. Continue it with "
                             f"tune.Tuner.restore({path!r}, trainable).fit()\n")
        self._results = ResultGrid(trials, path, tc.metric, tc.mode)
        return self._results

    def _save_tuner(self, path: str) -> None:
        """What ``Tuner.restore`` needs besides the trainable, written once."""
        import cloudpickle

        from tune_core.experiment.experiment_state import TUNER_FILE, _write_atomically

        saved = {"param_space": self._param_space, "tune_config": self._tune_config,
                 "run_config": self._run_config}
        try:
            data = cloudpickle.dumps(saved)
        except Exception as exc:  # e.g. a callback holding a lock
            import warnings

            warnings.warn(f"The experiment's configs could not be saved for Tuner.restore "
                          f"({type(exc).__name__}: {exc}); restoring it will need "
                          "param_space=... and the same configs again.")
            saved["run_config"] = dataclasses.replace(self._run_config, callbacks=None)
            data = cloudpickle.dumps(saved)
        _write_atomically(os.path.join(path, TUNER_FILE), data)

    def _check_static_resources(self, executor) -> None:
        from tune_core.execution.placement_groups import can_ever_fit

        pgf = resolve_resources(self._trainable, {})
        total = executor.total_resources()
        if can_ever_fit(pgf, total, list(executor.largest_node_resources())):
            return
        have = ", ".join(f"{v:g} {k}" for k, v in sorted(total.items())
                         if not k.startswith("node:") and k != "object_store_memory")
        raise TuneError(f"Each trial requests {pgf!r}, which can never fit this Ray cluster "
                        f"(it has {have}). Lower the request (tune.with_resources) or start "
                        "Ray with more resources.")

    def get_results(self) -> ResultGrid:
        """The results of ``fit()``; for a restored Tuner before ``fit()``, the results
        saved so far."""
        if self._results is None:
            if self._restore is not None:
                tc = self._tune_config
                return ResultGrid.from_path(self._restore["path"], tc.metric, tc.mode)
            raise RuntimeError("Tuner.get_results(): call fit() first")
        return self._results


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"The environment variable {name}={value!r} must be a number of "
                         "seconds >= 0")
    return seconds


class _graceful_sigint:
    """First Ctrl+C ends the experiment cleanly (results are kept); a second one aborts."""

    def __init__(self, controller) -> None:
        self._controller = controller
        self._previous = None
        self._count = 0

    def _handler(self, signum, frame) -> None:
        self._count += 1
        if self._count > 1:
            raise KeyboardInterrupt
        sys.stderr.write("\nStopping the experiment (Ctrl+C again to abort at once)...\n")
        self._controller.request_stop()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
