"""The TuneController: the driver's event loop. It never imports Ray.

Each :meth:`TuneController.step`:

1. creates trials from the search algorithm while there is room;
2. starts the trials the scheduler picks, while the executor has resources;
3. takes the executor's events (results, completions, failures), in batches;
4. passes each result through stopper -> scheduler -> searcher -> callbacks;
5. applies the decisions (continue, pause, stop);
6. checks whether the experiment as a whole should stop.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

from tune_core._util import release_freed_memory
from tune_core.callback import Callback, CallbackList
from tune_core.checkpoint import Checkpoint
from tune_core.error import TrialError, TuneError
from tune_core.execution.executor import (
    Executor, TrialFailed, TrialFinished, TrialLaunch, TrialPaused, TrialResults, TrialStarted,
    TrialStopped)
from tune_core.execution.placement_groups import PlacementGroupFactory, can_ever_fit
from tune_core.experiment.checkpoint_manager import CheckpointManager
from tune_core.experiment.experiment_state import (
    ExperimentStateWriter, encode_finished, trial_from_state, trial_to_state)
from tune_core.experiment.trial import Trial, TrialStatus, new_run_prefix, new_trial_id
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision, TrialScheduler)
from tune_core.search.search_algorithm import SearchAlgorithm
from tune_core.stopper.stopper import Stopper

__all__ = ["TuneController"]

logger = logging.getLogger(__name__)

_MAX_DIRNAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,+-]+")


def _default_dirname(trial: Trial) -> str:
    base = f"{trial.trainable_name[:20]}_{trial.trial_id}"
    tag = _UNSAFE.sub("_", trial.experiment_tag)
    name = f"{base}_{tag}" if tag else base
    return name[:_MAX_DIRNAME].rstrip("_.")


class TuneController:
    """Drives one experiment. See the module docstring for the loop.

    Args:
        executor: runs the trials (Ray, or a fake in tests).
        search_alg: where new trials come from.
        scheduler: decides continue/pause/stop per result and which trial runs next.
        resources_fn: the resource request of a trial, from its config.
        strict_metrics: metric names every result must hold once a trial reported them
            (the first result of each trial must hold them all).
        clock: a monotonic clock; tests inject a fake one.
    """

    def __init__(
        self,
        *,
        executor: Executor,
        search_alg: SearchAlgorithm,
        scheduler: Optional[TrialScheduler] = None,
        stopper: Optional[Stopper] = None,
        callbacks: Sequence[Callback] = (),
        resources_fn: Callable[[Dict[str, Any]], PlacementGroupFactory] = lambda c:
            PlacementGroupFactory([{"CPU": 1}]),
        trainable_name: str = "trainable",
        experiment_name: str = "experiment",
        experiment_path: str = "",
        strict_metrics: Any = (),
        max_concurrent_trials: Optional[int] = None,
        max_failures: int = 0,
        fail_fast: Any = False,
        trial_name_creator: Optional[Callable[[Trial], str]] = None,
        trial_dirname_creator: Optional[Callable[[Trial], str]] = None,
        checkpoint_frequency: int = 0,
        checkpoint_at_end: bool = False,
        clock: Callable[[], float] = time.monotonic,
        poll_timeout: float = 0.2,
        state_writer: Optional[ExperimentStateWriter] = None,
        storage: Any = None,
        local_experiment_path: Optional[str] = None,
        syncer: Any = None,
        checkpoint_config: Any = None,
        sync_config: Any = None,
        state_info: Optional[Dict[str, Any]] = None,
    ) -> None:
        self._executor = executor
        self._search_alg = search_alg
        self._scheduler = scheduler or FIFOScheduler()
        self._stopper = stopper
        self._callbacks = CallbackList(list(callbacks))
        self._resources_fn = resources_fn
        self._pgfs: Dict[PlacementGroupFactory, PlacementGroupFactory] = {}
        self._trainable_name = trainable_name
        self._experiment_name = experiment_name
        self._experiment_path = experiment_path
        # metric name -> where it was configured (for the error message)
        self._strict_metrics = dict(strict_metrics) if isinstance(strict_metrics, dict) else \
            {m: "the experiment's settings" for m in strict_metrics}
        self._max_concurrent = max_concurrent_trials or 0
        self._max_failures = max_failures
        self._fail_fast = fail_fast
        self._trial_name_creator = trial_name_creator
        self._trial_dirname_creator = trial_dirname_creator
        self._checkpoint_frequency = checkpoint_frequency
        self._checkpoint_at_end = checkpoint_at_end
        self._clock = clock
        self._poll_timeout = poll_timeout

        self.trials: List[Trial] = []
        self._by_id: Dict[str, Trial] = {}
        # Trials that may be started: PENDING ones and PAUSED ones whose save is done.
        self._waiting: "OrderedDict[str, Trial]" = OrderedDict()
        self._active: Dict[str, Trial] = {}     # starting or running in the executor
        self._stopping: Set[str] = set()        # stop/pause sent, executor not done yet
        self._pausing: Set[str] = set()
        self._restarting: Set[str] = set()     # stopped to start again (RestartTrial)
        self._checkpoint_counters: Dict[str, Dict[str, float]] = {}
        self._run_prefix = new_run_prefix()
        self._next_index = 0
        self._search_finished = False
        self._stop_all = False
        self._stop_requested = False   # set from a signal handler; acted on in step()
        self.interrupted = False        # stopped by request_stop: unfinished trials stay so
        self._seen_pause = False
        self._fatal: Optional[BaseException] = None
        self.iteration = 0
        self._started = False
        self._state_writer = state_writer
        self._state_dirty = True
        # Storage: trial directories are under experiment_path on the storage's
        # filesystem; the driver's logs under local_experiment_path.
        self._storage = storage
        self._local_experiment_path = local_experiment_path or experiment_path
        self._checkpoint_fs = storage.fs if storage is not None and not storage.is_local \
            else None
        self._syncer = syncer
        self._checkpoint_config = checkpoint_config
        self._sync_config = sync_config
        # Written into experiment_state.json as they are, for tools that read no pickle
        # (the CLI): metric, mode, the search space rendered as text.
        self._state_info = dict(state_info or {})
        self._obsolete_checkpoints: List[str] = []
        self._held_checkpoints: List[str] = []  # dropped, but still some trial's newest

    # --- public ------------------------------------------------------------------------------
    @property
    def search_alg(self) -> SearchAlgorithm:
        return self._search_alg

    @property
    def scheduler(self) -> TrialScheduler:
        return self._scheduler

    def run(self) -> List[Trial]:
        """Run the experiment to the end and return all trials."""
        try:
            while not self.is_finished():
                self.step()
        finally:
            try:
                self.cleanup()
            finally:
                try:
                    self.save_state()
                finally:
                    if self._syncer is not None:
                        self._syncer.sync()
                        self._syncer.close()
        if self._fatal is not None:
            raise self._fatal
        return self.trials

    def is_finished(self) -> bool:
        if self._fatal is not None:
            return True
        if self._stop_requested and not self._stop_all:
            return False  # the next step stops everything first
        if self.interrupted:
            return not self._active and not self._stopping
        if self._stop_all or self._search_finished:
            return not self._active and not self._stopping and not self._waiting
        return False

    def request_stop(self) -> None:
        """Interrupt the experiment (Ctrl+C): stop running trials, start no new ones.

        Unlike a stopper's stop-all, unfinished trials are not marked TERMINATED:
        they are PAUSED (or stay PENDING) so that ``Tuner.restore`` continues them.
        Safe to call from a signal handler: it only sets a flag that the next
        :meth:`step` acts on.
        """
        self._stop_requested = True

    def step(self) -> None:
        if not self._started:
            self._started = True
            self._executor.setup()
            self._scheduler.set_experiment_path(self._local_experiment_path)
            self._scheduler.set_cluster_resources(dict(self._executor.total_resources()))
        self.iteration += 1
        if self._stop_requested and not self._stop_all:
            self._interrupt()
        self._callbacks.on_step_begin(iteration=self.iteration, trials=self.trials)
        if not self._stop_all:
            self._create_and_start_trials()
        busy = bool(self._active or self._stopping)
        for event in self._executor.poll(self._poll_timeout if busy else 0.01):
            self._handle(event)
            if self._fatal is not None:
                return
        if not self._stop_all and self._stopper is not None and self._stopper.stop_all():
            self._stop_experiment()
        self._callbacks.on_step_end(iteration=self.iteration, trials=self.trials)
        if self._state_dirty and self._state_writer is not None and self._state_writer.due():
            self.save_state()
        if self._syncer is not None and self._syncer.due():
            self._callbacks.flush()
            self._syncer.sync()

    # --- experiment state ---------------------------------------------------------------------
    def save_state(self) -> None:
        """Write the experiment state now (also called at the end and on SIGINT)."""
        if self._state_writer is None:
            self._release_obsolete_checkpoints()
            return
        import cloudpickle  # deferred: only experiments that save state need it

        self._callbacks.flush()
        started = time.monotonic()
        live, new_finished, ended = [], [], []
        counts: Dict[str, int] = {}
        for order, t in enumerate(self.trials):
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
            if t.is_finished() and t.state_saved:
                continue  # in the finished-trial files already
            state = trial_to_state(t, self._checkpoint_counters.get(t.trial_id))
            state["order"] = order
            if t.is_finished():
                new_finished.append(encode_finished(state))
                ended.append(t)
            else:
                live.append(state)
        json_state = {
            "experiment_name": self._experiment_name,
            "trainable_name": self._trainable_name,
            "search_alg": type(getattr(self._search_alg, "searcher", self._search_alg)).__name__,
            "scheduler": type(self._scheduler).__name__,
            "status_counts": counts,
            "finished": self._search_finished and not self.interrupted and all(
                t.is_finished() for t in self.trials),
            "interrupted": self.interrupted,
            **self._state_info,
            "trials": live,
        }
        pickled = cloudpickle.dumps({
            "trials": live, "search_alg": self._search_alg, "scheduler": self._scheduler,
            "run_prefix": self._run_prefix, "next_index": self._next_index,
            "search_finished": self._search_finished})
        self._state_writer.write(json_state, pickled, prepared_s=time.monotonic() - started,
                                 finished=new_finished)
        for t in ended:
            t.state_saved = True
        self._state_dirty = False
        self._release_obsolete_checkpoints()
        release_freed_memory()  # what the snapshot built and dropped

    def _release_obsolete_checkpoints(self) -> None:
        """Checkpoints retention dropped go once no saved state references them, and
        never while one is some trial's newest (a trial restarted from another's)."""
        candidates = self._held_checkpoints + self._obsolete_checkpoints
        self._obsolete_checkpoints = []
        if not candidates:
            return
        in_use = {t.checkpoint.path for t in self.trials if t.checkpoint is not None}
        self._held_checkpoints = [p for p in candidates if p in in_use]
        obsolete = [p for p in candidates if p not in in_use]
        if obsolete and self._syncer is not None:
            self._syncer.state_written(obsolete)

    def restore_state(self, state: Dict[str, Any], *, resume_unfinished: bool = True,
                      resume_errored: bool = False, restart_errored: bool = False) -> None:
        """Take over the trials of a saved experiment (``Tuner.restore``).

        The search algorithm and scheduler given to this controller should be the
        restored ones. Unfinished trials resume from their newest checkpoint;
        errored ones resume (``resume_errored``) or start over (``restart_errored``).
        """
        self._run_prefix = state["run_prefix"]
        self._next_index = state["next_index"]
        self._search_finished = state["search_finished"] and self._search_alg.is_finished()
        for ts in state["trials"]:
            trial, counters = trial_from_state(ts, self._experiment_path,
                                               self._local_experiment_path,
                                               self._checkpoint_fs, self._new_manager())
            if counters:
                self._checkpoint_counters[trial.trial_id] = counters
            self.trials.append(trial)
            self._by_id[trial.trial_id] = trial
            if trial.status == TrialStatus.ERROR and (restart_errored or resume_errored):
                if restart_errored:
                    trial.checkpoint = None
                    self._checkpoint_counters.pop(trial.trial_id, None)
                trial.num_failures = 0
                trial.error_msg = None
                trial.set_status(TrialStatus.PENDING)
            if trial.is_finished():
                continue
            if not resume_unfinished:
                trial.set_status(TrialStatus.TERMINATED)
                continue
            if trial.status == TrialStatus.RUNNING:
                trial.set_status(TrialStatus.PENDING)
            self._waiting[trial.trial_id] = trial

    def cleanup(self) -> None:
        for trial_id in list(self._active):
            self._executor.stop_trial(trial_id)
        self._executor.shutdown()
        self._callbacks.on_experiment_end(trials=self.trials)

    # --- 1. and 2.: creating and starting trials ---------------------------------------------
    def _has_pending(self) -> bool:
        return any(t.status == TrialStatus.PENDING for t in self._waiting.values())

    def _create_and_start_trials(self) -> None:
        for trial_id in self._scheduler.trials_to_stop():
            trial = self._waiting.get(trial_id)
            if trial is not None:  # the scheduler will never run it again
                self._complete(trial)
        while True:
            if self._max_concurrent and len(self._active) >= self._max_concurrent:
                return
            if not self._search_finished and not self._has_pending():
                self._create_trial()
            if not self._waiting:
                return
            candidates = [t.snapshot() for t in self._waiting.values()]
            chosen = self._scheduler.choose_trial_to_run(candidates)
            if chosen is None:
                self._complete_unresumable()
                return
            trial = self._waiting.get(chosen)
            if trial is None:
                raise TuneError(f"{self._scheduler.debug_string()}.choose_trial_to_run returned "
                                f"{chosen!r}, which is not one of the candidates' ids")
            if not self._executor.can_start(trial.placement_group_factory):
                return
            if trial.status == TrialStatus.PAUSED:
                restart = self._scheduler.on_trial_resume(trial.snapshot())
                if restart is not None:
                    self._apply_restart(trial, restart)
            self._launch(trial)

    def _complete_unresumable(self) -> None:
        """Paused trials end when nothing can resume them any more.

        No trial runs, no new trial will come, and the scheduler picks none of the
        paused ones: no future result could change its mind, so they are done (as a
        promotion-based scheduler's trials that stay at their rung).
        """
        if not self._search_finished or self._active or self._stopping or \
                self._has_pending():
            return
        for trial in list(self._waiting.values()):
            self._complete(trial)

    def _create_trial(self) -> None:
        trial_id = new_trial_id(self._run_prefix, self._next_index)
        suggestion = self._search_alg.next_trial(trial_id)
        if suggestion is None:
            if self._search_alg.is_finished():
                self._search_finished = True
            return
        self._next_index += 1
        config = self._scheduler.complete_config(dict(suggestion.config))
        trial = Trial(trial_id, config, trainable_name=self._trainable_name,
                      experiment_tag=suggestion.experiment_tag,
                      evaluated_params=dict(suggestion.evaluated_params),
                      experiment_path=self._experiment_path,
                      local_experiment_path=self._local_experiment_path)
        self.trials.append(trial)
        self._by_id[trial_id] = trial
        try:
            if self._trial_name_creator is not None:
                trial.trial_name = str(self._trial_name_creator(trial))
            dirname = (self._trial_dirname_creator(trial) if self._trial_dirname_creator
                       else _default_dirname(trial))
            trial.dirname = _UNSAFE.sub("_", str(dirname))[:255] or trial.trial_id
            pgf = self._resources_fn(trial.config)
            # One object per distinct request, not one per trial.
            trial.placement_group_factory = self._pgfs.setdefault(pgf, pgf)
            self._check_fits(trial)
        except Exception as exc:  # a bad creator or resource request fails this trial only
            if not trial.dirname:
                trial.dirname = _default_dirname(trial)
            self._scheduler.on_trial_add(trial.snapshot())
            self._fail(trial, TrialError(f"{type(exc).__name__}: {exc}", trial_id=trial_id),
                       "", retry=False)
            return
        self._scheduler.on_trial_add(trial.snapshot())
        self._waiting[trial_id] = trial

    def _new_manager(self) -> CheckpointManager:
        cc = self._checkpoint_config
        if cc is None:
            return CheckpointManager()
        return CheckpointManager(cc.num_to_keep, cc.checkpoint_score_attribute,
                                 cc.checkpoint_score_order)

    def _check_fits(self, trial: Trial) -> None:
        pgf = trial.placement_group_factory
        total = self._executor.total_resources()
        if not can_ever_fit(pgf, total, list(self._executor.largest_node_resources())):
            have = ", ".join(f"{v:g} {k}" for k, v in sorted(total.items())
                             if not k.startswith("node:") and k != "object_store_memory")
            raise TuneError(f"Trial {trial.trial_name} requests {pgf!r}, which can never fit "
                            f"this cluster (it has {have}). Lower the request in "
                            "tune.with_resources(...) or add nodes with those resources.")

    def _launch(self, trial: Trial) -> None:
        del self._waiting[trial.trial_id]
        self._active[trial.trial_id] = trial
        trial.set_status(TrialStatus.PENDING)  # a resumed PAUSED trial is starting again
        self._state_dirty = True
        counters = self._checkpoint_counters.get(trial.trial_id, {})
        checkpoint = trial.checkpoint
        trial.resume_iteration = int(counters.get("iteration", 0)) if checkpoint else 0
        if getattr(trial, "keep_logs_on_restart", False):
            # Restarted from another trial's checkpoint: its own rows so far stay.
            trial.keep_logs_on_restart = False
            trial.resume_iteration = None
        self._executor.start_trial(TrialLaunch(
            trial_id=trial.trial_id, trial_name=trial.trial_name, trial_dir=trial.path,
            experiment_name=self._experiment_name, experiment_path=self._experiment_path,
            config=trial.config, resources=trial.placement_group_factory,
            checkpoint_path=checkpoint.path if checkpoint is not None else None,
            restored_iteration=int(counters.get("iteration", 0)) if checkpoint else 0,
            restored_time_total=float(counters.get("time_total", 0.0)) if checkpoint else 0.0,
            checkpoint_index=int(counters.get("next_index", 0)),
            checkpoint_frequency=self._checkpoint_frequency,
            checkpoint_at_end=self._checkpoint_at_end,
            sync_results=bool(self._scheduler.pauses_trials or self._seen_pause),
            # Local storage needs no filesystem object in the worker (nor pyarrow there).
            storage=self._storage if self._checkpoint_fs is not None else None,
            **self._sync_options()))

    def _sync_options(self) -> Dict[str, Any]:
        sc = self._sync_config
        if sc is None:
            return {}
        return {"sync_artifacts": sc.sync_artifacts,
                "sync_artifacts_on_checkpoint": sc.sync_artifacts_on_checkpoint,
                "sync_timeout": float(sc.sync_timeout)}

    # --- 3. events -----------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        trial = self._by_id.get(event.trial_id)
        if trial is None:  # an executor bug: say so rather than wait for it forever
            logger.warning("Ignoring %s for unknown trial %r", type(event).__name__,
                           event.trial_id)
            return
        if isinstance(event, TrialStarted):
            if trial.trial_id in self._active and trial.status != TrialStatus.TERMINATED:
                trial.node_ip = sys.intern(event.node_ip) if event.node_ip else event.node_ip
                trial.set_status(TrialStatus.RUNNING)
                self._callbacks.on_trial_start(iteration=self.iteration, trials=self.trials,
                                               trial=trial)
        elif isinstance(event, TrialResults):
            results = iter(event.results)
            if trial.status == TrialStatus.RUNNING:
                for result in results:
                    if not self._on_result(trial, result):
                        break
            if trial.trial_id in self._pausing:
                # Made before the pause took effect: kept (they lead up to the
                # checkpoint the trial resumes from), but no longer decided on.
                for result in results:
                    self._log_result(trial, result)
        elif isinstance(event, TrialFinished):
            self._active.pop(trial.trial_id, None)
            self._stopping.discard(trial.trial_id)
            self._pausing.discard(trial.trial_id)
            self._restarting.discard(trial.trial_id)  # it ended before the restart reached it
            # It ended on its own, maybe before a pause reached it.
            if trial.status in (TrialStatus.RUNNING, TrialStatus.PAUSED):
                if trial.last_result:
                    trial.last_result["done"] = True
                self._complete(trial)
        elif isinstance(event, TrialFailed):
            self._active.pop(trial.trial_id, None)
            self._stopping.discard(trial.trial_id)
            if trial.trial_id in self._restarting:
                # Its run was being thrown away anyway: it starts from the new checkpoint.
                self._restarting.discard(trial.trial_id)
                self._requeue(trial)
                return
            if trial.trial_id in self._pausing:
                self._pausing.discard(trial.trial_id)
            if not trial.is_finished():
                self._fail(trial, event.error, event.traceback_str)
        elif isinstance(event, TrialPaused):
            self._active.pop(trial.trial_id, None)
            self._stopping.discard(trial.trial_id)
            self._pausing.discard(trial.trial_id)
            self._record_final_checkpoint(trial, event)
            if trial.status == TrialStatus.PAUSED:
                self._waiting[trial.trial_id] = trial
        elif isinstance(event, TrialStopped):
            self._active.pop(trial.trial_id, None)
            self._stopping.discard(trial.trial_id)
            if trial.trial_id in self._restarting:
                self._restarting.discard(trial.trial_id)
                self._requeue(trial)
                return
            self._record_final_checkpoint(trial, event)

    def _requeue(self, trial: Trial) -> None:
        if self._stop_all:
            if not trial.is_finished():
                self._complete(trial)
            return
        trial.set_status(TrialStatus.PENDING)
        self._waiting[trial.trial_id] = trial

    def _record_final_checkpoint(self, trial: Trial, event: Any) -> None:
        """The checkpoint a trial saved as it paused or stopped, if it is a new one."""
        path = event.checkpoint_path
        if path and (trial.checkpoint is None or trial.checkpoint.path != path):
            self._record_checkpoint(trial, path, {
                "training_iteration": event.checkpoint_iteration,
                "time_total_s": event.checkpoint_time_total})

    # --- 4. results ----------------------------------------------------------------------------
    def _on_result(self, trial: Trial, result: Dict[str, Any]) -> bool:
        """Process one result; False when the trial should take no more results."""
        result["config"] = trial.config
        result["experiment_tag"] = trial.experiment_tag
        complete = self._check_metrics(trial, result)
        if self._fatal is not None:
            return False
        decision = SchedulerDecision.CONTINUE
        if result.get("done"):
            decision = SchedulerDecision.STOP
        if complete:
            if self._stopper is not None and self._stopper(trial.trial_id, result):
                decision = SchedulerDecision.STOP
            if decision != SchedulerDecision.STOP:
                decision = self._scheduler.on_trial_result(trial.snapshot(), result)
                if not isinstance(decision, (SchedulerDecision, RestartTrial, ChangeResources)):
                    decision = SchedulerDecision(decision)
            if decision != SchedulerDecision.STOP:
                self._search_alg.on_trial_result(trial.trial_id, result)
        self._keep_result(trial, result)
        if isinstance(decision, RestartTrial):
            self._restart_trial(trial, decision)
            return False
        if isinstance(decision, ChangeResources):
            self._change_resources(trial, decision.resources)
            return False
        if decision == SchedulerDecision.STOP:
            self._stop_trial(trial, result)
            return False
        if decision == SchedulerDecision.PAUSE:
            self._pause_trial(trial)
            return False
        return True

    def _log_result(self, trial: Trial, result: Dict[str, Any]) -> None:
        """Keep a result without deciding on it (the trial is already pausing)."""
        result["config"] = trial.config
        result["experiment_tag"] = trial.experiment_tag
        self._keep_result(trial, result)

    def _keep_result(self, trial: Trial, result: Dict[str, Any]) -> None:
        """Record a result on the trial, pass it to the callbacks, note its checkpoint."""
        trial.update_last_result(result)
        self._callbacks.on_trial_result(iteration=self.iteration, trials=self.trials,
                                        trial=trial, result=result)
        name = result.get("checkpoint_dir_name")
        if name:
            self._record_checkpoint(trial, f"{trial.path}/{name}", result)

    def _check_metrics(self, trial: Trial, result: Dict[str, Any]) -> bool:
        """Whether the result holds every metric the decision makers need.

        A trial's first result must hold them (a typo is caught at once); later
        results may skip one, and then only the loggers see them.
        """
        missing = [m for m in self._strict_metrics if m not in result]
        if not missing:
            return True
        if trial.num_results > 0 and all(m in trial.metric_analysis for m in missing):
            return False
        keys = sorted(k for k in result if k != "config")
        sources = "; ".join(f"{m!r} comes from {self._strict_metrics[m]}" for m in missing)
        self._fatal = TuneError(
            f"Trial {trial.trial_name} reported a result without the metric "
            f"{', '.join(map(repr, missing))} ({sources}). The result had these keys: {keys}. "
            f"Report it with tune.report({{{missing[0]!r}: value, ...}}) in every result, "
            "or fix the name.")
        self._stop_experiment()
        return False

    def _record_checkpoint(self, trial: Trial, path: str, result: Dict[str, Any]) -> None:
        trial.checkpoint = Checkpoint(path, filesystem=self._checkpoint_fs)
        if trial.checkpoint_manager is None:  # made at the first checkpoint
            trial.checkpoint_manager = self._new_manager()
        self._obsolete_checkpoints += trial.checkpoint_manager.register(path, result)
        index = int(path.rstrip("/").rsplit("_", 1)[-1]) if path[-6:].isdigit() else 0
        self._state_dirty = True
        self._checkpoint_counters[trial.trial_id] = {
            "iteration": result.get("training_iteration", 0),
            "time_total": result.get("time_total_s", 0.0),
            "next_index": index + 1}
        self._callbacks.on_trial_save(iteration=self.iteration, trials=self.trials, trial=trial)
        self._callbacks.on_checkpoint(iteration=self.iteration, trials=self.trials, trial=trial,
                                      checkpoint=trial.checkpoint)

    # --- 5. decisions --------------------------------------------------------------------------
    def _stop_trial(self, trial: Trial, result: Optional[Dict[str, Any]]) -> None:
        if trial.trial_id in self._active:
            self._stopping.add(trial.trial_id)
            self._executor.stop_trial(trial.trial_id)
        self._complete(trial)

    def _restart_trial(self, trial: Trial, decision: RestartTrial) -> None:
        """Stop the trial's run and start it again from another checkpoint and config."""
        self._apply_restart(trial, decision)
        self._restarting.add(trial.trial_id)
        self._stopping.add(trial.trial_id)
        self._executor.stop_trial(trial.trial_id)

    def _apply_restart(self, trial: Trial, decision: RestartTrial) -> None:
        """Give the trial the restart's checkpoint (and its counters) and config."""
        checkpoint = decision.checkpoint
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TuneError(f"{self._scheduler.debug_string()} returned {decision!r}: "
                            "RestartTrial(checkpoint=...) must be a tune.Checkpoint or None")
        donor = self._by_id.get(decision.donor_trial_id or "")
        counters: Dict[str, Any] = {}
        if donor is not None and donor.checkpoint is not None:
            # The donor's checkpoint as it is at this moment (the scheduler's snapshot
            # may be a result older), with the counters it was saved at.
            checkpoint = donor.checkpoint
            counters = dict(self._checkpoint_counters.get(donor.trial_id, {}))
        elif checkpoint is not None:
            counters = self._counters_of(checkpoint.path)
        own = self._checkpoint_counters.get(trial.trial_id, {})
        # It counts on from the donor's checkpoint but keeps numbering its own checkpoints.
        counters["next_index"] = own.get("next_index", 0)
        if checkpoint is None:
            counters.update(iteration=0, time_total=0.0)
        self._checkpoint_counters[trial.trial_id] = counters
        trial.checkpoint = checkpoint
        trial.config = dict(decision.config)
        if decision.experiment_tag is not None:
            trial.experiment_tag = decision.experiment_tag
        trial.keep_logs_on_restart = True
        self._state_dirty = True  # params.json is rewritten when the trial starts again

    def _change_resources(self, trial: Trial, resources: Any) -> None:
        """Pause the trial; it resumes from its checkpoint in a placement group of
        ``resources``."""
        pgf = resources if isinstance(resources, PlacementGroupFactory) else \
            PlacementGroupFactory([dict(resources)])
        old = trial.placement_group_factory
        trial.placement_group_factory = pgf
        try:
            self._check_fits(trial)
        except TuneError as exc:
            trial.placement_group_factory = old
            raise TuneError(f"{self._scheduler.debug_string()} asked to change the resources "
                            f"of trial {trial.trial_name}: {exc}") from None
        self._state_dirty = True
        self._pause_trial(trial)

    def _counters_of(self, path: str) -> Dict[str, Any]:
        """The counters a kept checkpoint was saved at (from its trial's manager)."""
        for t in self.trials:
            for cp in (t.checkpoint_manager.checkpoints if t.checkpoint_manager else ()):
                if cp.path == path:
                    return {"iteration": cp.metrics.get("training_iteration", 0),
                            "time_total": cp.metrics.get("time_total_s", 0.0)}
        return {"iteration": 0, "time_total": 0.0}

    def _pause_trial(self, trial: Trial) -> None:
        self._seen_pause = True
        trial.set_status(TrialStatus.PAUSED)
        self._pausing.add(trial.trial_id)
        self._stopping.add(trial.trial_id)
        self._executor.pause_trial(trial.trial_id)

    def _complete(self, trial: Trial) -> None:
        self._state_dirty = True
        self._waiting.pop(trial.trial_id, None)
        trial.set_status(TrialStatus.TERMINATED)
        result = trial.last_result or None
        self._scheduler.on_trial_complete(trial.snapshot(), result)
        self._search_alg.on_trial_complete(trial.trial_id, result)
        self._callbacks.on_trial_complete(iteration=self.iteration, trials=self.trials,
                                          trial=trial)

    def _fail(self, trial: Trial, error: BaseException, traceback_str: str,
              retry: bool = True) -> None:
        trial.num_failures += 1
        self._state_dirty = True
        self._write_error(trial, error, traceback_str)
        if retry and not self._stop_all and (
                self._max_failures < 0 or trial.num_failures <= self._max_failures):
            # Retried from its newest checkpoint (or from scratch) in a new worker.
            trial.set_status(TrialStatus.PENDING)
            self._waiting[trial.trial_id] = trial
            self._callbacks.on_trial_recover(iteration=self.iteration, trials=self.trials,
                                             trial=trial)
            return
        self._waiting.pop(trial.trial_id, None)
        trial.set_status(TrialStatus.ERROR)
        trial.error = error
        self._scheduler.on_trial_error(trial.snapshot())
        self._search_alg.on_trial_complete(trial.trial_id, trial.last_result or None, error=True)
        self._callbacks.on_trial_error(iteration=self.iteration, trials=self.trials, trial=trial)
        if self._fail_fast == "raise":
            self._fatal = error
            self._stop_experiment()
        elif self._fail_fast:
            self._stop_experiment()

    def _write_error(self, trial: Trial, error: BaseException, traceback_str: str) -> None:
        text = traceback_str or str(error)
        trial.error_msg = text
        try:
            os.makedirs(trial.local_path, exist_ok=True)
            path = os.path.join(trial.local_path, "error.txt")
            with open(path, "a") as f:
                f.write(f"Failure # {trial.num_failures} (occurred at "
                        f"{time.strftime('%Y-%m-%d_%H-%M-%S')})\n{text}\n")
            trial.error_file = path
        except OSError:
            pass  # the message is still on the trial and in the console

    # --- 6. the experiment as a whole ----------------------------------------------------------
    def _interrupt(self) -> None:
        self._stop_all = True
        self.interrupted = True
        self._state_dirty = True
        for trial in list(self._active.values()):
            if trial.trial_id not in self._pausing and not trial.is_finished():
                trial.set_status(TrialStatus.PAUSED)
                self._stopping.add(trial.trial_id)
                self._executor.stop_trial(trial.trial_id)

    def _stop_experiment(self) -> None:
        if self._stop_all:
            return
        self._stop_all = True
        for trial in list(self._waiting.values()):
            self._complete(trial)
        for trial in list(self._active.values()):
            if trial.trial_id in self._pausing:
                self._complete(trial)  # its pause finishes; it is not resumed
            elif not trial.is_finished():
                self._stop_trial(trial, None)
