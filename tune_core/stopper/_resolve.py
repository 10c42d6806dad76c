"""Turn what ``RunConfig(stop=...)`` accepts into one ``Stopper``."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tune_core.stopper.function_stopper import FunctionStopper
from tune_core.stopper.stopper import CombinedStopper, Stopper

__all__ = ["DictStopper", "resolve_stopper"]

_ACCEPTED = ("None, a dict of metric thresholds (e.g. {'training_iteration': 10}), "
             "a function (trial_id, result) -> bool, a tune_core.stopper.Stopper, "
             "or a list of Stoppers")
_MISSING = object()


class DictStopper(Stopper):
    """Stops a trial once any result value reaches its threshold (``value >= threshold``).

    This is what a dict passed as ``RunConfig(stop={...})`` becomes (Ray Tune's
    semantics). Keys name metrics; a nested key is written with ``/``
    (``"eval/loss"`` reads ``result["eval"]["loss"]`` or a flat
    ``result["eval/loss"]``), and nested dict thresholds are flattened the same
    way. A key missing from a result, or a value that cannot be compared with a
    number, never stops the trial and never raises: checking that the metrics
    are reported is the controller's job, with :attr:`keys`.

    Args:
        thresholds: Metric name -> threshold (a number).
    """

    def __init__(self, thresholds: Mapping[str, Any]) -> None:
        flat: Dict[str, float] = {}
        _flatten_thresholds(thresholds, "", flat)
        self._thresholds = flat
        # (key, nested path or None, threshold): precomputed for the per-result check.
        self._checks: List[Tuple[str, Optional[Tuple[str, ...]], Any]] = [
            (key, tuple(key.split("/")) if "/" in key else None, value)
            for key, value in flat.items()
        ]

    @property
    def keys(self) -> Tuple[str, ...]:
        """The metric names (flattened with ``/``) the thresholds apply to."""
        return tuple(self._thresholds)

    @property
    def thresholds(self) -> Dict[str, Any]:
        """A copy of the thresholds, keyed by flattened metric name."""
        return dict(self._thresholds)

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        for key, path, threshold in self._checks:
            value = result.get(key, _MISSING)
            if value is _MISSING:
                if path is None:
                    continue
                value = _lookup(result, path)
                if value is _MISSING:
                    continue
            try:
                if value >= threshold:
                    return True
            except TypeError:  # e.g. None or a string reported under that name
                continue
        return False

    def stop_all(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"DictStopper({self._thresholds!r})"


def _lookup(result: Mapping[str, Any], path: Tuple[str, ...]) -> Any:
    node: Any = result
    for part in path:
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _flatten_thresholds(thresholds: Mapping[Any, Any], prefix: str,
                        out: Dict[str, Any]) -> None:
    for key, value in thresholds.items():
        if not isinstance(key, str):
            raise ValueError(
                f"RunConfig(stop=...): threshold keys must be metric names (str); "
                f"got key {key!r} ({type(key).__name__}).")
        name = prefix + key
        if isinstance(value, Mapping):
            _flatten_thresholds(value, name + "/", out)
            continue
        if (not isinstance(value, numbers.Real)
                or (isinstance(value, float) and math.isnan(value))):
            raise ValueError(
                f"RunConfig(stop=...): the threshold for {name!r} must be a number "
                f"(the trial stops once result[{name!r}] >= it); got {value!r} "
                f"({type(value).__name__}).")
        out[name] = value


def resolve_stopper(stop: Any) -> Optional[Stopper]:
    """Turns the ``stop`` argument of ``RunConfig`` into one ``Stopper``, or None.

    Args:
        stop: One of

            * ``None`` (or an empty dict/list): no stopper, returns None;
            * a dict of thresholds, e.g. ``{"training_iteration": 10,
              "mean_accuracy": 0.9}``: a :class:`DictStopper` that stops a
              trial once any of these values is reached (``>=``);
            * a function ``(trial_id, result) -> bool``: a ``FunctionStopper``;
            * a ``Stopper``: returned as is;
            * a list of ``Stopper`` objects: a ``CombinedStopper`` (or the only
              element of a one-element list).

    Returns:
        The stopper, or None when there is nothing to stop on.

    Raises:
        ValueError: ``stop`` is none of the above, a threshold is not a number,
            or a list holds something other than Stoppers.
    """
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, Mapping):
        if not stop:
            return None
        return DictStopper(stop)
    if isinstance(stop, (list, tuple)):
        bad = [s for s in stop if not isinstance(s, Stopper)]
        if bad:
            raise ValueError(
                f"RunConfig(stop=...): a list must hold only tune_core.stopper.Stopper "
                f"objects; got {bad[0]!r} ({type(bad[0]).__name__}) in {stop!r}. "
                f"Accepted: {_ACCEPTED}.")
        if not stop:
            return None
        if len(stop) == 1:
            return stop[0]
        return CombinedStopper(*stop)
    if isinstance(stop, type):
        raise ValueError(
            f"RunConfig(stop=...): got the class {stop.__name__}, not an instance; "
            f"pass e.g. {stop.__name__}(...). Accepted: {_ACCEPTED}.")
    if callable(stop):
        if hasattr(stop, "stop_all"):
            raise ValueError(
                f"RunConfig(stop=...): {stop!r} has a `stop_all` method but is not a "
                "tune_core.stopper.Stopper subclass, so `stop_all` would be ignored; "
                "subclass Stopper.")
        return FunctionStopper(stop)
    raise ValueError(
        f"RunConfig(stop=...): got {stop!r} ({type(stop).__name__}). "
        f"Accepted: {_ACCEPTED}.")
