"""``FunctionStopper``: a plain function decides when a trial stops."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from tune_core.stopper.stopper import Stopper

__all__ = ["FunctionStopper"]


class FunctionStopper(Stopper):
    """Stops a trial when ``function(trial_id, result)`` returns True.

    Args:
        function: A callable taking the trial id (str) and the result dict and
            returning a bool. It never stops the whole experiment; write a
            ``Stopper`` subclass for that.

    Example::

        def stop_fn(trial_id, result):
            return result["mean_accuracy"] > 0.95

        tune.RunConfig(stop=FunctionStopper(stop_fn))
    """

    def __init__(self, function: Callable[[str, Dict[str, Any]], bool]) -> None:
        if isinstance(function, Stopper):
            raise ValueError(
                f"FunctionStopper: `function` is the stopper {function!r}; pass a Stopper "
                "directly (e.g. RunConfig(stop=stopper)), not wrapped in FunctionStopper.")
        if not callable(function) or isinstance(function, type):
            raise ValueError(
                f"FunctionStopper: `function` must be a callable "
                f"(trial_id: str, result: dict) -> bool; got {function!r} "
                f"({type(function).__name__}).")
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # some builtins have no signature: trust them
            signature = None
        if signature is not None:
            try:
                signature.bind("trial_id", {})
            except TypeError:
                raise ValueError(
                    f"FunctionStopper: `function` {function!r} must accept two positional "
                    f"arguments (trial_id, result); its signature is {signature}.") from None
        self._fn = function

    @classmethod
    def is_valid_function(cls, fn: Any) -> bool:
        """Whether ``fn`` is a plain callable to wrap (not a ``Stopper``).

        Raises:
            ValueError: ``fn`` looks like a stopper (has ``stop_all``) but does
                not subclass ``Stopper``, so its ``stop_all`` would be ignored.
        """
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise ValueError(
                f"The stop object {fn!r} has a `stop_all` method but is not a "
                "tune_core.stopper.Stopper subclass; subclass Stopper so that "
                "`stop_all` is honoured.")
        return is_function

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        return bool(self._fn(trial_id, result))

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"FunctionStopper({self._fn!r})"
