"""The stopper interface, and ``CombinedStopper`` which ORs several stoppers."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Tuple

__all__ = ["Stopper", "CombinedStopper"]


class Stopper:
    """Decides when a trial, or the whole experiment, should stop.

    ``__call__(trial_id, result)`` is asked after every result and returns True
    to stop that trial; ``stop_all()`` is asked once per controller step and
    returns True to end the experiment (running trials are stopped, pending
    ones never start).

    Subclasses implement both methods. A stopper is part of the experiment state
    and must be picklable (keep plain data, not threads, locks or lambdas).

    Example::

        class StopAfterLoss(Stopper):
            def __call__(self, trial_id, result):
                return result.get("loss", float("inf")) < 0.01

            def stop_all(self):
                return False
    """

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        """Returns True if the trial should stop, given its newest result.

        Args:
            trial_id: The id of the trial that reported ``result``.
            result: The result dictionary (with the automatic fields filled in).

        Returns:
            True to stop this trial.
        """
        raise NotImplementedError

    def stop_all(self) -> bool:
        """Returns True if the whole experiment should stop."""
        raise NotImplementedError


class CombinedStopper(Stopper):
    """Combines several stoppers with OR.

    A trial stops when any stopper says so; the experiment stops when any
    stopper's ``stop_all`` says so.

    Unlike Ray Tune, every stopper sees every result (there is no short-circuit),
    so a stateful stopper listed after another one (say an
    ``ExperimentPlateauStopper`` after a ``MaximumIterationStopper``) does not
    miss the last result of a trial the first one stopped.

    Args:
        *stoppers: The stoppers to combine (``Stopper`` instances).

    Example::

        stopper = CombinedStopper(
            MaximumIterationStopper(max_iter=10),
            TrialPlateauStopper(metric="loss"),
        )
    """

    def __init__(self, *stoppers: Stopper) -> None:
        for index, stopper in enumerate(stoppers):
            if not isinstance(stopper, Stopper):
                raise ValueError(
                    f"CombinedStopper: argument {index} is {stopper!r} "
                    f"({type(stopper).__name__}); every argument must be a "
                    "tune_core.stopper.Stopper instance.")
        self._stoppers: Tuple[Stopper, ...] = tuple(stoppers)

    @property
    def stoppers(self) -> Tuple[Stopper, ...]:
        """The combined stoppers, in order."""
        return self._stoppers

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        decisions = [stopper(trial_id, result) for stopper in self._stoppers]
        return any(decisions)

    def stop_all(self) -> bool:
        decisions = [stopper.stop_all() for stopper in self._stoppers]
        return any(decisions)

    def __repr__(self) -> str:
        return f"CombinedStopper({', '.join(repr(s) for s in self._stoppers)})"


# --- argument checks shared by the stoppers (private) -------------------------------------------

def _is_real(value: Any) -> bool:
    """A real number that is not a bool (bools are ints, but never meant as numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{owner}: `{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _check_number(owner: str, name: str, value: Any, *, positive: bool = False,
                  allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    accepted = "a number > 0" if positive else "a number"
    if allow_none:
        accepted += " or None"
    if not _is_real(value) or math.isnan(value) or (positive and not value > 0):
        raise ValueError(f"{owner}: `{name}` must be {accepted}; got {value!r}.")
    return float(value)


def _check_metric(owner: str, metric: Any) -> str:
    if not isinstance(metric, str) or not metric:
        raise ValueError(
            f"{owner}: `metric` must be a non-empty string naming a reported metric; "
            f"got {metric!r}.")
    return metric


def _check_mode(owner: str, mode: Any, allow_none: bool = False) -> Optional[str]:
    if mode is None and allow_none:
        return None
    if mode not in ("min", "max"):
        accepted = '"min" or "max"' + (" (or None)" if allow_none else "")
        raise ValueError(f"{owner}: `mode` must be {accepted}; got {mode!r}.")
    return mode
