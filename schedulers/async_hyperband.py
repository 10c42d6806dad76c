"""Asynchronous successive halving: ``AsyncHyperBandScheduler`` (alias ``ASHAScheduler``).

The rules follow Li et al., "A System for Massively Parallel Hyperparameter Tuning"
(MLSys 2020, https://arxiv.org/abs/1810.05934), in two forms:

* ``type="stopping"`` (Ray Tune's ASHA, the default): a trial that reaches a rung is
  judged at once and either continues or stops.
* ``type="promotion"`` (Syne Tune's promotion-based ASHA, the paper's Algorithm 2): a
  trial that reaches a rung pauses (its checkpoint is kept) and is resumed when it
  qualifies for promotion.

The rung and bracket machinery lives in :class:`_SuccessiveHalving`, shared with
``schedulers.moasha.MOASHA``, which ranks rungs by several objectives.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from tune_core.error import TuneError
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import SchedulerDecision, TrialScheduler

__all__ = ["AsyncHyperBandScheduler", "ASHAScheduler"]

_TYPES = ("stopping", "promotion")
# Rung levels are products of floats (grace_period * reduction_factor ** k); a level
# within this relative tolerance of max_t counts as max_t.
_REL_TOL = 1e-9


# --- argument checks shared by the schedulers of this package ------------------------------------
def _bad(owner: str, name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{owner}({name}={value!r}) is not valid: {accepted}")


def _is_real(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_name(owner: str, name: str, value: Any, *, allow_none: bool = False) -> Optional[str]:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        accepted = "use the name of a reported result field"
        raise _bad(owner, name, value, accepted + (" or None" if allow_none else ""))
    return value


def _check_mode(owner: str, mode: Any) -> Optional[str]:
    if mode not in (None, "min", "max"):
        raise _bad(owner, "mode", mode, 'use "min", "max" or None (then TuneConfig(mode=...) '
                   "decides)")
    return mode


def _check_number(owner: str, name: str, value: Any, *, minimum: float = 0.0,
                  strict: bool = True, integer: bool = False) -> Any:
    kind = "an integer" if integer else "a finite number"
    relation = ">" if strict else ">="
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) if integer \
        else _is_real(value) and not math.isnan(value)
    if not ok or (value <= minimum if strict else value < minimum) or math.isinf(value):
        raise _bad(owner, name, value, f"use {kind} {relation} {minimum:g}")
    return value


def _check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(owner, name, value, "use True or False")
    return value


def _require_search_properties(scheduler: TrialScheduler) -> None:
    """The error for a scheduler that got neither its own metric/mode nor TuneConfig's."""
    missing = [n for n in ("metric", "mode") if not getattr(scheduler, n)]
    if missing:
        owner = type(scheduler).__name__
        raise ValueError(
            f"{owner} has no {' and no '.join(missing)}: pass "
            f"{', '.join(f'{n}=...' for n in missing)} to {owner}(...) or set "
            'TuneConfig(metric=..., mode=...) (e.g. metric="loss", mode="min")')


def _read_number(owner: str, arg: str, key: str, trial_id: str, result: Mapping[str, Any],
                 first: bool) -> Optional[float]:
    """``result[key]`` as a float; None when it is absent (an error in a trial's first result).

    A trial's first result must hold the fields the scheduler decides on, so that a
    typo fails at once instead of silently disabling the scheduler; later results may
    skip one, and the scheduler then ignores them (as Ray Tune does).
    """
    value = result.get(key)
    if value is None:
        if first:
            fields = sorted(k for k in result if k != "config")
            raise TuneError(
                f"{owner}({arg}={key!r}): the first result of trial {trial_id} has no "
                f"{key!r}; it reported {fields}. Report {key!r} with tune.report(...) in "
                f"every result, or set {arg} to one of the reported fields.")
        return None
    if not _is_real(value):
        raise TuneError(f"{owner}({arg}={key!r}): trial {trial_id} reported {key}={value!r}, "
                        "which is not a number")
    return float(value)


