"""The controller's source of new trials.

The controller only talks to a :class:`SearchAlgorithm`. The built-in random/grid
search (:class:`~tune_core.search.basic_variant.BasicVariantGenerator`) is one;
a model-based :class:`~tune_core.search.searcher.Searcher` is turned into one by
:class:`~tune_core.search.search_generator.SearchGenerator`.

Order of calls::

    set_search_properties(metric, mode, config)     once, before any trial
    add_configurations(param_space, num_samples)     once, before any trial
    next_trial(trial_id) -> TrialSuggestion | None   whenever the controller has room;
                                                     None means "not now" (or finished)
    on_trial_result(trial_id, result)                for each result of a live trial
    on_trial_complete(trial_id, result, error)       once per trial that ends
    is_finished()                                    True once no trial will ever come again
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

__all__ = ["SearchAlgorithm", "TrialSuggestion"]


@dataclasses.dataclass(frozen=True)
class TrialSuggestion:
    """A configuration to run, with the short tag Ray Tune shows for it.

    Attributes:
        config: the fully resolved configuration passed to the trainable.
        experiment_tag: ``"<index>_<name>=<value>,..."`` naming what varied.
        evaluated_params: flat ``{"a/b": value}`` of the parameters that were
            sampled or grid-searched (the console shows these columns).
    """

    config: Dict[str, Any]
    experiment_tag: str = ""
    evaluated_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, dict):
            raise TypeError(f"TrialSuggestion.config must be a dict, got {self.config!r}")


class SearchAlgorithm:
    """Base class for trial sources. See the module docstring for the call order."""

    #: True when the algorithm learns from results: the controller then keeps few
    #: trials pending so that new suggestions use the newest information.
    is_model_based: bool = False

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Mapping[str, Any], **spec: Any) -> bool:
        return True

    def add_configurations(self, param_space: Mapping[str, Any], num_samples: int) -> None:
        raise NotImplementedError

    def next_trial(self, trial_id: str) -> Optional[TrialSuggestion]:
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        pass

    def is_finished(self) -> bool:
        raise NotImplementedError

    @property
    def total_samples(self) -> Optional[int]:
        """How many trials this algorithm will create in all, if known (for progress)."""
        return None

    def get_state(self) -> Dict[str, Any]:
        return {}

    def set_state(self, state: Dict[str, Any]) -> None:
        pass
