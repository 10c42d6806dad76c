"""``ConcurrencyLimiter``: caps how many of a searcher's suggestions run at once."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from tune_core.search.searcher import Searcher

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter(Searcher):
    """Wraps a searcher so that at most ``max_concurrent`` of its trials are live.

    A trial is live from the ``suggest`` that created it until its
    ``on_trial_complete``. While ``max_concurrent`` trials are live, ``suggest``
    returns None ("not now"), so a model-based searcher waits for results instead of
    suggesting blindly.

    Args:
        searcher: the searcher to limit. Its metric/mode and search space are set
            through this wrapper; ``Searcher.FINISHED`` from it is passed on.
        max_concurrent: the most trials live at once, an integer >= 1.
        batch: if True, suggest a whole batch of ``max_concurrent`` trials and then
            nothing until every trial of the batch completed; the completions reach
            the searcher together, once the batch is over (so it learns from the
            batch as a whole). If False, a new trial may start as soon as any ends.

    Example::

        search_alg = ConcurrencyLimiter(OptunaSearch(), max_concurrent=4)
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if not isinstance(searcher, Searcher):
            raise ValueError(f"ConcurrencyLimiter(searcher={searcher!r}): use a tune Searcher "
                             "(e.g. searchers.optuna.OptunaSearch())")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or \
                max_concurrent < 1:
            raise ValueError(f"ConcurrencyLimiter(max_concurrent={max_concurrent!r}): use an "
                             "integer >= 1")
        if not isinstance(batch, bool):
            raise ValueError(f"ConcurrencyLimiter(batch={batch!r}): use True or False")
        super().__init__()
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials: Set[str] = set()
        # batch mode: completions held back until the whole batch has ended
        self._held: List[Tuple[str, Optional[Dict[str, Any]], bool]] = []

    # metric and mode are the wrapped searcher's
    @property
    def metric(self) -> Optional[str]:
        return self.searcher.metric

    @property
    def mode(self) -> Optional[str]:
        return self.searcher.mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict[str, Any], **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    @property
    def num_unfinished_live_trials(self) -> int:
        """Live trials whose completion has not been reported yet."""
        return len(self.live_trials) - len(self._held)

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if len(self.live_trials) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict):
            self.live_trials.add(trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: Dict[str, Any]) -> None:
        if trial_id in self.live_trials:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict[str, Any]] = None,
                          error: bool = False) -> None:
        if trial_id not in self.live_trials:
            return  # not one of ours (e.g. suggested before a restore of another searcher)
        if not self.batch:
            self.live_trials.discard(trial_id)
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if any(held[0] == trial_id for held in self._held):
            return
        self._held.append((trial_id, result, error))
        if len(self._held) < len(self.live_trials):
            return
        # Every live trial has ended: the batch is over (it may be smaller than
        # max_concurrent when the controller or the searcher had no more to start).
        held, self._held = self._held, []
        self.live_trials.clear()
        for tid, res, err in held:
            self.searcher.on_trial_complete(tid, result=res, error=err)

    def add_evaluated_point(self, parameters: Dict[str, Any], value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None) -> None:
        self.searcher.add_evaluated_point(parameters, value, error=error, pruned=pruned,
                                          intermediate_values=intermediate_values)

    def get_state(self) -> Dict[str, Any]:
        return {"live_trials": set(self.live_trials), "held": list(self._held),
                "max_concurrent": self.max_concurrent, "batch": self.batch,
                "searcher": self.searcher.get_state()}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.live_trials = set(state["live_trials"])
        self._held = list(state["held"])
        self.max_concurrent = state["max_concurrent"]
        self.batch = state["batch"]
        self.searcher.set_state(state["searcher"])

    def __repr__(self) -> str:
        return (f"ConcurrencyLimiter({self.searcher!r}, max_concurrent={self.max_concurrent}, "
                f"batch={self.batch})")
