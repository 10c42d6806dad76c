"""The trial scheduler interface and the default first-in-first-out scheduler."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, Optional, Sequence

from tune_core.experiment.trial import TrialSnapshot, TrialStatus

__all__ = ["TrialScheduler", "FIFOScheduler", "SchedulerDecision", "RestartTrial",
           "ChangeResources"]


class SchedulerDecision(str, enum.Enum):
    """What a scheduler wants done with a trial after a result."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class RestartTrial:
    """A decision: restart the trial from ``checkpoint`` with ``config`` (PBT's exploit).

    The trial's current run is stopped without saving; it starts again from
    ``checkpoint`` (another trial's, typically; the controller keeps that checkpoint
    from being deleted while this trial may still need it), counting on from the
    iteration that checkpoint was saved at. Its earlier results stay in its logs.

    Args:
        checkpoint: the ``Checkpoint`` to start from (``TrialSnapshot.checkpoint`` of
            the donor at the moment of the decision).
        config: the new config.
        donor_trial_id: the trial the checkpoint belongs to (for its counters).
        experiment_tag: a new tag for the trial (None keeps the old one).
    """

    checkpoint: Any
    config: Dict[str, Any]
    donor_trial_id: Optional[str] = None
    experiment_tag: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ChangeResources:
    """A decision: give the trial new resources (``ResourceChangingScheduler``).

    The trial pauses (saving a checkpoint), and resumes from it in a new placement
    group of ``resources`` (a ``PlacementGroupFactory`` or a resource dict) when
    ``choose_trial_to_run`` picks it again.
    """

    resources: Any


class TrialScheduler:
    """Decides, result by result, whether trials continue, pause or stop.

    A scheduler sees immutable :class:`TrialSnapshot` objects and returns
    decisions; it never calls into the controller or Ray.

    Order of calls::

        set_search_properties(metric, mode)      once, before any trial
        on_trial_add(trial)                      a trial was created (PENDING)
        trials_to_stop()                         waiting trials it will never run again
        choose_trial_to_run(candidates)          which PENDING/PAUSED trial starts next
        on_trial_result(trial, result)           -> CONTINUE | PAUSE | STOP | NOOP
                                                 | RestartTrial(checkpoint, config)
                                                 | ChangeResources(resources)
        on_trial_complete(trial, result)         the trial ended: by itself, ``done``, a
                                                 stopper, or any scheduler decision
        on_trial_error(trial)                    the trial failed for good

    ``on_trial_remove(trial)`` is Ray Tune's hook for trials stopped by someone else; the
    controller never calls it (those endings come to ``on_trial_complete``), so a
    scheduler needs it only to forward calls of a wrapper that does.

    Optional hooks (no-ops by default)::

        set_experiment_path(path)                before the first step (also after a
                                                 restore): the driver's experiment dir
        set_cluster_resources(total)             before the first step: the cluster's total
        complete_config(config) -> config        a new trial's config, before on_trial_add
        on_trial_resume(trial) -> RestartTrial | None
                                                 a PAUSED trial is about to start again
    """

    CONTINUE = SchedulerDecision.CONTINUE
    PAUSE = SchedulerDecision.PAUSE
    STOP = SchedulerDecision.STOP
    NOOP = SchedulerDecision.NOOP

    metric: Optional[str] = None
    mode: Optional[str] = None
    #: True when the scheduler pauses trials (it then needs checkpoints to resume them).
    pauses_trials: bool = False
    #: False when it decides nothing from the metric (then TuneConfig needs none).
    requires_metric: bool = True

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              **spec: Any) -> bool:
        """Take metric/mode from the TuneConfig unless the scheduler has its own.

        Returns False if the scheduler already has a different metric or mode.
        """
        if self.metric and metric and self.metric != metric:
            return False
        if self.mode and mode and self.mode != mode:
            return False
        if metric and not self.metric:
            self.metric = metric
        if mode and not self.mode:
            self.mode = mode
        return True

    def set_experiment_path(self, path: str) -> None:
        """Where the scheduler may write logs of its own (the driver's experiment dir)."""

    def set_cluster_resources(self, total: Dict[str, float]) -> None:
        """The cluster's total resources (resource name to amount)."""

    def complete_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """The config a new trial starts with (PBT samples the keys it mutates that the
        search space lacks)."""
        return config

    def on_trial_resume(self, trial: TrialSnapshot) -> Optional[RestartTrial]:
        """A restart to apply before a PAUSED trial starts again (its run is gone, so
        nothing is stopped), or None."""
        return None

    def on_trial_add(self, trial: TrialSnapshot) -> None:
        pass

    def on_trial_result(self, trial: TrialSnapshot,
                        result: Dict[str, Any]) -> "SchedulerDecision | RestartTrial | ChangeResources":
        return SchedulerDecision.CONTINUE

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        pass

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        pass

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        pass

    def trials_to_stop(self) -> Sequence[str]:
        """Ids of waiting (PAUSED or PENDING) trials this scheduler will never run again.

        The controller completes them (TERMINATED, then ``on_trial_complete``) before
        it asks ``choose_trial_to_run``. Return an id until its ``on_trial_complete``
        arrives; ids of running or unknown trials are ignored.
        """
        return ()

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        """Return the id of the candidate to start next, or None to start nothing.

        ``candidates`` are PENDING and PAUSED trials in creation order.
        """
        raise NotImplementedError

    def debug_string(self) -> str:
        return type(self).__name__

    def get_state(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)


class FIFOScheduler(TrialScheduler):
    """Runs trials in creation order: PENDING trials first, then PAUSED ones."""

    requires_metric = False

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None) -> None:
        self.metric = metric
        self.mode = mode

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        for trial in candidates:
            if trial.status == TrialStatus.PENDING:
                return trial.trial_id
        for trial in candidates:
            if trial.status == TrialStatus.PAUSED:
                return trial.trial_id
        return None
