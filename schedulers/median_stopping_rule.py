"""The median stopping rule (Golovin et al., "Google Vizier", KDD 2017), Ray Tune's arguments."""

from __future__ import annotations

import math
import statistics
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import SchedulerDecision, TrialScheduler

from schedulers.async_hyperband import (
    _check_bool, _check_mode, _check_name, _check_number, _read_number,
    _require_search_properties)

__all__ = ["MedianStoppingRule"]

# What the scheduler believes a trial is doing (it sees no live trials).
_WAITING = "waiting"      # PENDING, or PAUSED by something else: may be started
_STARTING = "starting"    # chosen to run, no result yet
_RUNNING = "running"
_YIELDED = "yielded"      # paused to give its resources to a waiting trial
_STOPPED = "stopped"      # paused instead of stopped (hard_stop=False)
_DONE = "done"


class MedianStoppingRule(TrialScheduler):
    """Stops a trial whose best result is worse than the median of the others' running means.

    After each result at time ``t`` (the trial's ``time_attr``, once ``t`` is at least
    ``grace_period``), the rule looks at the *other* trials that have reported up to
    ``t`` or later (running, paused or finished ones alike). For each it takes the
    running mean of its metric over its results with ``grace_period <= time <= t``;
    the trial stops if its best metric value so far (over all its results) is
    strictly worse than the median of those means. The median needs
    ``min_samples_required`` such trials; until there are that many, the trial
    continues, or *yields*: if other trials are waiting to run and the trial ran at
    least ``min_time_slice`` (in ``time_attr`` units) since it last yielded, it is
    PAUSED so that a waiting trial gets its resources. Yielded trials are resumed
    from their checkpoint after the PENDING ones, in creation order.

    With ``hard_stop=False`` a trial below the median is PAUSED instead of stopped.
    Such trials are resumed only when no PENDING or yielded trial is waiting, and
    then run to their end without being judged again (as in Ray Tune).

    Differences from Ray Tune: a trial is first judged at ``t == grace_period`` (the
    docs' "at least this old"); another trial counts as a sample only if it has a
    result within ``[grace_period, t]`` (Ray Tune would average an empty window into
    NaN); a trial never yields to trials that were paused by ``hard_stop=False``;
    NaN metric values are ignored.

    Pausing needs checkpoints: a function trainable should report them with
    ``tune.report(metrics, checkpoint=...)`` and resume from ``tune.get_checkpoint()``.

    Args:
        time_attr: The result field that measures progress; any monotonically
            increasing field (``time_total_s``, ``training_iteration``, ...).
        metric: The metric to optimise; None takes TuneConfig's.
        mode: ``"min"`` or ``"max"``; None takes TuneConfig's.
        grace_period: No trial is judged before this time (>= 0); the running means
            start here.
        min_samples_required: How many other trials the median needs (>= 1).
        min_time_slice: A trial runs at least this long between two yields (>= 0).
        hard_stop: False pauses trials below the median instead of stopping them.

    Example::

        MedianStoppingRule(time_attr="training_iteration", metric="loss", mode="min",
                           grace_period=5, min_samples_required=3)
    """

    #: It may pause trials (yielding, and hard_stop=False): results come in lock-step.
    pauses_trials = True

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ) -> None:
        owner = type(self).__name__
        self._time_attr = _check_name(owner, "time_attr", time_attr)
        self.metric = _check_name(owner, "metric", metric, allow_none=True)
        self.mode = _check_mode(owner, mode)
        self._grace_period = float(_check_number(owner, "grace_period", grace_period,
                                                 strict=False))
        self._min_samples = int(_check_number(owner, "min_samples_required",
                                              min_samples_required, minimum=1, strict=False,
                                              integer=True))
        self._min_time_slice = float(_check_number(owner, "min_time_slice", min_time_slice,
                                                   strict=False))
        self._hard_stop = _check_bool(owner, "hard_stop", hard_stop)
        # trial_id -> [(time, score)], score = the metric with larger meaning better
        self._results: Dict[str, List[Tuple[float, float]]] = {}
        self._horizon: Dict[str, float] = {}   # the latest time each trial reported
        self._state: Dict[str, str] = {}
        self._last_pause: Dict[str, float] = {}
        self._soft_stopped: Set[str] = set()
        self._seen: Set[str] = set()
        self.num_stopped = 0
        self.num_yields = 0

    # --- hooks ---------------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialSnapshot) -> None:
        _require_search_properties(self)
        self._state.setdefault(trial.trial_id, _WAITING)

    def on_trial_result(self, trial: TrialSnapshot, result: Dict[str, Any]) -> SchedulerDecision:
        trial_id = trial.trial_id
        point = self._read(trial_id, result, first=trial_id not in self._seen)
        if point is None:
            return SchedulerDecision.CONTINUE
        self._seen.add(trial_id)
        self._state[trial_id] = _RUNNING
        if trial_id in self._soft_stopped:
            return SchedulerDecision.CONTINUE  # resumed after a soft stop: runs to its end
        time, score = point
        if math.isnan(score):
            return SchedulerDecision.CONTINUE
        self._add(trial_id, time, score)
        if time < self._grace_period:
            return SchedulerDecision.CONTINUE
        means = self._running_means(trial_id, time)
        if len(means) < self._min_samples:
            return self._maybe_yield(trial_id, time)
        median = statistics.median(means)
        best = max(s for _, s in self._results[trial_id])
        if best >= median:
            return SchedulerDecision.CONTINUE
        self.num_stopped += 1
        if self._hard_stop:
            return SchedulerDecision.STOP
        self._soft_stopped.add(trial_id)
        self._state[trial_id] = _STOPPED
        return SchedulerDecision.PAUSE

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        trial_id = trial.trial_id
        point = self._read(trial_id, result, first=False) if result else None
        if point is not None and not math.isnan(point[1]) and \
                point[0] > self._horizon.get(trial_id, -math.inf):
            self._add(trial_id, *point)
        self._state[trial_id] = _DONE

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        self._state[trial.trial_id] = _DONE

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        self._state[trial.trial_id] = _DONE

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        """PENDING trials first, then yielded ones, then soft-stopped ones; creation order.

        The candidates also tell which trials wait (for yielding): those offered now;
        a trial that was waiting and is no longer offered has been started. (A trial
        chosen here may not start at once, when resources are short: it still waits.)
        """
        offered = {c.trial_id for c in candidates}
        for tid, state in self._state.items():
            if state in (_WAITING, _YIELDED, _STOPPED) and tid not in offered:
                self._state[tid] = _STARTING
        for c in candidates:
            if self._state.get(c.trial_id) not in (_YIELDED, _STOPPED):
                self._state[c.trial_id] = _WAITING
        for wanted in (
                lambda c: c.status == TrialStatus.PENDING,
                lambda c: c.status == TrialStatus.PAUSED and c.trial_id not in self._soft_stopped,
                lambda c: c.status == TrialStatus.PAUSED):
            for c in candidates:
                if wanted(c):
                    return c.trial_id
        return None

    def debug_string(self) -> str:
        return (f"MedianStoppingRule: {self.num_stopped} below the median "
                f"({'stopped' if self._hard_stop else 'paused'}), {self.num_yields} yields")

    # --- helpers -------------------------------------------------------------------------------
    def _read(self, trial_id: str, result: Dict[str, Any],
              first: bool) -> Optional[Tuple[float, float]]:
        owner = type(self).__name__
        assert self.metric is not None
        time = _read_number(owner, "time_attr", self._time_attr, trial_id, result, first)
        value = _read_number(owner, "metric", self.metric, trial_id, result, first)
        if time is None or value is None:
            return None
        return time, (value if self.mode == "max" else -value)

    def _add(self, trial_id: str, time: float, score: float) -> None:
        self._results.setdefault(trial_id, []).append((time, score))
        self._horizon[trial_id] = max(time, self._horizon.get(trial_id, -math.inf))

    def _running_means(self, trial_id: str, time: float) -> List[float]:
        """The other trials' mean scores over [grace_period, time], for those that got that far."""
        means = []
        for other, points in self._results.items():
            if other == trial_id or self._horizon[other] < time:
                continue
            window = [s for t, s in points if self._grace_period <= t <= time]
            if window:
                means.append(math.fsum(window) / len(window))
        return means

    def _maybe_yield(self, trial_id: str, time: float) -> SchedulerDecision:
        """Too few samples for a median: give the resources to a waiting trial, if any."""
        if time - self._last_pause.get(trial_id, -math.inf) <= self._min_time_slice:
            return SchedulerDecision.CONTINUE
        if not any(state in (_WAITING, _YIELDED) for other, state in self._state.items()
                   if other != trial_id):
            return SchedulerDecision.CONTINUE
        self._last_pause[trial_id] = time
        self._state[trial_id] = _YIELDED
        self.num_yields += 1
        return SchedulerDecision.PAUSE
