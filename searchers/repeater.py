"""``Repeater``: runs each suggestion several times and reports the mean to the searcher."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

from tune_core.search.searcher import Searcher

__all__ = ["Repeater", "TRIAL_INDEX"]

#: The config key that numbers the repeats of one suggestion (0, 1, ...).
TRIAL_INDEX = "__trial_index__"


@dataclasses.dataclass
class _Group:
    """The trials that run one suggestion of the wrapped searcher."""

    primary_trial_id: str  # the id the wrapped searcher was asked with
    config: Dict[str, Any]
    size: int
    trial_ids: List[str] = dataclasses.field(default_factory=list)
    results: Dict[str, Optional[Dict[str, Any]]] = dataclasses.field(default_factory=dict)
    errors: Dict[str, bool] = dataclasses.field(default_factory=dict)

    def full(self) -> bool:
        return len(self.trial_ids) >= self.size

    def done(self) -> bool:
        return len(self.results) >= self.size


def _metric_names(metric: Any) -> List[str]:
    if metric is None:
        return []
    if isinstance(metric, str):
        return [metric]
    return list(metric)


def _mean_of(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


class Repeater(Searcher):
    """Repeats each configuration of a searcher ``repeat`` times (e.g. over seeds).

    The wrapped searcher sees one trial per configuration: when all ``repeat`` trials
    of a configuration have completed, it gets one ``on_trial_complete`` (under the id
    of the first of them) whose result holds the mean of each metric over the trials
    that did not error and reported it. If none did, it is told the trial errored.
    Intermediate results are not passed on: they belong to several trials.

    Set ``num_samples`` to a multiple of ``repeat``; a configuration whose repeats did
    not all run is never reported to the searcher.

    Args:
        searcher: the searcher whose suggestions are repeated.
        repeat: how many trials run each configuration, an integer >= 1.
        set_index: add ``"__trial_index__"`` (0 to ``repeat - 1``) to each trial's
            config, so the trainable can tell the repeats apart (e.g. to seed itself).

    Example::

        search_alg = Repeater(OptunaSearch(), repeat=3)
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        if not isinstance(searcher, Searcher):
            raise ValueError(f"Repeater(searcher={searcher!r}): use a tune Searcher "
                             "(e.g. searchers.optuna.OptunaSearch())")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"Repeater(repeat={repeat!r}): use an integer >= 1")
        if not isinstance(set_index, bool):
            raise ValueError(f"Repeater(set_index={set_index!r}): use True or False")
        super().__init__()
        self.searcher = searcher
        self.repeat = repeat
        self.set_index = set_index
        self._current: Optional[_Group] = None
        self._groups: Dict[str, _Group] = {}  # trial id -> its group, until the group is done

    @property
    def metric(self) -> Optional[str]:
        return self.searcher.metric

    @property
    def mode(self) -> Optional[str]:
        return self.searcher.mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict[str, Any], **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if self._current is None or self._current.full():
            suggestion = self.searcher.suggest(trial_id)
            if not isinstance(suggestion, dict):
                return suggestion  # None ("not now") or FINISHED
            self._current = _Group(trial_id, copy.deepcopy(suggestion), self.repeat)
        group = self._current
        config = copy.deepcopy(group.config)
        if self.set_index:
            config[TRIAL_INDEX] = len(group.trial_ids)
        group.trial_ids.append(trial_id)
        self._groups[trial_id] = group
        return config

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        group = self._groups.pop(trial_id, None)
        if group is None or trial_id in group.results:
            return
        group.results[trial_id] = None if error else result
        group.errors[trial_id] = bool(error)
        if not group.done():
            return
        names = _metric_names(self.searcher.metric)
        mean: Dict[str, Any] = {}
        for name in names:
            values = [float(r[name]) for tid, r in group.results.items()
                      if r is not None and not group.errors[tid] and
                      isinstance(r.get(name), (int, float)) and not isinstance(r[name], bool)]
            if values:
                mean[name] = _mean_of(values)
        if not names or len(mean) < len(names):
            self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)
        else:
            self.searcher.on_trial_complete(group.primary_trial_id, result=mean, error=False)

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        self.searcher.add_evaluated_point(parameters, value, error=error, pruned=pruned,
                                          intermediate_values=intermediate_values)

    def get_state(self) -> Dict[str, Any]:
        # One pickle of the groups keeps the trial ids of a group pointing to one object.
        return {"repeat": self.repeat, "set_index": self.set_index,
                "groups": copy.deepcopy({"current": self._current, "by_trial": self._groups}),
                "searcher": self.searcher.get_state()}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.repeat = state["repeat"]
        self.set_index = state["set_index"]
        groups = copy.deepcopy(state["groups"])
        self._current = groups["current"]
        self._groups = groups["by_trial"]
        self.searcher.set_state(state["searcher"])

    def __repr__(self) -> str:
        return f"Repeater({self.searcher!r}, repeat={self.repeat}, set_index={self.set_index})"
