"""``TimeoutStopper``: end the experiment after a time budget."""

from __future__ import annotations

import datetime
import logging
import math
import time
from typing import Any, Callable, Dict, Optional, Union

from tune_core.stopper.stopper import Stopper, _is_real

__all__ = ["TimeoutStopper"]

logger = logging.getLogger(__name__)


class TimeoutStopper(Stopper):
    """Stops the whole experiment once a time budget is used up.

    The budget starts at the first call (``__call__`` or ``stop_all``). Only the
    time the experiment actually runs counts: when the stopper is pickled with
    the experiment state, the elapsed time is saved, and a restored experiment
    continues with the remaining budget (as in Ray Tune). The stopper keeps a
    start timestamp, never a thread, so it pickles cheaply.

    Args:
        timeout: The budget, as seconds (a number >= 0) or a
            ``datetime.timedelta``.

    Example::

        tune.RunConfig(stop=TimeoutStopper(datetime.timedelta(minutes=30)))
    """

    def __init__(self, timeout: Union[int, float, datetime.timedelta]) -> None:
        if isinstance(timeout, datetime.timedelta):
            seconds = timeout.total_seconds()
        elif _is_real(timeout):
            seconds = float(timeout)
        else:
            raise ValueError(
                "TimeoutStopper: `timeout` must be a number of seconds or a "
                f"datetime.timedelta; got {timeout!r} ({type(timeout).__name__}).")
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(
                f"TimeoutStopper: `timeout` must be >= 0 seconds; got {timeout!r}.")
        self._timeout_seconds = seconds
        self._clock: Callable[[], float] = time.monotonic
        self._started_at: Optional[float] = None  # on self._clock's scale
        self._elapsed_before = 0.0  # seconds used before the last restore
        self._reported = False

    def _elapsed(self) -> float:
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        return self._elapsed_before + (now - self._started_at)

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        self._elapsed()  # starts the clock if this is the first call
        return False

    def stop_all(self) -> bool:
        if self._elapsed() < self._timeout_seconds:
            return False
        if not self._reported:
            self._reported = True
            logger.info("Reached the time budget of %s seconds; stopping all trials.",
                        self._timeout_seconds)
        return True

    def __getstate__(self) -> Dict[str, Any]:
        # A monotonic timestamp means nothing in another process: save elapsed time instead.
        state = self.__dict__.copy()
        if self._started_at is not None:
            state["_elapsed_before"] = self._elapsed()
            state["_started_at"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"TimeoutStopper(timeout={self._timeout_seconds})"