# --- the shared successive-halving machinery -----------------------------------------------------
class _SuccessiveHalving(TrialScheduler):
    """Brackets, rungs and the stopping and promotion rules of asynchronous successive halving.

    Subclasses turn a result into a comparable value (:meth:`_value`) and rank a rung's
    values (:meth:`_ranked`, :meth:`_num_ahead`). Everything else (rung levels, bracket
    assignment, the two decision rules, which trial runs next) is here.

    State is plain dicts, sets and a :class:`random.Random`, so the scheduler pickles
    with the experiment and continues with identical decisions after ``Tuner.restore``.
    """

    def __init__(self, *, time_attr: str, max_t: float, grace_period: float,
                 reduction_factor: float, brackets: int, stop_last_trials: bool,
                 kind: str, seed: Optional[int]) -> None:
        owner = self.__class__.__name__
        self._time_attr = _check_name(owner, "time_attr", time_attr)
        self._max_t = _check_number(owner, "max_t", max_t)
        self._grace_period = _check_number(owner, "grace_period", grace_period)
        if grace_period > max_t:
            raise _bad(owner, "grace_period", grace_period,
                       f"use a number > 0 and <= max_t ({max_t!r}): trials are first judged "
                       "at grace_period and never run past max_t")
        self._reduction_factor = _check_number(owner, "reduction_factor", reduction_factor,
                                               minimum=1)
        _check_number(owner, "brackets", brackets, minimum=1, strict=False, integer=True)
        self._stop_last_trials = _check_bool(owner, "stop_last_trials", stop_last_trials)
        if kind not in _TYPES:
            raise _bad(owner, "type", kind, 'use "stopping" (stop trials at rungs) or '
                       '"promotion" (pause them at rungs and resume the promoted ones)')
        if seed is not None and not isinstance(seed, int):
            raise _bad(owner, "seed", seed, "use an integer or None")
        self._promotion = kind == "promotion"
        self.pauses_trials = self._promotion

        levels = self._rung_levels()
        if brackets > len(levels) + 1:
            shown = ", ".join(f"{lv:g}" for lv in levels) or "none"
            raise _bad(owner, "brackets", brackets,
                       f"with max_t={max_t!r}, grace_period={grace_period!r} and "
                       f"reduction_factor={reduction_factor!r} the rung levels are {shown}, so "
                       f"use 1 to {len(levels) + 1} brackets (bracket s starts at the s-th "
                       "level; the last one has no rungs)")
        self._brackets = int(brackets)
        # _levels[b][k]: the k-th rung level of bracket b; _rungs[b][k]: trial_id -> value,
        # in the order the trials reached the rung.
        self._levels: List[List[float]] = [levels[b:] for b in range(self._brackets)]
        self._rungs: List[List[Dict[str, Any]]] = [[{} for _ in lv] for lv in self._levels]
        self._rng = random.Random(seed)
        self._bracket_of: Dict[str, int] = {}
        self._seen: Set[str] = set()       # trials with at least one usable result
        self._finished: Set[str] = set()
        # promotion only
        self._paused_at: Dict[str, int] = {}   # trial_id -> rung index it waits at
        self._next_rung: Dict[str, int] = {}   # trial_id -> rung index it pauses at next
        self._resuming: Set[str] = set()       # promoted, no result since
        self.num_stopped = 0
        self.num_paused = 0
        self.num_promoted = 0

    def _rung_levels(self) -> List[float]:
        """grace_period * reduction_factor ** k below max_t.

        A level equal to max_t is a rung only for the stopping type with
        ``stop_last_trials=False``: then trials that reach max_t are judged there
        (and the survivors run on), otherwise reaching max_t ends the trial.
        """
        at_max_t = not self._promotion and not self._stop_last_trials
        levels: List[float] = []
        k = 0
        while True:
            level = self._grace_period * self._reduction_factor ** k
            if level >= self._max_t * (1 - _REL_TOL):
                if at_max_t and level <= self._max_t * (1 + _REL_TOL):
                    levels.append(self._max_t)
                return levels
            levels.append(level)
            k += 1

    # --- what subclasses define ----------------------------------------------------------------
    def _value(self, trial_id: str, result: Mapping[str, Any], first: bool) -> Any:
        """The comparable value of a result, or None to ignore the result."""
        raise NotImplementedError

    def _ranked(self, rung: Dict[str, Any]) -> List[str]:
        """The rung's trial ids, best first (a total order)."""
        raise NotImplementedError

    def _num_ahead(self, rung: Dict[str, Any], trial_id: str) -> int:
        """How many of the rung's results rank ahead of ``trial_id``'s."""
        raise NotImplementedError

    # --- hooks ---------------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialSnapshot) -> None:
        _require_search_properties(self)
        self._assign_bracket(trial.trial_id)

    def on_trial_result(self, trial: TrialSnapshot, result: Dict[str, Any]) -> SchedulerDecision:
        trial_id = trial.trial_id
        first = trial_id not in self._seen
        time = _read_number(self.__class__.__name__, "time_attr", self._time_attr, trial_id,
                            result, first)
        value = self._value(trial_id, result, first)
        if time is None or value is None:
            return SchedulerDecision.CONTINUE
        self._seen.add(trial_id)
        self._resuming.discard(trial_id)
        bracket = self._assign_bracket(trial_id)
        if time >= self._max_t and (self._stop_last_trials or self._promotion):
            self._record(trial_id, bracket, time, value)
            if self._stop_last_trials:
                return SchedulerDecision.STOP
            return SchedulerDecision.CONTINUE
        if self._promotion:
            return self._promotion_decision(trial_id, bracket, time, value)
        return self._stopping_decision(trial_id, bracket, time, value)

    def on_trial_complete(self, trial: TrialSnapshot, result: Optional[Dict[str, Any]]) -> None:
        trial_id = trial.trial_id
        if result and trial_id not in self._finished:
            # Its last result counts at the highest rung it passed (it may have ended
            # at a rung on its own), as in Ray Tune; it takes no decision any more.
            try:
                time = _read_number(self.__class__.__name__, "time_attr", self._time_attr,
                                    trial_id, result, first=False)
                value = self._value(trial_id, result, False)
            except TuneError:  # a non-number there was reported (and raised) already
                time = value = None
            if time is not None and value is not None:
                self._record(trial_id, self._assign_bracket(trial_id), time, value)
        self._finish(trial_id)

    def on_trial_error(self, trial: TrialSnapshot) -> None:
        self._finish(trial.trial_id)

    def on_trial_remove(self, trial: TrialSnapshot) -> None:
        self._finish(trial.trial_id)

    def choose_trial_to_run(self, candidates: Sequence[TrialSnapshot]) -> Optional[str]:
        """Which PENDING or PAUSED trial runs next.

        1. A trial whose run is already under way: promoted but not restarted yet (for
           example when the promotion waited for resources), PAUSED by something other
           than this scheduler (an interrupted experiment that was restored), or PENDING
           again after it ran (a retry after a failure, or a restore).
        2. (promotion type) The trial the paper's ``get_job`` promotes: the best paused
           trial in the top ``floor(n / reduction_factor)`` of its rung, highest rung
           level first.
        3. A new trial, in creation order.

        Returns None when none of these exists. With the promotion type that means every
        paused trial waits for more results at its rung; when no trial is running and
        no new trial will come, no such result can arrive, so those trials are finished
        at their rung and the controller may complete them.
        """
        by_id = {c.trial_id: c for c in candidates}
        for c in candidates:
            tid = c.trial_id
            if tid in self._finished:
                continue
            if (c.status == TrialStatus.PAUSED and (tid in self._resuming
                                                    or tid not in self._paused_at)) or \
                    (c.status == TrialStatus.PENDING and tid in self._seen):
                return tid
        if self._promotion:
            for tid, bracket, k in self._promotable():
                c = by_id.get(tid)
                if c is not None and c.status == TrialStatus.PAUSED:
                    self._promote(tid, k)
                    return tid
        for c in candidates:
            if c.status == TrialStatus.PENDING and c.trial_id not in self._finished:
                return c.trial_id
        return None

    def debug_string(self) -> str:
        parts = [f"{self.__class__.__name__}: {self.num_stopped} stopped"]
        if self._promotion:
            parts.append(f"{len(self._paused_at)} paused at rungs, {self.num_promoted} promoted")
        for b, levels in enumerate(self._levels):
            rungs = " ".join(f"{lv:g}:{len(r)}" for lv, r in zip(levels, self._rungs[b]))
            parts.append(f"bracket {b} rungs (level:results) {rungs or '-'}")
        return "; ".join(parts)

    # --- brackets and rungs --------------------------------------------------------------------
    def _assign_bracket(self, trial_id: str) -> int:
        """A new trial joins bracket s with probability proportional to exp(its rung count)."""
        bracket = self._bracket_of.get(trial_id)
        if bracket is None:
            if self._brackets == 1:
                bracket = 0
            else:
                sizes = [len(lv) for lv in self._levels]
                top = max(sizes)
                weights = [math.exp(s - top) for s in sizes]
                bracket = self._rng.choices(range(self._brackets), weights=weights)[0]
            self._bracket_of[trial_id] = bracket
        return bracket

    def _highest_rung(self, bracket: int, time: float) -> int:
        """Index of the highest rung of ``bracket`` whose level ``time`` reached, or -1."""
        k = -1
        for i, level in enumerate(self._levels[bracket]):
            if time >= level * (1 - _REL_TOL):
                k = i
        return k

    def _record(self, trial_id: str, bracket: int, time: float, value: Any) -> None:
        """Record at the highest rung reached, unless the trial is recorded there already."""
        k = self._highest_rung(bracket, time)
        if k >= 0:
            self._rungs[bracket][k].setdefault(trial_id, value)

    def _finish(self, trial_id: str) -> None:
        self._finished.add(trial_id)
        self._resuming.discard(trial_id)
        self._paused_at.pop(trial_id, None)

    # --- the stopping rule -----------------------------------------------------------------------
    def _stopping_decision(self, trial_id: str, bracket: int, time: float,
                           value: Any) -> SchedulerDecision:
        """Judge the trial at the highest rung it reached, once per rung.

        With n results at the rung (its own included), the trial continues iff fewer
        than n / reduction_factor of them rank ahead of it, i.e. it is in the top
        ceil(n / reduction_factor). The first trial at a rung always continues.
        """
        k = self._highest_rung(bracket, time)
        if k < 0:
            return SchedulerDecision.CONTINUE
        rung = self._rungs[bracket][k]
        if trial_id in rung:
            return SchedulerDecision.CONTINUE  # judged here already
        rung[trial_id] = value
        if self._num_ahead(rung, trial_id) * self._reduction_factor < len(rung):
            return SchedulerDecision.CONTINUE
        self.num_stopped += 1
        return SchedulerDecision.STOP

    # --- the promotion rule ----------------------------------------------------------------------
    def _quota(self, rung: Dict[str, Any]) -> int:
        """The paper's top_k size: floor(n / reduction_factor)."""
        return int(math.floor(len(rung) / self._reduction_factor + _REL_TOL))

    def _promotable(self, extra: Optional[Tuple[str, int, int]] = None
                    ) -> Iterator[Tuple[str, int, int]]:
        """Paused trials that may be promoted, in the order ``get_job`` promotes them.

        Rungs are visited from the highest level down (brackets in order on equal
        levels); in each, the top floor(n / reduction_factor) trials by rank that are
        paused there. ``extra`` = (trial_id, bracket, k) counts one more trial as paused.
        """
        order = sorted(((self._levels[b][k], -b, b, k) for b in range(self._brackets)
                        for k in range(len(self._levels[b]))), reverse=True)
        for _, _, b, k in order:
            rung = self._rungs[b][k]
            quota = self._quota(rung)
            if not quota:
                continue
            for tid in self._ranked(rung)[:quota]:
                if (self._paused_at.get(tid) == k and self._bracket_of.get(tid) == b) or \
                        extra == (tid, b, k):
                    yield tid, b, k

    def _promote(self, trial_id: str, k: int) -> None:
        self._paused_at.pop(trial_id, None)
        self._next_rung[trial_id] = k + 1
        self._resuming.add(trial_id)
        self.num_promoted += 1

    def _promotion_decision(self, trial_id: str, bracket: int, time: float,
                            value: Any) -> SchedulerDecision:
        """Pause the trial at the next rung it reaches, unless it is promoted at once.

        It continues in place iff ``get_job``, asked for work for the slot this trial
        would free, would promote this very trial (it is in the top floor(n /
        reduction_factor) of its rung and no paused trial comes before it); pausing and
        resuming it would only cost a checkpoint round trip.
        """
        k_next = self._next_rung.get(trial_id, 0)
        k = self._highest_rung(bracket, time)
        if k < k_next:
            return SchedulerDecision.CONTINUE  # between rungs, or re-running below one
        rung = self._rungs[bracket][k]
        rung.setdefault(trial_id, value)
        first = next(self._promotable(extra=(trial_id, bracket, k)), None)
        if first is not None and first[0] == trial_id:
            self._next_rung[trial_id] = k + 1
            self.num_promoted += 1
            return SchedulerDecision.CONTINUE
        self._paused_at[trial_id] = k
        self.num_paused += 1
        return SchedulerDecision.PAUSE


