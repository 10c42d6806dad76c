"""Synchronous HyperBand (Li et al., "Hyperband: A Novel Bandit-Based Approach to
Hyperparameter Optimization", JMLR 2018), with pausing and resuming through checkpoints.

Ray Tune users import it as ``ray.tune.schedulers.HyperBandScheduler``; here it is
``schedulers.hyperband.HyperBandScheduler`` with the same arguments.

The rules (the paper's Algorithm 1, with ``R = max_t`` and ``eta = reduction_factor``)::

    s_max = floor(log_eta(max_t))              brackets s = s_max, s_max - 1, ..., 0, then again
    n(s)  = ceil((s_max + 1) / (s + 1) * eta**s)   trials a bracket takes
    r_i(s) = max_t * eta**(i - s), i = 0..s    its milestones (rungs); the last is max_t
    at rung i, of the m_i trials that entered it, the best floor(m_i / eta) (at least 1)
    go on to rung i + 1; the others stop.

For ``max_t=81, reduction_factor=3`` (the paper's example) that is five brackets of 81,
34, 15, 8 and 5 trials, starting at 1, 3, 9, 27 and 81 iterations.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tune_core.error import TuneError
from tune_core.experiment.trial import TrialSnapshot
from tune_core.schedulers.trial_scheduler import SchedulerDecision, TrialScheduler

__all__ = ["HyperBandScheduler"]

# What the scheduler has decided for a trial (the controller's status is separate).
_RUN = "RUN"        # runs on towards its bracket's current milestone
_WAIT = "WAIT"      # reached the milestone, paused until its rung is decided
_LOSE = "LOSE"      # lost at a rung while paused; to be stopped, never resumed
_DONE = "DONE"      # ended: stopped, completed, errored or removed
_FREE = "FREE"      # revived after it ended (Tuner.restore(resume_errored=True)):
#                     runs outside the brackets, up to max_t

_EPS = 1e-9


def _bad(owner: str, name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{owner}({name}={value!r}) is not valid: {accepted}")


def _check_number(owner: str, name: str, value: Any, minimum: float, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= minimum:
        raise _bad(owner, name, value, accepted)


def _bracket_plan(max_t: float, reduction_factor: float) -> List[Tuple[int, int, List[float]]]:
    """One HyperBand iteration: ``(s, n, milestones)`` per bracket, in the order they fill.

    With an integer ``max_t`` the milestones are whole numbers (rounded, at least 1). The
    most aggressive bracket is dropped while rounding would make two of its milestones
    equal (only possible for ``reduction_factor < 2``).
    """
    eta = float(reduction_factor)
    integer = isinstance(max_t, numbers.Integral)
    s_max = int(math.floor(math.log(max_t) / math.log(eta) + _EPS)) if max_t >= 1 else 0

    def milestones(s: int) -> List[float]:
        out: List[float] = []
        for i in range(s + 1):
            r = max_t * eta ** (i - s)
            out.append(max(1, int(math.floor(r + 0.5))) if integer else r)
        out[-1] = max_t  # never short of max_t by rounding (cf. ray#11695)
        return out

    while s_max > 0 and any(a >= b for a, b in zip(milestones(s_max), milestones(s_max)[1:])):
        s_max -= 1
    plan = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s - _EPS))
        plan.append((s, n, milestones(s)))
    return plan


@dataclasses.dataclass
class _Bracket:
    index: int                  # creation order, also the scheduling priority
    s: int
    size: int                   # n: how many trials it takes at rung 0
    milestones: List[float]
    rung: int = 0
    closed: bool = False        # takes no more trials (filled, stalled, or past rung 0)
    finished: bool = False
    trials: List[str] = dataclasses.field(default_factory=list)    # every trial, in order
    members: List[str] = dataclasses.field(default_factory=list)   # entered the current rung
    # per decided rung: (milestone, ids that entered it, ids that went on)
    history: List[Tuple[float, List[str], List[str]]] = dataclasses.field(default_factory=list)

    @property
    def milestone(self) -> float:
        return self.milestones[self.rung]

    @property
    def last_rung(self) -> bool:
        return self.rung == len(self.milestones) - 1


@dataclasses.dataclass
class _TrialInfo:
    bracket: int
    order: int
    state: str = _RUN
    time: Optional[float] = None    # the newest time_attr value seen
    score: Optional[float] = None   # the metric at the milestone it waits at


class HyperBandScheduler(TrialScheduler):
    """Synchronous HyperBand: successive-halving brackets that pause and resume trials.

    New trials fill brackets in the paper's order (the most exploratory bracket first,
    then cycling). Each trial runs to its bracket's current milestone and PAUSEs (its
    worker saves a checkpoint and frees its resources). When every trial of the rung
    has reached the milestone or ended, the best ``floor(m / eta)`` of the ``m`` trials
    that entered the rung (at least one) are resumed from their checkpoints and run to
    the next milestone; the others never run again (see "Ending paused losers" below).
    Trials that reach ``max_t`` stop (unless ``stop_last_trials=False``).

    Trials need checkpoints to resume: a function trainable reports them with
    ``tune.report(metrics, checkpoint=...)`` and reads them back with
    ``tune.get_checkpoint()``; one without checkpoints starts over when resumed.

    Decisions where the paper is silent:

    * A trial that ends before the milestone (its trainable returned, a stopper or
      ``done`` stopped it) or errors for good leaves the race, but still counts among
      the ``m`` that entered the rung: the number promoted is computed as if it had
      stayed, and the places go to the best of the trials that can go on. A trial that
      ends right at the milestone is not resumed either.
    * A bracket at rung 0 waits until it has ``n`` trials. If the search cannot give it
      more (its trials are all paused or ended and no new trial came when the controller
      asked for one: the search is exhausted or holding back), the bracket is closed as
      it is and decided with the ``m`` trials it has. So a run with fewer samples than
      the brackets' sizes ends, and is still halved at every rung.
    * The trial whose result completes a rung gets its own decision at once (CONTINUE
      if it is among the best, else STOP); the others were paused.
    * Ties are broken by creation order (the older trial wins); a NaN or missing metric
      ranks last.
    * Trials revived by ``Tuner.restore(..., resume_errored=True)`` after they left
      their bracket run outside the brackets, up to ``max_t``.
    * Differences from Ray Tune's ``HyperBandScheduler``: the paper's ``s_max =
      floor(log_eta max_t)`` (Ray rounds), its bracket order (Ray fills the smallest
      bracket first), its ``floor(m / eta)`` survivors (Ray keeps ``ceil(n / eta)`` of
      the bracket's planned size, so an unfilled bracket stops nobody), and the last
      milestone is always ``max_t`` (Ray's can fall short of it, ray#11695).

    Ending paused losers: the scheduler never resumes a trial that lost at a rung. It
    stays PAUSED until the controller completes the paused trials that nothing will
    resume (when no trial runs and the search is finished), so it ends exactly at its
    milestone; :meth:`trials_to_stop` lists such trials for a controller that ends them
    at once. A concurrency limit that counts paused trials cannot block the run: a
    bracket that cannot fill is decided, and keeps at least one trial running, so
    losers alone never fill the limit.

    Args:
        time_attr: the result field that measures progress; it must increase
            monotonically (``training_iteration`` by default, or e.g. ``time_total_s``).
        metric: the result field to rank trials by; defaults to ``TuneConfig(metric=)``.
        mode: ``"min"`` or ``"max"``; defaults to ``TuneConfig(mode=)``.
        max_t: the ``time_attr`` value at which trials stop (the paper's ``R``).
        reduction_factor: the paper's ``eta``: a rung keeps 1/eta of its trials.
        stop_last_trials: stop the trials that reach ``max_t``; False lets them run on
            until they end by themselves.
    """

    pauses_trials = True

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t: float = 81, reduction_factor: float = 3,
                 stop_last_trials: bool = True) -> None:
        owner = type(self).__name__
        if not isinstance(time_attr, str) or not time_attr:
            raise _bad(owner, "time_attr", time_attr, "use the name of a reported result "
                       "field that grows monotonically, e.g. 'training_iteration'")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise _bad(owner, "metric", metric, "use the name of a reported result field or "
                       "None (then TuneConfig(metric=...) decides)")
        if mode not in (None, "min", "max"):
            raise _bad(owner, "mode", mode, 'use "min", "max" or None (then '
                       "TuneConfig(mode=...) decides)")
        _check_number(owner, "max_t", max_t, 0, f"use a number > 0 (the {time_attr} at "
                      "which trials stop)")
        _check_number(owner, "reduction_factor", reduction_factor, 1,
                      "use a number > 1 (each rung keeps 1/reduction_factor of its trials)")
        if not isinstance(stop_last_trials, bool):
            raise _bad(owner, "stop_last_trials", stop_last_trials, "use True or False")
        self.metric = metric
        self.mode = mode
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = float(reduction_factor)
        self._stop_last_trials = stop_last_trials
        self._plan = _bracket_plan(max_t, reduction_factor)
        self._brackets: List[_Bracket] = []
        self._trials: Dict[str, _TrialInfo] = {}
        self._next_order = 0
        self._num_stopped = 0

    # --- the plan ------------------------------------------------------------------------------
    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def max_t(self) -> float:
        return self._max_t

    def bracket_plan(self) -> List[Tuple[int, int, List[float]]]:
        """``(s, n, milestones)`` of each bracket of one HyperBand iteration, in fill order."""
        return [(s, n, list(r)) for s, n, r in self._plan]

    # --- hooks ---------------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialSnapshot) -> None:
        self._check_metric_mode()
        if trial.trial_id not in self._trials:
            self._add(trial.trial_id)

    def on_trial_result(self, trial: TrialSnapshot, result: Dict[str, Any]) -> SchedulerDecision:
        decision, _ = self._decide(trial.trial_id, result)
        return decision

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        self._ended(trial.trial_id)

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        self._ended(trial.trial_id)

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        self._ended(trial.trial_id)

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        """The runnable trial of the oldest bracket; else resolve a stalled bracket.

        Runnable are new trials, promoted trials, and trials paused by something other
        than this scheduler before their milestone (e.g. an interrupted run that was
        restored). When none is runnable, the open bracket is closed if it cannot get
        more trials (see the class docstring), which may promote some. A trial that
        lost at a rung is never returned (see :meth:`trials_to_stop`).
        """
        for c in candidates:
            info = self._trials.get(c.trial_id)
            if info is None:
                self._check_metric_mode()
                self._add(c.trial_id)
            elif info.state == _DONE:
                info.state = _FREE  # the controller revived it
        chosen = self._runnable(candidates)
        if chosen is None:
            for bracket in self._brackets:
                if not bracket.closed and not bracket.finished and bracket.trials and \
                        not any(self._trials[t].state == _RUN for t in bracket.members):
                    bracket.closed = True
                    self._advance(bracket)
            chosen = self._runnable(candidates)
        return chosen

    def trials_to_stop(self) -> List[str]:
        """Paused trials that lost at a rung: they will never run again.

        The controller should end them (mark them TERMINATED and call
        ``on_trial_complete``) rather than leave them paused until the end of the
        experiment. An id stays in the list until its ``on_trial_complete`` arrives.
        """
        return [t for t, info in self._trials.items() if info.state == _LOSE]

    def debug_string(self) -> str:
        live = [b for b in self._brackets if not b.finished]
        out = [f"Using HyperBand: num_stopped={self._num_stopped} "
               f"total_brackets={len(self._brackets)}"]
        for b in live:
            counts: Dict[str, int] = {}
            for t in b.members:
                counts[self._trials[t].state] = counts.get(self._trials[t].state, 0) + 1
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            out.append(f"  Bracket {b.index} (s={b.s}, n={b.size}): rung {b.rung} "
                       f"(milestone {b.milestone:g}), {len(b.members)} trials {{{shown}}}")
        return "\n".join(out)

    # --- decisions -----------------------------------------------------------------------------
    def _check_metric_mode(self) -> None:
        if not self.metric or self.mode not in ("min", "max"):
            owner = type(self).__name__
            raise ValueError(
                f"{owner} needs a metric and a mode (it has metric={self.metric!r}, "
                f"mode={self.mode!r}): pass metric=... and mode=... to {owner}(...) or set "
                'TuneConfig(metric=..., mode=...) (e.g. metric="loss", mode="min")')

    def _add(self, trial_id: str) -> None:
        bracket = self._brackets[-1] if self._brackets else None
        if bracket is None or bracket.closed:
            s, n, milestones = self._plan[len(self._brackets) % len(self._plan)]
            bracket = _Bracket(index=len(self._brackets), s=s, size=n,
                               milestones=list(milestones))
            self._brackets.append(bracket)
        bracket.trials.append(trial_id)
        bracket.members.append(trial_id)
        self._trials[trial_id] = _TrialInfo(bracket=bracket.index, order=self._next_order)
        self._next_order += 1
        if len(bracket.trials) >= bracket.size:
            bracket.closed = True

    def _decide(self, trial_id: str, result: Dict[str, Any]
                ) -> Tuple[SchedulerDecision, Optional[float]]:
        """The decision on one result, and the milestone it reached (None if none)."""
        info = self._trials.get(trial_id)
        if info is None:
            self._check_metric_mode()
            self._add(trial_id)
            info = self._trials[trial_id]
        if info.state in (_LOSE, _DONE):
            # Never resumed by this scheduler; if it runs anyway, it stops at once.
            self._stop(info)
            return SchedulerDecision.STOP, None
        if self._time_attr not in result:
            if info.time is not None:
                return SchedulerDecision.CONTINUE, None  # tolerated once it was reported
            keys = sorted(k for k in result if k != "config")
            raise TuneError(
                f"{type(self).__name__}(time_attr={self._time_attr!r}): the first result of "
                f"trial {trial_id} has no {self._time_attr!r}; it reported {keys}. Report it "
                "in every result, or set time_attr to one of the reported fields (e.g. "
                "'training_iteration').")
        t = result[self._time_attr]
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or math.isnan(t):
            raise TuneError(
                f"{type(self).__name__}(time_attr={self._time_attr!r}): trial {trial_id} "
                f"reported {self._time_attr}={t!r}; it must be a number that grows with "
                "training")
        previous, info.time = info.time, t
        if info.state == _FREE:
            if t >= self._max_t and self._stop_last_trials:
                info.state = _DONE
                return SchedulerDecision.STOP, None
            return SchedulerDecision.CONTINUE, None
        bracket = self._brackets[info.bracket]
        if info.state == _WAIT:
            return SchedulerDecision.PAUSE, bracket.milestone  # already waiting
        reached: Optional[float] = None
        while True:  # a promoted trial may already be past the next milestone
            milestone = bracket.milestone
            if t < milestone - _EPS:
                return SchedulerDecision.CONTINUE, reached
            if bracket.last_rung:
                if not self._stop_last_trials:  # runs on past max_t
                    first = previous is None or previous < milestone - _EPS
                    return SchedulerDecision.CONTINUE, milestone if first else None
                self._stop(info)
                self._advance(bracket)
                return SchedulerDecision.STOP, milestone
            info.state = _WAIT
            info.score = self._score(result)
            self._advance(bracket)
            if info.state == _WAIT:
                return SchedulerDecision.PAUSE, milestone
            if info.state == _LOSE:
                self._stop(info)
                return SchedulerDecision.STOP, milestone
            reached = milestone  # _RUN: it completed the rung and goes on

    def _score(self, result: Dict[str, Any]) -> float:
        """The metric as a number to minimise; NaN or missing ranks last."""
        value = result.get(self.metric)  # type: ignore[arg-type]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                math.isnan(value):
            return math.inf
        return float(value) if self.mode == "min" else -float(value)

    @staticmethod
    def _stop(info: _TrialInfo) -> None:
        info.state = _DONE

    def _ended(self, trial_id: str) -> None:
        info = self._trials.get(trial_id)
        if info is None or info.state == _DONE:
            return
        info.state = _DONE
        if info.bracket < len(self._brackets):
            self._advance(self._brackets[info.bracket])

    def _advance(self, bracket: _Bracket) -> None:
        """Decide the bracket's current rung if it is complete (and the next ones)."""
        while not bracket.finished:
            if not bracket.closed:
                return
            states = [self._trials[t].state for t in bracket.members]
            if _RUN in states:
                return
            if bracket.last_rung or _WAIT not in states:
                # Nobody left who could go on (the last rung's trials stop at max_t).
                if not bracket.last_rung:
                    bracket.history.append((bracket.milestone, list(bracket.members), []))
                bracket.finished = True
                return
            entered = list(bracket.members)
            keep = max(1, int(math.floor(len(entered) / self._eta + _EPS)))
            waiting = [t for t in entered if self._trials[t].state == _WAIT]
            ranked = sorted(waiting, key=lambda t: (self._trials[t].score,
                                                    self._trials[t].order))
            winners = set(ranked[:keep])
            for t in waiting:
                self._trials[t].state = _RUN if t in winners else _LOSE
                self._trials[t].score = None
            self._num_stopped += len(waiting) - len(winners)
            bracket.members = [t for t in entered if t in winners]
            bracket.history.append((bracket.milestone, entered, list(bracket.members)))
            bracket.rung += 1

    def _runnable(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        best: Optional[Tuple[int, int]] = None
        chosen = None
        for c in candidates:
            info = self._trials[c.trial_id]
            if info.state == _FREE:
                key = (len(self._brackets), info.order)
            elif info.state == _RUN:
                key = (info.bracket, info.order)
            else:
                continue
            if best is None or key < best:
                best, chosen = key, c.trial_id
        return chosen

    # --- inspection (tests, progress output) ---------------------------------------------------
    def rung_history(self) -> List[List[Tuple[float, List[str], List[str]]]]:
        """Per bracket, its decided rungs: ``(milestone, entered, promoted)`` trial ids."""
        return [[(m, list(e), list(p)) for m, e, p in b.history] for b in self._brackets]

    def bracket_of(self, trial_id: str) -> Optional[int]:
        """The index of the bracket a trial was put in (None for an unknown trial)."""
        info = self._trials.get(trial_id)
        return None if info is None else info.bracket

