"""Turns a :class:`Searcher` into the controller's trial source."""

from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, Optional

from tune_core.search.search_algorithm import SearchAlgorithm, TrialSuggestion
from tune_core.search.searcher import Searcher

__all__ = ["SearchGenerator"]


def _merge(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _flat(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, path + "/"))
        else:
            out[path] = v
    return out


class SearchGenerator(SearchAlgorithm):
    """Asks a searcher for up to ``num_samples`` configurations."""

    is_model_based = True

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self._num_samples = 1
        self._count = 0
        self._constants: Dict[str, Any] = {}
        self._finished = False

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, param_space: Mapping[str, Any], num_samples: int) -> None:
        from tune_core.search.variant_generator import constant_part  # helper of the resolver

        self._num_samples = num_samples
        self._constants = constant_part(param_space)

    def next_trial(self, trial_id: str) -> Optional[TrialSuggestion]:
        if self._finished:
            return None
        if self._num_samples != -1 and self._count >= self._num_samples:
            self._finished = True
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self._finished = True
            return None
        if suggestion is None:
            return None
        if not isinstance(suggestion, Mapping):
            raise TypeError(f"{type(self.searcher).__name__}.suggest() returned "
                            f"{suggestion!r}; it must return a dict, None or Searcher.FINISHED")
        self._count += 1
        config = _merge(self._constants, suggestion)
        params = _flat(suggestion)
        tag = f"{self._count}_" + ",".join(
            f"{k.rsplit('/', 1)[-1]}={v:.4g}" if isinstance(v, float) else
            f"{k.rsplit('/', 1)[-1]}={str(v)[:30]}" for k, v in params.items())
        return TrialSuggestion(config=config, experiment_tag=tag, evaluated_params=params)

    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self._finished

    @property
    def total_samples(self) -> Optional[int]:
        return None if self._num_samples == -1 else self._num_samples

    def get_state(self) -> Dict[str, Any]:
        return {"count": self._count, "finished": self._finished,
                "searcher": self.searcher.get_state()}

    def set_state(self, state: Dict[str, Any]) -> None:
        self._count = state["count"]
        self._finished = state["finished"]
        self.searcher.set_state(state["searcher"])
