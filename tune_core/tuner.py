"""``Tuner``: the entry point (Ray Tune's ``tune.Tuner``)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import inspect
import os
import posixpath
import signal
import sys
import threading
import urllib.parse
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


def release_workers() -> int:
    """End now the idle worker processes that ``TuneConfig(keep_workers_s=...)`` kept
    after a ``fit()`` (freeing the CPUs/GPUs they hold) instead of when that time is up.
    Returns how many there were. ``ray.shutdown()`` ends them too."""
    executor = sys.modules.get("tune_core.execution.ray_executor")
    return executor.release_kept_workers() if executor is not None else 0


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
    def can_restore(cls, path: "str | os.PathLike[str]", *,
                    storage_filesystem: Any = None) -> bool:
        """Whether ``path`` (a local path or a URI such as ``s3://bucket/prefix/exp``)
        holds an experiment that ``Tuner.restore`` can continue."""
        from tune_core import storage
        from tune_core.experiment.experiment_state import STATE_FILE, TUNER_FILE

        fs, fs_path = storage.resolve(path, storage_filesystem, owner="Tuner.can_restore",
                                      name="path")
        join = os.path.join if storage._local_path(fs, fs_path) is not None else posixpath.join
        return storage.exists(fs, join(fs_path, STATE_FILE)) and \
            storage.exists(fs, join(fs_path, TUNER_FILE))

    @classmethod
    def restore(cls, path: "str | os.PathLike[str]", trainable: Any, *,
                resume_unfinished: bool = True, resume_errored: bool = False,
                restart_errored: bool = False, param_space: Optional[Dict[str, Any]] = None,
                storage_filesystem: Any = None) -> "Tuner":
        """Continue an interrupted experiment where it stopped.

        Args:
            path: the experiment directory (``results.experiment_path``): a local path
                or a URI such as ``s3://bucket/prefix/experiment``.
            trainable: the same trainable (it is not saved with the experiment).
            resume_unfinished: continue trials that had not ended (from their
                newest checkpoint); False marks them TERMINATED.
            resume_errored: continue errored trials from their newest checkpoint.
            restart_errored: start errored trials over from scratch.
            param_space: the search space again, if it held objects that could
                not be saved (it must be the same space).
            storage_filesystem: the ``pyarrow.fs.FileSystem`` the experiment is on, if
                it was run with ``RunConfig(storage_filesystem=...)``; ``path`` is then
                a path inside it.
        """
        import cloudpickle

        from tune_core import storage
        from tune_core.experiment.experiment_state import TUNER_FILE

        _check_trainable(trainable)
        if resume_errored and restart_errored:
            raise ValueError("Tuner.restore: pass resume_errored=True or restart_errored=True, "
                             "not both")
        path = os.fspath(path)
        shown = storage.redact_uri(path)
        if not cls.can_restore(path, storage_filesystem=storage_filesystem):
            raise ValueError(f"Tuner.restore(path={shown!r}): no experiment to "
                             "restore there (experiment_state.json and tuner.pkl are "
                             "needed); pass the directory printed at the start of the run")
        fs, fs_path = storage.resolve(path, storage_filesystem, owner="Tuner.restore",
                                      name="path")
        join = os.path.join if storage._local_path(fs, fs_path) is not None else posixpath.join
        saved = cloudpickle.loads(storage.read_bytes(fs, join(fs_path, TUNER_FILE)))
        parent, name = _split_experiment_path(path, storage_filesystem)
        run_config = dataclasses.replace(saved["run_config"], storage_path=parent, name=name,
                                         storage_filesystem=storage_filesystem)
        tuner = cls(trainable, param_space=param_space if param_space is not None
                    else saved["param_space"], tune_config=saved["tune_config"],
                    run_config=run_config)
        tuner._restore = {"path": path, "storage_filesystem": storage_filesystem,
                          "resume_unfinished": resume_unfinished,
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
        if sched.requires_metric and not (sched.metric and sched.mode):
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

    def _storage(self, trainable_name: str) -> Any:
        """The experiment's StorageContext; picks a new experiment's name."""
        from tune_core import storage
        from tune_core.experiment.experiment_state import STATE_FILE

        rc = self._run_config
        root = rc.storage_path or DEFAULT_STORAGE_PATH
        name = rc.name
        if self._restore is None:
            fs, root_fs = storage.resolve(root, rc.storage_filesystem)
            join = os.path.join if storage._local_path(fs, root_fs) is not None \
                else posixpath.join
            if name is not None:
                if storage.exists(fs, join(root_fs, name, STATE_FILE)):
                    where = storage.redact_uri(root)
                    raise ValueError(
                        f"RunConfig(name={name!r}): {where} already holds an experiment of "
                        "that name. Continue it with tune.Tuner.restore(path, trainable), or "
                        "choose another name (or none, for a new dated one)")
            else:
                stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
                name = base = f"{trainable_name}_{stamp}"
                n = 1
                while storage.exists(fs, join(root_fs, name)):
                    n += 1
                    name = f"{base}_{n}"
        ctx = storage.StorageContext(root, name, rc.storage_filesystem)
        if not ctx.is_local:
            # Staging directories are per storage location: two experiments of the same
            # name on different buckets never share one.
            digest = hashlib.sha1(ctx.experiment_uri.encode()).hexdigest()[:10]
            staging = os.environ.get("TUNE_STAGING_DIR") or storage.DEFAULT_STAGING_ROOT
            ctx = storage.StorageContext(root, name, rc.storage_filesystem,
                                         local_staging_root=os.path.join(staging, digest))
        return ctx

    def _prepare_local_dir(self, ctx: Any) -> str:
        """The driver's experiment directory, with a restored experiment's files in it."""
        import shutil

        from tune_core import storage

        local = ctx.local_experiment_dir
        if not ctx.is_local and not (self._restore is not None and
                                     self._staging_is_newer(ctx, local)):
            # A staging directory only caches what storage holds.
            shutil.rmtree(local, ignore_errors=True)
            if self._restore is not None:
                # Everything but the checkpoints, which trials read from storage themselves.
                storage.with_retries(
                    lambda: storage.download_dir(
                        ctx.fs, ctx.experiment_fs_path, local,
                        skip=lambda rel: any(part.startswith("checkpoint_")
                                             for part in rel.split("/"))),
                    f"Downloading the experiment from {storage.redact_uri(ctx.experiment_uri)}")
        os.makedirs(local, exist_ok=True)
        return local

    def _state_info(self, search_alg: Any, scheduler: Any) -> Dict[str, Any]:
        """What experiment_state.json says about the experiment besides its trials."""
        tc = self._tune_config
        searcher = getattr(search_alg, "searcher", search_alg)
        metric = tc.metric or getattr(searcher, "metric", None) or \
            getattr(scheduler, "metric", None)
        mode = tc.mode or getattr(searcher, "mode", None) or getattr(scheduler, "mode", None)
        return {"metric": metric if isinstance(metric, (str, list)) else None,
                "mode": mode if isinstance(mode, (str, list)) else None,
                "param_space": self._param_space}

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
            metrics = scheduler.metric  # a list for multi-objective schedulers
            for name in [metrics] if isinstance(metrics, str) else metrics:
                names[name] = f"{type(scheduler).__name__}(metric=...)"
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

        trainable_name = get_trainable_name(self._trainable)
        # With Ray running, the first trial's worker (a new process: 0.5-1 s) starts now
        # and the rest of the setup (imports, storage, the searcher) runs meanwhile.
        executor = self._start_executor(trainable_name) if ray.is_initialized() else None
        # Nothing may leave a worker behind: a started one holds resources until the
        # executor shuts down (controller.run does that once it runs).
        try:
            return self._fit(executor, trainable_name)
        except BaseException:
            if executor is not None:
                executor.shutdown()
            raise

    def _start_executor(self, trainable_name: str) -> Any:
        from tune_core.execution.ray_executor import RayExecutor

        tc, rc = self._tune_config, self._run_config
        executor = RayExecutor(self._trainable, reuse_actors=tc.reuse_actors,
                               experiment_name=rc.name or trainable_name,
                               stop_timeout=_env_seconds("TUNE_FORCE_TRIAL_CLEANUP_S", 30.0),
                               log_files=rc.log_files(), keep_workers_s=tc.keep_workers_s)
        executor.setup()
        try:
            if has_static_resources(self._trainable):
                self._check_static_resources(executor)
                executor.prestart(resolve_resources(self._trainable, {}), self._first_wave())
        except BaseException:
            executor.shutdown()
            raise
        return executor

    def _first_wave(self) -> int:
        """How many trials start at once at the beginning, as far as the config says
        (the executor caps it by the free resources). One with a searcher of the user's:
        it may hold trials back, and an idle worker holds its CPU for nothing."""
        from tune_core.search.variant_generator import count_grid_points

        tc = self._tune_config
        if tc.search_alg is not None or self._restore is not None:
            return 1
        wave = tc.num_samples * count_grid_points(self._param_space) \
            if tc.num_samples > 0 else 1 << 30
        return max(1, min(wave, tc.max_concurrent_trials or wave))

    def _fit(self, executor: Any, trainable_name: str) -> ResultGrid:
        import ray

        from tune_core.execution.tune_controller import TuneController
        from tune_core.logger import CSVLoggerCallback, JsonLoggerCallback
        from tune_core.progress_reporter import ProgressReporterCallback

        from tune_core.experiment.experiment_state import (
            ExperimentStateWriter, load_experiment_state)

        from tune_core import storage
        from tune_core.experiment.syncer import ExperimentSyncer

        tc, rc = self._tune_config, self._run_config
        ctx = self._storage(trainable_name)
        name = ctx.experiment_name
        path = self._prepare_local_dir(ctx)
        shown_path = storage.redact_uri(ctx.experiment_uri)
        restored_state = None
        if self._restore is not None:
            _, restored_state = load_experiment_state(path)
            search_alg, scheduler = restored_state["search_alg"], restored_state["scheduler"]
        else:
            search_alg = self._search_alg()
            scheduler = self._scheduler()
        stopper = self._stopper()
        if executor is None:
            if not ray.is_initialized():
                ray.init(ignore_reinit_error=True)
            executor = self._start_executor(trainable_name)
        try:
            if ctx.is_local and len(executor.largest_node_resources()) > 1:
                self._check_shared_storage(executor, path)
            if self._restore is None:
                self._save_tuner(path)
            verbose = 1 if rc.verbose is None else int(rc.verbose)
            callbacks: List[Callback] = list(rc.callbacks or [])
            # The default loggers, except those of a type the user passed (Ray Tune's rule).
            defaults: List[Any] = [JsonLoggerCallback, CSVLoggerCallback]
            from tune_core.logger.tensorboardx import TBXLoggerCallback, tensorboardx_available
            if tensorboardx_available():
                defaults.append(TBXLoggerCallback)
            callbacks += [cls() for cls in defaults
                          if not any(isinstance(cb, cls) for cb in callbacks)]
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
                raise ValueError("CheckpointConfig(checkpoint_frequency=..., "
                                 "checkpoint_at_end=...) only apply to class trainables; a "
                                 "function trainable saves checkpoints with "
                                 "tune.report(metrics, checkpoint=...)")
            controller = TuneController(
                executor=executor, search_alg=search_alg, scheduler=scheduler, stopper=stopper,
                callbacks=callbacks,
                resources_fn=lambda config: resolve_resources(self._trainable, config),
                trainable_name=trainable_name, experiment_name=name,
                experiment_path=ctx.experiment_fs_path, local_experiment_path=path, storage=ctx,
                syncer=ExperimentSyncer(ctx, sync_period=rc.sync_config.sync_period,
                                        sync_timeout=rc.sync_config.sync_timeout,
                                        warn=lambda text: sys.stderr.write(f"tune_core: {text}\n")),
                checkpoint_config=cc, sync_config=rc.sync_config,
                strict_metrics=self._strict_metrics(search_alg, scheduler, stopper),
                max_concurrent_trials=tc.max_concurrent_trials,
                max_failures=rc.failure_config.max_failures,
                fail_fast=rc.failure_config.fail_fast,
                trial_name_creator=tc.trial_name_creator,
                trial_dirname_creator=tc.trial_dirname_creator,
                checkpoint_frequency=cc.checkpoint_frequency if inspect.isclass(self._trainable)
                else 0, checkpoint_at_end=at_end and inspect.isclass(self._trainable),
                state_writer=ExperimentStateWriter(path),
                state_info=self._state_info(search_alg, scheduler))
            if restored_state is not None:
                controller.restore_state(
                    restored_state, resume_unfinished=self._restore["resume_unfinished"],
                    resume_errored=self._restore["resume_errored"],
                    restart_errored=self._restore["restart_errored"])
            for cb in callbacks:
                cb.setup(stop=rc.stop, num_samples=tc.num_samples,
                         total_num_samples=search_alg.total_samples, experiment_name=name,
                         experiment_path=shown_path, time_budget_s=tc.time_budget_s,
                         total_resources=executor.total_resources(),
                         search_alg_name=type(getattr(search_alg, "searcher", search_alg)).__name__,
                         scheduler_name=type(scheduler).__name__)
            with _graceful_sigint(controller):
                trials = controller.run()
        except BaseException:
            executor.shutdown()
            raise
        if controller.interrupted and verbose:
            sys.stderr.write(f"Experiment interrupted; its state is saved. Continue it with "
                             f"tune.Tuner.restore({shown_path!r}, trainable).fit()\n")
        self._results = ResultGrid(trials, ctx.experiment_uri, tc.metric, tc.mode,
                                   filesystem=None if ctx.is_local else ctx.fs)
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

    @staticmethod
    def _staging_is_newer(ctx: Any, local: str) -> bool:
        """Whether this machine's staging directory holds a newer state of the experiment
        than storage: a driver killed here had not uploaded its last results yet."""
        import json

        from tune_core import storage
        from tune_core.experiment.experiment_state import STATE_FILE

        try:
            with open(os.path.join(local, STATE_FILE), "rb") as f:
                mine = json.loads(f.read())
            theirs = json.loads(storage.read_bytes(
                ctx.fs, posixpath.join(ctx.experiment_fs_path, STATE_FILE)))
        except (OSError, ValueError):
            return False
        return float(mine.get("timestamp", 0)) >= float(theirs.get("timestamp", 0))

    def _check_shared_storage(self, executor, path: str) -> None:
        """On a cluster, every node must see a local storage path (NFS), or trials
        on the other nodes would write their checkpoints where nobody finds them."""
        import uuid

        marker = os.path.join(path, f".tune_storage_check_{uuid.uuid4().hex[:8]}")
        with open(marker, "w") as f:
            f.write("tune_core checks that every node sees this directory\n")
        try:
            blind = executor.nodes_missing_path(marker)
        finally:
            os.remove(marker)
        if blind:
            raise ValueError(
                f"RunConfig(storage_path={os.path.dirname(path)!r}) is a directory on this "
                f"machine's disk that other nodes of the Ray cluster cannot see "
                f"({', '.join(blind)}): trials there could not save checkpoints or resume. "
                "On a multi-node cluster use shared storage: an NFS path mounted at the same "
                "place on every node, or a cloud URI such as s3://bucket/prefix.")

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
                return ResultGrid.from_path(
                    self._restore["path"], tc.metric, tc.mode,
                    storage_filesystem=self._restore["storage_filesystem"])
            raise RuntimeError("Tuner.get_results(): call fit() first")
        return self._results


def _split_experiment_path(path: str, filesystem: Any) -> tuple:
    """``(storage_path, experiment_name)`` of an experiment directory or URI."""
    from tune_core import storage

    if storage.is_uri(path) and filesystem is None and not path.startswith("file://"):
        parts = urllib.parse.urlsplit(path)
        trimmed = parts.path.rstrip("/")
        parent, name = trimmed.rsplit("/", 1) if "/" in trimmed else ("", trimmed)
        if not name:  # s3://bucket itself
            raise ValueError(f"Tuner.restore(path={storage.redact_uri(path)!r}): name the "
                             "experiment's directory, not the bucket")
        if not parent:  # s3://bucket/experiment: the experiment name is the key
            return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", parts.query,
                                            "")), name
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parent, parts.query,
                                        "")), name
    if filesystem is not None:
        _, fs_path = storage.resolve(path, filesystem, owner="Tuner.restore", name="path")
        return posixpath.dirname(fs_path), posixpath.basename(fs_path)
    _, local = storage.resolve(path, None, owner="Tuner.restore", name="path")
    return os.path.dirname(local), os.path.basename(local)


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
