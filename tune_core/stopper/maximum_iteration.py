"""``MaximumIterationStopper``: stop each trial after a number of results."""

from __future__ import annotations

from typing import Any, Dict

from tune_core.stopper.stopper import Stopper, _check_int

__all__ = ["MaximumIterationStopper"]


class MaximumIterationStopper(Stopper):
    """Stops a trial once it has reported ``max_iter`` results.

    As in Ray Tune, the stopper counts the results it has seen for each trial
    (not the reported ``training_iteration``); the counts are part of its
    pickled state, so they survive an experiment restore.

    Args:
        max_iter: Number of results after which a trial stops (an integer >= 1).

    Example::

        tune.RunConfig(stop=MaximumIterationStopper(max_iter=10))
    """

    def __init__(self, max_iter: int) -> None:
        self._max_iter = _check_int("MaximumIterationStopper", "max_iter", max_iter, 1)
        self._iter: Dict[str, int] = {}

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        count = self._iter.get(trial_id, 0) + 1
        self._iter[trial_id] = count
        return count >= self._max_iter

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"MaximumIterationStopper(max_iter={self._max_iter})"