# --- single-objective ASHA ------------------------------------------------------------------------
class AsyncHyperBandScheduler(_SuccessiveHalving):
    """Asynchronous successive halving (ASHA), Ray Tune's arguments plus promotion.

    Rungs: bracket ``s`` (0 <= s < ``brackets``) has rungs at
    ``grace_period * reduction_factor ** (k + s)`` for k = 0, 1, ... below ``max_t``
    (with the defaults 1, 4, 16, 64). A new trial joins bracket s with probability
    proportional to ``exp(number of rungs of s)``, drawn from a generator seeded by
    ``seed`` (Ray Tune's softmax; with one bracket nothing is drawn). A rung records
    the metric value a trial reports as its ``time_attr`` first reaches the rung's
    level; when a result jumps over several levels only the highest one counts.

    ``type="stopping"`` (default): a trial reaching a rung is judged at once against
    the n results the rung has recorded, its own included. It continues iff fewer
    than n / reduction_factor of them are strictly better, that is iff it is in the
    top ceil(n / reduction_factor): the paper's "top 1/eta" rule for a decision that
    cannot wait. So the first trial at a rung continues, and with
    ``reduction_factor=4`` the 2nd to 4th continue only if best so far. A trial whose
    ``time_attr`` reaches ``max_t`` stops (unless ``stop_last_trials=False``: then a
    level equal to max_t is one more rung, and the trials that pass it run until
    they end on their own). The scheduler never pauses and needs no checkpoints.

    ``type="promotion"`` (Syne Tune's promotion-based ASHA, the paper's Algorithm 2):
    a trial that reaches a rung *pauses* (the controller saves a checkpoint and frees
    its resources). Whenever a trial can be started, :meth:`choose_trial_to_run`
    runs the paper's ``get_job``: from the highest rung level down, the best paused
    trial among the top floor(n / reduction_factor) of its rung's n recorded results
    is promoted, i.e. resumed from its checkpoint until the next rung; only when no
    trial is promotable does a new trial start. Consequences:

    * A paused trial stays paused, never completed by this scheduler, while it may
      still be promoted: later results at its rung raise the quota. It is finished
      at its rung only when the controller completes it because nothing else can
      run (no trial running, no new trial coming, no promotion possible), in which
      case :meth:`choose_trial_to_run` returns None.
    * Trials reaching ``max_t`` stop (complete); with ``stop_last_trials=False`` they
      run on until they end on their own.
    * When the trial reaching a rung is itself the one ``get_job`` would promote next,
      it continues in place instead of pausing and resuming at once.
    * Results come in lock-step (``pauses_trials`` is True) so that a trial pauses at
      the rung itself. A function trainable should report a checkpoint with each
      result (``tune.report(metrics, checkpoint=...)``) and resume from
      ``tune.get_checkpoint()``; otherwise a promoted trial starts over and re-runs
      up to its rung (its repeated results are not judged again).

    Differences from Ray Tune: the stopping rule ranks the trial among the rung's
    results with its own included (Ray Tune compares it with the 1 - 1/eta quantile
    of the others' results, linearly interpolated); the decisions are the same except
    for values between two recorded results. The bracket draw is reproducible
    (``seed``). A NaN metric value ranks below every number.

    Args:
        time_attr: The result field that measures progress; any monotonically
            increasing field (``training_iteration``, ``time_total_s``, epochs...).
        metric: The metric to optimise; None takes TuneConfig's.
        mode: ``"min"`` or ``"max"``; None takes TuneConfig's.
        max_t: Trials stop when ``time_attr`` reaches this (> 0).
        grace_period: The first rung level (> 0 and <= max_t): no trial is stopped
            or paused before it.
        reduction_factor: eta (> 1): each rung keeps the top 1/eta of its results.
        brackets: How many brackets (>= 1); bracket s starts at the s-th rung level.
        stop_last_trials: Whether trials stop when they reach ``max_t``.
        type: ``"stopping"`` or ``"promotion"`` (see above).
        seed: Seeds the bracket draw (only used with several brackets).

    Example::

        ASHAScheduler(metric="loss", mode="min", max_t=81, grace_period=1,
                      reduction_factor=3, type="promotion")
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
        type: str = "stopping",  # noqa: A002 - Syne Tune's name for it
        seed: Optional[int] = None,
    ) -> None:
        owner = self.__class__.__name__
        self.metric = _check_name(owner, "metric", metric, allow_none=True)
        self.mode = _check_mode(owner, mode)
        super().__init__(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=brackets,
                         stop_last_trials=stop_last_trials, kind=type, seed=seed)

    def _value(self, trial_id: str, result: Mapping[str, Any], first: bool) -> Optional[float]:
        """The metric as a score where larger is better (NaN: -inf)."""
        assert self.metric is not None
        value = _read_number(self.__class__.__name__, "metric", self.metric, trial_id, result,
                             first)
        if value is None:
            return None
        if math.isnan(value):
            return -math.inf
        return value if self.mode == "max" else -value

    def _ranked(self, rung: Dict[str, float]) -> List[str]:
        """Best score first; equal scores in the order they reached the rung."""
        order = sorted(enumerate(rung.items()), key=lambda e: (-e[1][1], e[0]))
        return [tid for _, (tid, _) in order]

    def _num_ahead(self, rung: Dict[str, float], trial_id: str) -> int:
        """Strictly better scores only: a tie goes to the trial being judged."""
        mine = rung[trial_id]
        return sum(1 for v in rung.values() if v > mine)


#: Ray Tune's alias.
ASHAScheduler = AsyncHyperBandScheduler
