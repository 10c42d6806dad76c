"""Multi-objective asynchronous successive halving (MOASHA, after Syne Tune's).

Schmucker et al., "Multi-objective Asynchronous Successive Halving" (2021,
https://arxiv.org/abs/2106.12639): ASHA whose rungs rank results by several objectives.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tune_core.experiment.trial import TrialSnapshot

from schedulers.async_hyperband import _SuccessiveHalving, _bad, _read_number

__all__ = ["MOASHA"]


def _check_metrics(owner: str, metric: Any) -> Optional[List[str]]:
    if metric is None:
        return None
    names = [metric] if isinstance(metric, str) else metric
    if not isinstance(names, (list, tuple)) or not names or \
            not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise _bad(owner, "metric", metric, "use a list of distinct reported metric names, "
                   'e.g. ["loss", "latency"]')
    return list(names)


def _check_modes(owner: str, mode: Any, metrics: Optional[List[str]]) -> Any:
    """A list of "min"/"max", one per metric (a single string applies to all)."""
    if mode is None:
        return None
    if isinstance(mode, str):
        if mode not in ("min", "max"):
            raise _bad(owner, "mode", mode, 'use "min", "max", or a list of them (one per '
                       "metric)")
        return [mode] * len(metrics) if metrics is not None else mode
    if not isinstance(mode, (list, tuple)) or not all(m in ("min", "max") for m in mode):
        raise _bad(owner, "mode", mode, 'use "min", "max", or a list of them (one per metric)')
    if metrics is not None and len(mode) != len(metrics):
        raise _bad(owner, "mode", mode, f"use one mode per metric: metric={metrics!r} has "
                   f"{len(metrics)} names, mode has {len(mode)}")
    return list(mode)


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b on every objective and better on one (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_order(points: Sequence[Sequence[float]], first_objective: int = 0) -> List[int]:
    """Indices of ``points`` (every objective minimised), best first.

    Points are sorted into Pareto fronts (front 1: the non-dominated points; front 2:
    those non-dominated once front 1 is removed; ...). Within a front the order is an
    epsilon-net (greedy farthest-point) order, as in Syne Tune's default MOASHA
    priority: first the point best on ``first_objective``, then repeatedly the point
    farthest (Euclidean distance in coordinates scaled to [0, 1] per objective over
    all points) from those already taken. It spreads the points that survive a cut
    inside a front along that front. Remaining ties go to the earlier index.

    NaN and +inf count as worse than every finite value of their objective, -inf as
    better. Costs O(m n^2) for n points and m objectives.
    """
    n = len(points)
    if n == 0:
        return []
    m = len(points[0])
    cols = [_finite_column([p[j] for p in points]) for j in range(m)]
    pts = [tuple(cols[j][i] for j in range(m)) for i in range(n)]
    scaled = []
    for col in cols:
        lo, hi = min(col), max(col)
        scaled.append([(v - lo) / (hi - lo) if hi > lo else 0.0 for v in col])
    unit = [tuple(scaled[j][i] for j in range(m)) for i in range(n)]

    # Deb et al.'s fast non-dominated sort: who dominates whom, then peel the fronts.
    dominated_by_count = [0] * n
    dominates: List[List[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates(pts[i], pts[j]):
                dominates[i].append(j)
                dominated_by_count[j] += 1
            elif _dominates(pts[j], pts[i]):
                dominates[j].append(i)
                dominated_by_count[i] += 1
    order: List[int] = []
    front = [i for i in range(n) if dominated_by_count[i] == 0]
    while front:
        order += _epsilon_net(front, unit, first_objective)
        following = []
        for i in front:
            for j in dominates[i]:
                dominated_by_count[j] -= 1
                if dominated_by_count[j] == 0:
                    following.append(j)
        front = sorted(following)
    return order


def _finite_column(values: List[float]) -> List[float]:
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = (hi - lo) or 1.0
    return [v if math.isfinite(v) else (lo - span if v == -math.inf else hi + span)
            for v in values]


def _epsilon_net(front: List[int], unit: List[Tuple[float, ...]], first_objective: int
                 ) -> List[int]:
    start = min(front, key=lambda i: (unit[i][first_objective], i))
    taken = [start]
    rest = [i for i in front if i != start]
    nearest = {i: math.dist(unit[i], unit[start]) for i in rest}
    while rest:
        far = max(rest, key=lambda i: (nearest[i], -i))
        taken.append(far)
        rest.remove(far)
        for i in rest:
            nearest[i] = min(nearest[i], math.dist(unit[i], unit[far]))
    return taken


class MOASHA(_SuccessiveHalving):
    """Multi-objective ASHA (stopping type): rungs rank results by non-dominated sorting.

    Rungs, brackets, ``max_t`` and the stopping rule are those of
    :class:`schedulers.async_hyperband.AsyncHyperBandScheduler` with
    ``type="stopping"``: a trial reaching a rung continues iff fewer than
    n / reduction_factor of the rung's n results (its own included) rank ahead of it.
    What changes is the ranking. Each result is the vector of its metrics (each
    turned into a quantity to minimise by its mode), and a rung's vectors are ordered
    by :func:`nondominated_order`: by Pareto front, and within a front by an
    epsilon-net order (Syne Tune's default, rather than NSGA-II's crowding distance):
    first the point best on the first metric, then always the point farthest from
    those taken, which keeps the survivors of a cut spread along the front. Identical
    vectors rank in the order they reached the rung. With a single metric this is
    plain ASHA, except that a tie goes to the earlier trial. The defaults are Syne
    Tune's (``reduction_factor=3``). ``TuneConfig(metric=..., mode=...)`` may name one
    of the metrics, for ``ResultGrid.get_best_result``.

    The ranking costs O(m n^2) per decision for n results at a rung and m metrics.

    Args:
        time_attr: The result field that measures progress (monotonically increasing).
        metric: The metrics to optimise, e.g. ``["loss", "latency"]`` (a single name
            is a list of one); None takes TuneConfig's metric as the only one.
        mode: ``"min"``/``"max"`` for all metrics, or a list with one per metric;
            None takes TuneConfig's mode when there is one metric.
        max_t: Trials stop when ``time_attr`` reaches this (> 0).
        grace_period: The first rung level (> 0 and <= max_t).
        reduction_factor: eta (> 1): each rung keeps the top 1/eta of its results.
        brackets: How many brackets (>= 1).
        stop_last_trials: Whether trials stop when they reach ``max_t``.
        seed: Seeds the bracket draw (only used with several brackets).

    Example::

        MOASHA(metric=["error", "latency_ms"], mode=["min", "min"], max_t=27,
               reduction_factor=3)
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[Sequence[str]] = None,
        mode: Union[str, Sequence[str], None] = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 3,
        brackets: int = 1,
        stop_last_trials: bool = True,
        seed: Optional[int] = None,
    ) -> None:
        owner = type(self).__name__
        self.metric: Optional[List[str]] = _check_metrics(owner, metric)
        self.mode: Any = _check_modes(owner, mode, self.metric)
        super().__init__(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=brackets,
                         stop_last_trials=stop_last_trials, kind="stopping", seed=seed)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              **spec: Any) -> bool:
        """Take TuneConfig's metric when MOASHA has none; check it agrees otherwise.

        TuneConfig's metric (used by ``get_best_result``) agrees if it is one of
        MOASHA's metrics with the same mode. Its mode fills in MOASHA's only when
        MOASHA has (at most) one metric: one mode cannot speak for several.
        """
        if self.metric is None:
            if metric is not None:
                self.metric = [metric]
                if isinstance(self.mode, str):
                    self.mode = [self.mode]
                elif self.mode is None and mode is not None:
                    self.mode = [mode]
            return True
        if metric is not None and metric not in self.metric:
            return False
        if self.mode is None:
            if mode is not None and len(self.metric) == 1:
                self.mode = [mode]
            return True
        if metric is not None and mode is not None and \
                self.mode[self.metric.index(metric)] != mode:
            return False
        return True

    def on_trial_add(self, trial: TrialSnapshot) -> None:
        if self.metric is not None and len(self.metric) > 1 and self.mode is None:
            example = ["min"] * len(self.metric)
            raise ValueError(
                f"MOASHA(metric={self.metric!r}) has no mode: pass mode=\"min\" or \"max\" "
                f"for all of them, or a list with one per metric (e.g. mode={example!r})")
        super().on_trial_add(trial)  # metric and mode are set (or this raised)
        self.mode = _check_modes(type(self).__name__, self.mode, self.metric)

    def _value(self, trial_id: str, result: Mapping[str, Any],
               first: bool) -> Optional[Tuple[float, ...]]:
        """The metrics as a vector to minimise; None if one is missing (after the first result)."""
        assert self.metric is not None and isinstance(self.mode, list)
        vector = []
        for name, mode in zip(self.metric, self.mode):
            value = _read_number(type(self).__name__, "metric", name, trial_id, result, first)
            if value is None:
                return None
            vector.append(value if mode == "min" else -value)
        return tuple(vector)

    def _ranked(self, rung: Dict[str, Tuple[float, ...]]) -> List[str]:
        ids = list(rung)
        return [ids[i] for i in nondominated_order([rung[t] for t in ids])]

    def _num_ahead(self, rung: Dict[str, Tuple[float, ...]], trial_id: str) -> int:
        return self._ranked(rung).index(trial_id)
