"""``ResourceChangingScheduler``: changes the resources of live trials, with Ray Tune's arguments.

It wraps any scheduler and passes every hook on to it. After a result the base
scheduler decides; when it lets the trial continue, the allocation function computes
the trial's new resources, and if they differ the decision is
:class:`~tune_core.schedulers.trial_scheduler.ChangeResources`: the controller pauses
the trial (it saves a checkpoint) and resumes it from that checkpoint in a placement
group of the new shape. Trainables must therefore checkpoint, and may read their
resources with ``tune.get_context().get_trial_resources()``.

The allocation functions need the cluster's total resources. The controller hands them
to the scheduler with :meth:`ResourceChangingScheduler.set_cluster_resources` (see the
engine hook); ``DistributeResources(total_resources=...)`` gives them explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from tune_core.error import TuneError
from tune_core.execution.placement_groups import PlacementGroupFactory, normalize_resources
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision, TrialScheduler)

from schedulers.async_hyperband import _bad, _check_mode, _check_name, _is_real

__all__ = ["ResourceChangingScheduler", "DistributeResources", "DistributeResourcesToTopJob",
           "LiveTrial"]

_EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class LiveTrial:
    """A trial as an allocation function sees it (the attribute names are Ray Tune's)."""

    trial_id: str
    status: TrialStatus
    config: Mapping[str, Any]
    placement_group_factory: PlacementGroupFactory  # its resources now
    base_resources: PlacementGroupFactory            # the resources it was created with
    last_result: Mapping[str, Any]


class _TrialsView:
    """The first argument of an allocation function (Ray Tune passes its controller there).

    ``get_live_trials()`` lists the unfinished trials; ``get_total_resources()`` is the
    cluster's total (None until the controller told the scheduler).
    """

    def __init__(self, trials: List[LiveTrial], total: Optional[Dict[str, float]]) -> None:
        self._trials = trials
        self._total = total

    def get_live_trials(self) -> List[LiveTrial]:
        return list(self._trials)

    def get_trials(self) -> List[LiveTrial]:
        return list(self._trials)

    def get_total_resources(self) -> Optional[Dict[str, float]]:
        return None if self._total is None else dict(self._total)


def _check_resource_dict(owner: str, name: str, value: Any, *, positive: bool) -> Dict[str, float]:
    if value is None:
        return {}
    ok = isinstance(value, Mapping) and all(
        isinstance(k, str) and _is_real(v) and math.isfinite(v) and (v > 0 if positive else v >= 0)
        for k, v in value.items())
    if not ok:
        kind = "> 0" if positive else ">= 0"
        raise _bad(owner, name, value, f"use a dict of resource name to a number {kind}, such "
                   'as {"CPU": 1} or {"CPU": 2, "GPU": 1}, or None')
    aliases = {"cpu": "CPU", "gpu": "GPU"}
    return {aliases.get(k, k): float(v) for k, v in value.items()}


class DistributeResources:
    """Shares the cluster's free CPUs and GPUs equally among the live trials.

    Each trial keeps at least the resources it was created with (its *base*) and grows
    by whole *units*: ``increase_by``, or else the base's last bundle with
    ``add_bundles=True``, or else 1 GPU if its base has GPUs, else 1 CPU. After a
    result of trial ``T`` (from its first ``training_iteration`` on), per resource ``r``
    of the unit (``available`` is the cluster's total minus ``reserve_resources``)::

        spare_units = min_r floor((available_r - sum of the live trials' base_r) / unit_r)
        fair        = ceil(spare_units / number of live trials)   # Ray Tune's round robin
                      (at most increase_by_times, when that is >= 1 and increase_by is set)
        free_units  = min_r floor((available_r - sum of the live trials' current_r) / unit_r)
        units(T)    = max(0, min(fair, current units of T + free_units))

    so a trial grows into free resources up to its fair share, and gives units back when
    the live trials hold more than the cluster has (a new trial came). The new resources
    are the base plus ``units(T)`` units: more bundles with ``add_bundles=True``, else a
    bigger single bundle. ``None`` means no change.

    Example: 8 CPUs, trials A and B of 1 CPU, unit 1 CPU. spare = 8 - 2 = 6, fair = 3;
    A: free = 8 - 2 = 6, units = min(3, 0 + 6) = 3, so A gets 4 CPUs; then B: free =
    8 - 4 - 1 = 3, units = min(3, 0 + 3) = 3, so B gets 4 CPUs too.

    Args:
        add_bundles: Grow by adding bundles (for trainables that start workers in their
            placement group) instead of growing the one bundle.
        increase_by: The unit a trial grows by, e.g. ``{"CPU": 2, "GPU": 1}``.
        increase_by_times: With ``increase_by``, at most this many units per trial
            (< 1: no limit).
        reserve_resources: Resources never handed out, e.g. ``{"CPU": 1}``.
        total_resources: The cluster's total; None takes what the controller reported
            to the scheduler (``set_cluster_resources``).
    """

    def __init__(self, add_bundles: bool = False, increase_by: Optional[Dict[str, float]] = None,
                 increase_by_times: int = -1,
                 reserve_resources: Optional[Dict[str, float]] = None,
                 total_resources: Optional[Dict[str, float]] = None) -> None:
        owner = type(self).__name__
        if not isinstance(add_bundles, bool):
            raise _bad(owner, "add_bundles", add_bundles, "use True or False")
        self.add_bundles = add_bundles
        self.increase_by = _check_resource_dict(owner, "increase_by", increase_by, positive=True)
        if increase_by is not None and not self.increase_by:
            raise _bad(owner, "increase_by", increase_by, 'name at least one resource, such '
                       'as {"CPU": 1}')
        if not isinstance(increase_by_times, int) or isinstance(increase_by_times, bool):
            raise _bad(owner, "increase_by_times", increase_by_times,
                       "use an integer (< 1: no limit)")
        self.increase_by_times = increase_by_times
        self.reserve_resources = _check_resource_dict(owner, "reserve_resources",
                                                      reserve_resources, positive=False)
        self.total_resources = _check_resource_dict(owner, "total_resources", total_resources,
                                                    positive=False) or None

    # --- the allocation ---------------------------------------------------------------------------
    def __call__(self, trials: _TrialsView, trial: LiveTrial, result: Mapping[str, Any],
                 scheduler: "ResourceChangingScheduler") -> Optional[PlacementGroupFactory]:
        """The trial's new resources, or None to keep them (Ray Tune's signature)."""
        base = trial.base_resources
        if not self.add_bundles and len(base.bundles) > 1:
            raise TuneError(f"{type(self).__name__}(add_bundles=False) grows a single bundle, "
                            f"but trial {trial.trial_id} has {len(base.bundles)} ({base!r}); "
                            "pass add_bundles=True")
        if not _is_real(result.get("training_iteration")) or result["training_iteration"] < 1:
            return None
        unit = self._unit(base)
        available = self._available(trials, scheduler)
        live = trials.get_live_trials()
        if not any(t.trial_id == trial.trial_id for t in live):
            live.append(trial)
        keys = [k for k, v in unit.items() if v > 0]
        spare = self._units_in({k: available.get(k, 0.0) - sum(
            t.base_resources.required_resources.get(k, 0.0) for t in live) for k in keys}, unit)
        fair = max(0, math.ceil(spare / len(live)))
        if self.increase_by and self.increase_by_times >= 1:
            fair = min(fair, self.increase_by_times)
        free = self._units_in({k: available.get(k, 0.0) - sum(
            t.placement_group_factory.required_resources.get(k, 0.0) for t in live)
            for k in keys}, unit)
        current = self._current_units(trial, unit)
        units = self._units(trial, live, current, free, fair, scheduler)
        return self._with_units(base, unit, max(0, units))

    def _units(self, trial: LiveTrial, live: Sequence[LiveTrial], current: int, free: int,
               fair: int, scheduler: "ResourceChangingScheduler") -> int:
        """How many units the trial should have (``DistributeResourcesToTopJob`` overrides)."""
        return min(fair, current + free)

    # --- helpers ----------------------------------------------------------------------------------
    def _unit(self, base: PlacementGroupFactory) -> Dict[str, float]:
        if self.increase_by:
            return dict(self.increase_by)
        if self.add_bundles:
            return {k: v for k, v in base.bundles[-1].items() if v > 0} or {"CPU": 1.0}
        if base.bundles[0].get("GPU", 0):
            return {"GPU": 1.0}
        return {"CPU": 1.0}

    def _available(self, trials: _TrialsView,
                   scheduler: "ResourceChangingScheduler") -> Dict[str, float]:
        total = self.total_resources or trials.get_total_resources()
        if total is None:
            raise TuneError(
                f"{type(self).__name__} needs the cluster's total resources: the controller "
                "did not report them (ResourceChangingScheduler.set_cluster_resources); pass "
                f"{type(self).__name__}(total_resources={{\"CPU\": 8, \"GPU\": 1}})")
        return {k: v - self.reserve_resources.get(k, 0.0) for k, v in total.items()}

    @staticmethod
    def _units_in(amounts: Mapping[str, float], unit: Mapping[str, float]) -> int:
        """How many whole units ``amounts`` hold (negative when they are negative)."""
        counts = [math.floor(amounts.get(k, 0.0) / v + _EPS) for k, v in unit.items() if v > 0]
        return min(counts) if counts else 0

    def _current_units(self, trial: LiveTrial, unit: Mapping[str, float]) -> int:
        if self.add_bundles:
            return max(0, len(trial.placement_group_factory.bundles) -
                       len(trial.base_resources.bundles))
        now = trial.placement_group_factory.required_resources
        base = trial.base_resources.required_resources
        return max(0, self._units_in({k: now.get(k, 0.0) - base.get(k, 0.0) for k in unit},
                                     unit))

    def _with_units(self, base: PlacementGroupFactory, unit: Mapping[str, float],
                    units: int) -> PlacementGroupFactory:
        bundles = base.bundles
        if self.add_bundles:
            bundles += [dict(unit) for _ in range(units)]
        else:
            head = bundles[0]
            for k, v in unit.items():
                head[k] = head.get(k, 0.0) + v * units
        return PlacementGroupFactory(bundles, strategy=base.strategy)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(add_bundles={self.add_bundles}, "
                f"increase_by={self.increase_by or None}, "
                f"increase_by_times={self.increase_by_times})")


class DistributeResourcesToTopJob(DistributeResources):
    """Gives all free resources to the best trial (by ``metric`` and ``mode``).

    With the terms of :class:`DistributeResources`: the best live trial (by the metric
    of its newest result; a trial without it ranks last; among the trials below
    ``increase_by_times`` units when that limit is set) gets ``current + free_units``
    units (at most ``increase_by_times``). Other trials keep theirs, except that they
    give units back when the live trials hold more than the cluster has.

    Args:
        add_bundles, increase_by, increase_by_times, reserve_resources, total_resources:
            as in :class:`DistributeResources`.
        metric: The metric that ranks trials; None takes the scheduler's.
        mode: ``"min"`` or ``"max"``; None takes the scheduler's.
    """

    def __init__(self, add_bundles: bool = False, increase_by: Optional[Dict[str, float]] = None,
                 increase_by_times: int = -1,
                 reserve_resources: Optional[Dict[str, float]] = None,
                 metric: Optional[str] = None, mode: Optional[str] = None,
                 total_resources: Optional[Dict[str, float]] = None) -> None:
        super().__init__(add_bundles, increase_by, increase_by_times, reserve_resources,
                         total_resources)
        owner = type(self).__name__
        self.metric = _check_name(owner, "metric", metric, allow_none=True)
        self.mode = _check_mode(owner, mode)

    def _units(self, trial: LiveTrial, live: Sequence[LiveTrial], current: int, free: int,
               fair: int, scheduler: "ResourceChangingScheduler") -> int:
        metric, mode = self.metric or scheduler.metric, self.mode or scheduler.mode
        if not metric or not mode:
            raise TuneError(f"{type(self).__name__} has no metric and mode to rank trials: "
                            "pass them to it, to the base scheduler or to TuneConfig(metric=..., "
                            "mode=...)")
        capped = self.increase_by and self.increase_by_times >= 1

        def score(t: LiveTrial) -> float:
            value = t.last_result.get(metric)
            if not _is_real(value) or math.isnan(value):
                return -math.inf
            return float(value) if mode == "max" else -float(value)

        def below_cap(t: LiveTrial) -> bool:
            return not capped or self._current_units(t, self._unit(t.base_resources)) < \
                self.increase_by_times

        ranked = sorted(live, key=score, reverse=True)
        best = next((t for t in ranked if below_cap(t)), ranked[0])
        if best.trial_id != trial.trial_id:
            return current + min(0, free)  # only gives back what the cluster lacks
        units = current + free
        return min(units, self.increase_by_times) if capped else units


#: The default allocation function (Ray Tune's); it holds no state, so sharing it is safe.
_DEFAULT = DistributeResources()


class ResourceChangingScheduler(TrialScheduler):
    """Wraps a scheduler and changes the resources of live trials as they train.

    Every hook goes to ``base_scheduler``. When it answers a result with CONTINUE,
    ``resources_allocation_function(trials, trial, result, scheduler)`` is called (Ray
    Tune's signature; ``trials`` offers ``get_live_trials()`` and
    ``get_total_resources()`` instead of Ray Tune's controller, ``trial`` is a
    :class:`LiveTrial`); a ``PlacementGroupFactory`` or resource dict that differs from
    the trial's resources becomes a ``ChangeResources`` decision. The trial then pauses,
    saving a checkpoint, and resumes from it in a placement group of the new shape.

    Args:
        base_scheduler: The scheduler that decides continue/pause/stop; FIFO by default.
        resources_allocation_function: The allocation function; None never changes
            resources. By default :class:`DistributeResources`.

    Example::

        scheduler = ResourceChangingScheduler(
            base_scheduler=ASHAScheduler(metric="loss", mode="min", max_t=100),
            resources_allocation_function=DistributeResources(add_bundles=False))
    """

    #: Changing resources pauses trials (they resume from a checkpoint).
    pauses_trials = True

    def __init__(self, base_scheduler: Optional[TrialScheduler] = None,
                 resources_allocation_function: Optional[Callable[..., Any]] = _DEFAULT,
                 ) -> None:
        owner = type(self).__name__
        if base_scheduler is not None and not isinstance(base_scheduler, TrialScheduler):
            raise _bad(owner, "base_scheduler", base_scheduler,
                       "use a TrialScheduler such as schedulers.ASHAScheduler, or None (FIFO)")
        if resources_allocation_function is not None and not callable(
                resources_allocation_function):
            raise _bad(owner, "resources_allocation_function", resources_allocation_function,
                       "use a function (trials, trial, result, scheduler) -> resources or "
                       "None, such as DistributeResources(), or None")
        self._base = base_scheduler or FIFOScheduler()
        self._allocate = resources_allocation_function
        self._cluster_resources: Optional[Dict[str, float]] = None
        # trial_id -> what the allocation function sees of it (live trials only)
        self._live: Dict[str, LiveTrial] = {}
        self._base_resources: Dict[str, PlacementGroupFactory] = {}
        self.num_changes = 0

    # --- metric and mode are the base scheduler's -------------------------------------------------
    @property
    def metric(self) -> Optional[str]:  # type: ignore[override]
        return self._base.metric

    @property
    def mode(self) -> Optional[str]:  # type: ignore[override]
        return self._base.mode

    @property
    def requires_metric(self) -> bool:  # type: ignore[override]
        """Whether the base scheduler or the allocation function ranks trials by the metric."""
        if getattr(self._base, "requires_metric", not isinstance(self._base, FIFOScheduler)):
            return True
        return isinstance(self._allocate, DistributeResourcesToTopJob) and not (
            self._allocate.metric and self._allocate.mode)

    @property
    def base_scheduler(self) -> TrialScheduler:
        return self._base

    @property
    def base_trial_resources(self) -> Optional[PlacementGroupFactory]:
        """The resources of the first trial (Ray Tune's single base)."""
        return next(iter(self._base_resources.values()), None)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              **spec: Any) -> bool:
        return self._base.set_search_properties(metric, mode, **spec)

    # --- engine hooks (passed on) -----------------------------------------------------------------
    def set_cluster_resources(self, total: Mapping[str, float]) -> None:
        """The cluster's total resources (called by the controller as the experiment starts)."""
        self._cluster_resources = {k: float(v) for k, v in total.items()}
        hook = getattr(self._base, "set_cluster_resources", None)
        if hook is not None:
            hook(total)

    def set_experiment_path(self, path: Optional[str]) -> None:
        hook = getattr(self._base, "set_experiment_path", None)
        if hook is not None:
            hook(path)

    def complete_config(self, config: Dict[str, Any]) -> Dict[str, Any]:
        hook = getattr(self._base, "complete_config", None)
        return hook(config) if hook is not None else config

    def on_trial_resume(self, trial: TrialSnapshot) -> Optional[RestartTrial]:
        hook = getattr(self._base, "on_trial_resume", None)
        return hook(trial) if hook is not None else None

    # --- hooks ------------------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialSnapshot) -> None:
        if self.requires_metric and not (self.metric and self.mode):
            owner = type(self).__name__
            raise ValueError(
                f"{owner}({type(self._base).__name__}) has no metric and mode: pass metric=..., "
                f"mode=... to the base scheduler or set TuneConfig(metric=..., mode=...)")
        self._base_resources.setdefault(trial.trial_id, trial.resources)
        self._note(trial, None)
        self._base.on_trial_add(trial)

    def on_trial_result(self, trial: TrialSnapshot, result: Dict[str, Any]) -> Any:
        decision = self._base.on_trial_result(trial, result)
        live = self._note(trial, result)
        if decision != SchedulerDecision.CONTINUE or self._allocate is None:
            return decision
        view = _TrialsView(list(self._live.values()), self._cluster_resources)
        wanted = self._allocate(view, live, dict(result), self)
        if wanted is None:
            return decision
        try:
            pgf = normalize_resources(wanted)
        except ValueError as exc:
            raise TuneError(f"{type(self).__name__}: the resources_allocation_function returned "
                            f"{wanted!r}: {exc}") from None
        if pgf == live.placement_group_factory:
            return decision
        self._live[trial.trial_id] = dataclasses.replace(live, placement_group_factory=pgf)
        self.num_changes += 1
        return ChangeResources(pgf)

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        self._live.pop(trial.trial_id, None)
        self._base.on_trial_complete(trial, result)

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        self._live.pop(trial.trial_id, None)
        self._base.on_trial_error(trial)

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        self._live.pop(trial.trial_id, None)
        self._base.on_trial_remove(trial)

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        for c in candidates:
            self._note(c, None)
        return self._base.choose_trial_to_run(candidates)

    def debug_string(self) -> str:
        return (f"ResourceChangingScheduler ({self.num_changes} resource changes): "
                f"{self._base.debug_string()}")

    # --- helpers ----------------------------------------------------------------------------------
    def _note(self, trial: TrialSnapshot, result: Optional[Mapping[str, Any]]) -> LiveTrial:
        """Keep what the allocation function sees of the trial up to date."""
        known = self._live.get(trial.trial_id)
        if result is not None:
            last = {k: v for k, v in result.items() if k != "config"}
        else:
            last = dict(known.last_result) if known is not None else \
                {k: v for k, v in trial.last_result.items() if k != "config"}
        live = LiveTrial(trial_id=trial.trial_id, status=trial.status,
                         config=dict(trial.config),  # a plain dict: the scheduler pickles
                         placement_group_factory=trial.resources,
                         base_resources=self._base_resources.setdefault(trial.trial_id,
                                                                        trial.resources),
                         last_result=last)
        self._live[trial.trial_id] = live
        return live
