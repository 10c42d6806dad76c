"""HyperBand for BOHB (Falkner et al., "BOHB: Robust and Efficient Hyperparameter
Optimization at Scale", ICML 2018): the brackets of :mod:`schedulers.hyperband`, plus what
a model-based searcher needs to learn from them.

Ray Tune users import it as ``ray.tune.schedulers.HyperBandForBOHB``; here it is
``schedulers.hb_bohb.HyperBandForBOHB`` with the same arguments.

What the BOHB searcher can rely on (the interface between the two):

* **Budgets in results.** Every result this scheduler decides on gets
  ``result["hyperband_info"]``, a dict with ``"bracket"`` (the bracket's index) and
  ``"decision"`` (``"CONTINUE"``, ``"PAUSE"`` or ``"STOP"``). A result at which the trial
  reached a milestone also has ``"budget"``: that milestone, in ``time_attr`` units (the
  same budget for every trial of the rung, even if the result's own ``time_attr`` is a
  little past it). BOHB fits one model per budget from ``(config, metric, budget)``.
* **Where to read them.** The controller calls the searcher's ``on_trial_result`` after
  the scheduler, with the same dict, for CONTINUE and PAUSE decisions. A trial this
  scheduler STOPs at a milestone (a loser, or a trial at ``max_t``) does not reach
  ``on_trial_result``: its last result, annotated, comes as the ``result`` of the
  searcher's ``on_trial_complete``. So a BOHB searcher takes observations from both.
* **Paused trials.** ``"decision": "PAUSE"`` tells the searcher that the trial stops
  running for now (Ray Tune's ``on_pause``); its next result means it runs again
  (``on_unpause``). A trial that loses while paused is never resumed; the controller
  completes it later (at the latest when nothing else can run), and the searcher's
  ``on_trial_complete`` then gets the result it paused at, already seen.
* **The next trial's budget.** :meth:`HyperBandForBOHB.budget_for_new_trial` is the first
  milestone of the bracket a trial created now would join (BOHB's ``get_config(budget)``).
* **Who asks for trials.** The scheduler never asks for a trial: brackets fill, in order,
  with the trials the searcher suggests when the controller has room. The searcher may
  hold back (return ``None``) while it waits for results; a bracket whose trials are all
  paused then closes with the trials it has and is decided, so promoted trials run and
  new results arrive. Its next suggestion then starts the next bracket.
"""

from __future__ import annotations

from typing import Any, Dict, List

from tune_core.experiment.trial import TrialSnapshot
from tune_core.schedulers.trial_scheduler import SchedulerDecision

from schedulers.hyperband import HyperBandScheduler

__all__ = ["HyperBandForBOHB"]


class HyperBandForBOHB(HyperBandScheduler):
    """HyperBand whose results tell a BOHB searcher the budget they were observed at.

    The brackets and decisions are :class:`~schedulers.hyperband.HyperBandScheduler`'s:
    brackets filled in the HyperBand paper's order (the largest first, as Ray Tune's
    ``HyperBandForBOHB`` does), trials paused at milestones even while their
    bracket is not full, and a bracket that cannot get more trials decided with the ones
    it has. On top, see the module docstring for what the searcher gets.

    Args: as :class:`~schedulers.hyperband.HyperBandScheduler`.
    """

    def on_trial_result(self, trial: TrialSnapshot, result: Dict[str, Any]) -> SchedulerDecision:
        decision, budget = self._decide(trial.trial_id, result)
        info: Dict[str, Any] = {"decision": decision.value}
        bracket = self.bracket_of(trial.trial_id)
        if bracket is not None:
            info["bracket"] = bracket
        if budget is not None:
            info["budget"] = budget
        result["hyperband_info"] = info
        return decision

    def budget_for_new_trial(self) -> float:
        """The first milestone (``time_attr`` units) of the bracket a new trial would join."""
        bracket = self._brackets[-1] if self._brackets else None
        if bracket is not None and not bracket.closed:
            return bracket.milestones[0]
        _, _, milestones = self._plan[len(self._brackets) % len(self._plan)]
        return milestones[0]

    def budgets(self) -> List[float]:
        """Every budget a result can be annotated with, ascending."""
        return sorted({m for _, _, milestones in self._plan for m in milestones})

    def debug_string(self) -> str:
        return super().debug_string().replace("Using HyperBand", "Using HyperBand for BOHB", 1)
