"""``TrialPlateauStopper``: stop a trial whose metric has stopped moving."""

from __future__ import annotations

import collections
import math
from typing import Any, Deque, Dict, Optional, Sequence

from tune_core.stopper.stopper import (
    Stopper, _check_int, _check_metric, _check_mode, _check_number, _is_real)

__all__ = ["TrialPlateauStopper"]


def _pstdev(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's default ``ddof=0``), without numpy."""
    n = len(values)
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)


class TrialPlateauStopper(Stopper):
    """Stops a trial when its metric has plateaued.

    After each result, the stopper looks at the trial's last ``num_results``
    values of ``metric``; when their (population) standard deviation is below
    ``std``, the trial has plateaued and stops. It never stops a trial before
    its ``grace_period``-th result. With ``metric_threshold``, a plateaued trial
    only stops once its newest value is at least as good as the threshold
    (``<=`` for ``mode="min"``, ``>=`` for ``mode="max"``).

    Differences from Ray Tune: a result without ``metric`` (or with a
    non-numeric value) counts towards the grace period but is left out of the
    window instead of blocking decisions for ``num_results`` results; and a
    ``metric_threshold`` of 0 is honoured (Ray Tune silently ignores it).

    Args:
        metric: The metric to watch.
        std: The trial plateaued when the standard deviation of the window is
            below this (a number > 0).
        num_results: How many of the newest values make the window (>= 1).
        grace_period: How many results a trial reports before it may be
            stopped (>= 0).
        metric_threshold: If set, only stop a plateaued trial whose newest
            value is at least this good; needs ``mode``.
        mode: ``"min"`` or ``"max"``; says what "good" means for
            ``metric_threshold``.

    Example::

        TrialPlateauStopper(metric="loss", std=0.001, num_results=5,
                            metric_threshold=0.1, mode="min")
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: Optional[float] = None,
        mode: Optional[str] = None,
    ) -> None:
        owner = "TrialPlateauStopper"
        self._metric = _check_metric(owner, metric)
        self._std = _check_number(owner, "std", std, positive=True)
        self._num_results = _check_int(owner, "num_results", num_results, 1)
        self._grace_period = _check_int(owner, "grace_period", grace_period, 0)
        self._metric_threshold = _check_number(
            owner, "metric_threshold", metric_threshold, allow_none=True)
        self._mode = _check_mode(owner, mode, allow_none=True)
        if self._metric_threshold is not None and self._mode is None:
            raise ValueError(
                f"{owner}: `metric_threshold={metric_threshold!r}` needs `mode` "
                '"min" or "max" to say on which side of the threshold a trial may stop; '
                "got mode=None.")
        self._iter: Dict[str, int] = {}
        self._trial_results: Dict[str, Deque[float]] = {}

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        count = self._iter.get(trial_id, 0) + 1
        self._iter[trial_id] = count

        value = result.get(self._metric)
        if not _is_real(value):
            return False
        window = self._trial_results.get(trial_id)
        if window is None:
            window = collections.deque(maxlen=self._num_results)
            self._trial_results[trial_id] = window
        window.append(value)

        if count < self._grace_period or len(window) < self._num_results:
            return False
        if self._metric_threshold is not None:
            if self._mode == "min" and not value <= self._metric_threshold:
                return False
            if self._mode == "max" and not value >= self._metric_threshold:
                return False
        # NaN anywhere in the window gives a NaN deviation, which is never "below std".
        return _pstdev(window) < self._std

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return (f"TrialPlateauStopper(metric={self._metric!r}, std={self._std}, "
                f"num_results={self._num_results}, grace_period={self._grace_period}, "
                f"metric_threshold={self._metric_threshold}, mode={self._mode!r})")
