"""``ExperimentPlateauStopper``: end the experiment when the best results stop changing."""

from __future__ import annotations

import bisect
from typing import Any, Dict, List

from tune_core.stopper.stopper import (
    Stopper, _check_int, _check_metric, _check_mode, _check_number, _is_real)
from tune_core.stopper.trial_plateau import _pstdev

__all__ = ["ExperimentPlateauStopper"]


class ExperimentPlateauStopper(Stopper):
    """Stops the whole experiment when the best ``metric`` values have plateaued.

    The stopper keeps the ``top`` best values of ``metric`` seen so far, over
    all results of all trials (as in Ray Tune: one trial may contribute several
    of them). Once it holds ``top`` values whose (population) standard
    deviation is ``<= std``, the experiment has plateaued; it stops when the
    plateau has lasted for more than ``patience`` consecutive results (with the
    default ``patience=0``, at the first plateaued result).

    Differences from Ray Tune: Ray Tune's docstring promises "more than
    ``patience``" but its code stops at ``patience`` plateaued results, so there
    ``patience=1`` behaves like ``patience=0``; here ``patience=1`` waits one
    more result. A result without ``metric`` (or with a non-numeric value) is
    ignored instead of raising ``KeyError``, and an integer ``std`` is accepted.

    Args:
        metric: The metric to watch.
        std: The plateau threshold on the standard deviation of the top values
            (a number > 0).
        top: How many best values to consider (an integer >= 2).
        mode: ``"min"`` or ``"max"``: which values are best.
        patience: How many further plateaued results to wait for before the
            experiment stops (an integer >= 0; 0 stops as soon as it plateaus).

    Example::

        ExperimentPlateauStopper(metric="loss", std=0.001, top=5, patience=3)
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.001,
        top: int = 10,
        mode: str = "min",
        patience: int = 0,
    ) -> None:
        owner = "ExperimentPlateauStopper"
        self._metric = _check_metric(owner, metric)
        self._std = _check_number(owner, "std", std, positive=True)
        self._top = _check_int(owner, "top", top, 2)
        self._mode = _check_mode(owner, mode)
        self._patience = _check_int(owner, "patience", patience, 0)
        self._iterations = 0
        self._top_values: List[float] = []  # sorted ascending, best first for "min"

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        value = result.get(self._metric)
        if _is_real(value):
            # Keep values in ascending order; for "max" the best are at the end.
            bisect.insort(self._top_values, value)
            if len(self._top_values) > self._top:
                if self._mode == "min":
                    self._top_values.pop()
                else:
                    self._top_values.pop(0)
            if self.has_plateaued():
                self._iterations += 1
            else:
                self._iterations = 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """Whether the ``top`` best values are within ``std`` of each other."""
        return (len(self._top_values) == self._top
                and _pstdev(self._top_values) <= self._std)

    def stop_all(self) -> bool:
        return self.has_plateaued() and self._iterations > self._patience

    def __repr__(self) -> str:
        return (f"ExperimentPlateauStopper(metric={self._metric!r}, std={self._std}, "
                f"top={self._top}, mode={self._mode!r}, patience={self._patience})")
