"""HyperBand: decisions worked out by hand from the paper's rules, then the same scheduler
driven by the controller (fake executor), on a real Ray, and across a killed driver.

The rules (Li et al., "Hyperband", JMLR 2018, Algorithm 1; R = max_t, eta = reduction_factor):

    s_max  = floor(log_eta R)
    n(s)   = ceil((s_max + 1) / (s + 1) * eta**s)       trials in bracket s
    r_i(s) = R * eta**(i - s), i = 0..s                  its milestones
    of the m trials that entered a rung, the best floor(m / eta) (at least 1) go on.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import pytest

import tune_core as tune
from schedulers.hb_bohb import HyperBandForBOHB
from schedulers.hyperband import HyperBandScheduler
from tune_core.error import TuneError
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.experiment_state import STATE_FILE, load_experiment_state
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import SchedulerDecision
from tune_core.search.search_algorithm import SearchAlgorithm, TrialSuggestion

from ..tune_core.execution.fake_executor import FakeExecutor
from . import _hyperband_experiment as exp

CONTINUE, PAUSE, STOP = SchedulerDecision.CONTINUE, SchedulerDecision.PAUSE, \
    SchedulerDecision.STOP


def snap(trial_id: str, status: TrialStatus = TrialStatus.RUNNING) -> TrialSnapshot:
    return TrialSnapshot(trial_id=trial_id, status=status, config={}, experiment_tag="",
                         last_result={}, resources=PlacementGroupFactory([{"CPU": 1}]),
                         has_checkpoint=True, num_failures=0)


def paused(*ids: str) -> List[TrialSnapshot]:
    return [snap(t, TrialStatus.PAUSED) for t in ids]


def hb(cls=HyperBandScheduler, **kwargs) -> HyperBandScheduler:
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return cls(**kwargs)


def add(sched: HyperBandScheduler, *ids: str) -> None:
    for t in ids:
        sched.on_trial_add(snap(t, TrialStatus.PENDING))


def report(sched: HyperBandScheduler, trial_id: str, it: float, score: Any) -> SchedulerDecision:
    return sched.on_trial_result(snap(trial_id), {"training_iteration": it, "score": score})


def ids(prefix: str, n: int) -> List[str]:
    return [f"{prefix}{i}" for i in range(n)]


# --- the plan ---------------------------------------------------------------------------------

def test_brackets_are_the_papers_for_R81_eta3():
    # s_max = floor(log3 81) = 4, so five brackets, most exploratory first:
    # s=4: n = ceil(5/5 * 3**4) = 81, r_0 = 81 * 3**-4 = 1
    # s=3: n = ceil(5/4 * 3**3) = ceil(33.75) = 34, r_0 = 81 * 3**-3 = 3
    # s=2: n = ceil(5/3 * 3**2) = 15, r_0 = 9
    # s=1: n = ceil(5/2 * 3**1) = ceil(7.5) = 8, r_0 = 27
    # s=0: n = ceil(5/1 * 3**0) = 5, r_0 = 81
    assert hb(max_t=81, reduction_factor=3).bracket_plan() == [
        (4, 81, [1, 3, 9, 27, 81]),
        (3, 34, [3, 9, 27, 81]),
        (2, 15, [9, 27, 81]),
        (1, 8, [27, 81]),
        (0, 5, [81]),
    ]


def test_milestones_end_at_max_t_when_it_is_no_power_of_eta():
    # max_t=100, eta=3: s_max = floor(log3 100) = floor(4.19) = 4 and r_i = 100 * 3**(i-4)
    # = 1.23, 3.70, 11.1, 33.3, 100, rounded to whole iterations: 1, 4, 11, 33, 100.
    # (Ray Tune multiplies the rounded-down r_0 = 1 by 3 and ends at 81 < max_t, ray#11695.)
    plan = hb(max_t=100, reduction_factor=3).bracket_plan()
    assert plan[0] == (4, 81, [1, 4, 11, 33, 100])
    assert all(milestones[-1] == 100 for _, _, milestones in plan)
    # a float max_t keeps exact milestones: 10 * 3**-2 = 1.11..., 3.33..., 10.0
    _, _, milestones = hb(max_t=10.0, reduction_factor=3).bracket_plan()[0]
    assert milestones == pytest.approx([10 / 9, 10 / 3, 10.0])


@pytest.mark.parametrize("s,expected_survivors", [
    # the paper's Table 1 (R=81, eta=3): n_i per rung i, n_{i+1} = floor(n_i / 3)
    (4, [81, 27, 9, 3, 1]),
    (3, [34, 11, 3, 1]),
    (2, [15, 5, 1]),
    (1, [8, 2]),
    (0, [5]),
])
def test_full_iteration_matches_the_papers_table(s, expected_survivors):
    sched = hb(max_t=81, reduction_factor=3)
    plan = sched.bracket_plan()
    index = [p[0] for p in plan].index(s)
    for b, (_, n, _) in enumerate(plan[:index + 1]):  # fill the brackets before it, then it
        add(sched, *ids(f"b{b}_", n))
    _, n, milestones = plan[index]
    trials = ids(f"b{index}_", n)
    scores = {t: (i * 37) % n for i, t in enumerate(trials)}  # a scrambled ranking
    running, reached = list(trials), []
    for milestone in milestones:
        reached.append(len(running))
        decisions = {t: report(sched, t, milestone, scores[t]) for t in running}
        # the rung's last arrival, if it wins, goes straight on; then the paused winners
        # are offered to run, one by one (the losers never are)
        promoted = [t for t, d in decisions.items() if d == CONTINUE]
        waiting = [t for t, d in decisions.items() if d == PAUSE]
        losers = set(sched.trials_to_stop())
        while True:
            chosen = sched.choose_trial_to_run(paused(*[t for t in waiting
                                                        if t not in promoted]))
            if chosen is None:
                break
            assert chosen not in losers
            promoted.append(chosen)
        best = sorted(running, key=lambda t: -scores[t])[:len(promoted)]
        assert set(promoted) == set(best)
        running = sorted(promoted, key=trials.index)
    assert running == []  # all stopped at max_t
    assert reached == expected_survivors


# --- a scripted trace, decision by decision ---------------------------------------------------

def test_trace_max_t9_eta3():
    # s_max = floor(log3 9) = 2
    # bracket 0: s=2, n = ceil(3/3 * 9) = 9 trials, milestones 9*3**-2, 9*3**-1, 9 = 1, 3, 9
    # bracket 1: s=1, n = ceil(3/2 * 3) = ceil(4.5) = 5 trials, milestones 3, 9
    # bracket 2: s=0, n = ceil(3/1 * 1) = 3 trials, milestone 9
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    assert [sched.bracket_of(x) for x in t] == [0] * 9

    # rung 0 (r=1). Scores (max):    t0 t1 t2 t3 t4 t5 t6 t7 t8
    #                                 5  1  9  3  7  2  8  4  6
    # Nine entered: keep floor(9/3) = 3, the best: t2 (9), t6 (8), t4 (7).
    scores = [5, 1, 9, 3, 7, 2, 8, 4, 6]
    for i in range(8):  # t8 is still running: everyone who arrives pauses
        assert report(sched, t[i], 1, scores[i]) == PAUSE
    assert sched.trials_to_stop() == []
    assert sched.choose_trial_to_run(paused(*t[:8])) is None  # nothing to run yet...
    assert sched.trials_to_stop() == []                         # ...and nothing decided
    # t8's result completes the rung; 6 is 4th best, so t8 stops at once
    assert report(sched, t[8], 1, 6) == STOP
    assert sorted(sched.trials_to_stop()) == ["t0", "t1", "t3", "t5", "t7"]
    # the winners resume in creation order; losers are never offered
    assert sched.choose_trial_to_run(paused(*t[:8])) == "t2"
    assert sched.choose_trial_to_run(paused("t0", "t1", "t3", "t4", "t5", "t6", "t7")) == "t4"
    assert sched.choose_trial_to_run(paused("t0", "t1", "t3", "t5", "t6", "t7")) == "t6"

    # rung 1 (r=3): three entered, keep floor(3/3) = 1.
    assert report(sched, "t2", 2, 9.5) == CONTINUE
    assert report(sched, "t2", 3, 10) == PAUSE
    assert report(sched, "t6", 2, 10.5) == CONTINUE
    assert report(sched, "t6", 3, 11) == PAUSE
    assert report(sched, "t4", 2, 11.5) == CONTINUE
    # t4 completes the rung with 12 > 11 > 10: it is the one that goes on, without a pause
    assert report(sched, "t4", 3, 12) == CONTINUE
    assert sorted(sched.trials_to_stop()) == ["t0", "t1", "t2", "t3", "t5", "t6", "t7"]
    for it in range(4, 9):
        assert report(sched, "t4", it, 12 + it) == CONTINUE
    assert report(sched, "t4", 9, 30) == STOP  # max_t
    assert sched.rung_history()[0] == [
        (1, t, ["t2", "t4", "t6"]),
        (3, ["t2", "t4", "t6"], ["t4"]),
    ]

    # The 10th trial opens bracket 1 (s=1, n=5), the 15th bracket 2 (s=0, n=3), the 18th a
    # new HyperBand iteration (s=2 again).
    u = ids("u", 9)
    add(sched, *u)
    assert [sched.bracket_of(x) for x in u] == [1] * 5 + [2] * 3 + [3]
    # bracket 1: milestone 3; five entered, keep floor(5/3) = 1
    assert report(sched, "u0", 1, 100) == CONTINUE  # below its first milestone (3)
    for x, s in zip(u[:4], [1, 5, 3, 2]):
        assert report(sched, x, 3, s) == PAUSE
    assert report(sched, "u4", 3, 4) == STOP   # 4th of 5: u1 (5) is the only one to go on
    assert sorted(sched.trials_to_stop())[-3:] == ["u0", "u2", "u3"]
    assert sched.choose_trial_to_run(paused(*u[:4])) == "u1"
    # bracket 2 (s=0): its only milestone is max_t, so it stops nobody early
    assert report(sched, "u5", 9, 1) == STOP
    # bracket 3 (s=2) starts at 1 again
    assert report(sched, "u8", 1, 1) == PAUSE


def test_losers_still_listed_until_they_complete():
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    for i, x in enumerate(t):
        report(sched, x, 1, i)  # t8 (8) completes the rung and goes on with t7, t6
    assert sorted(sched.trials_to_stop()) == t[:6]
    for x in t[:6]:
        sched.on_trial_complete(snap(x, TrialStatus.TERMINATED), None)
    assert sched.trials_to_stop() == []


def test_paused_losers_are_never_resumed():
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    for i, x in enumerate(t):
        report(sched, x, 1, i)          # t8 completes rung 0: t6, t7, t8 go on
    assert sched.choose_trial_to_run(paused(*t[:8])) == "t6"
    assert sched.choose_trial_to_run(paused(*t[:6], "t7")) == "t7"
    assert [report(sched, x, 3, 0) for x in ("t6", "t7", "t8")] == [PAUSE, PAUSE, STOP]
    # rung 1: a three-way tie; the oldest, t6, goes on
    assert sched.choose_trial_to_run(paused(*t[:6], "t6", "t7")) == "t6"
    assert report(sched, "t6", 9, 0) == STOP   # max_t
    # Only losers are left: None, so that the controller completes them where they are.
    losers = paused(*t[:6], "t7")
    assert sched.choose_trial_to_run(losers) is None
    assert sched.choose_trial_to_run(losers) is None
    assert sorted(sched.trials_to_stop()) == t[:6] + ["t7"]


def test_bracket_that_cannot_fill_is_decided_with_the_trials_it_has():
    # 4 trials in bracket 0 (n=9, milestones 1, 3, 9) and no more to come.
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 4)
    add(sched, *t)
    for x, s in zip(t, [3, 1, 4, 2]):
        assert report(sched, x, 1, s) == PAUSE  # the bracket waits for 5 more trials
    # A PENDING candidate would mean a new trial came: the bracket keeps waiting for it.
    add(sched, "t4")
    assert sched.choose_trial_to_run(paused(*t) + [snap("t4", TrialStatus.PENDING)]) == "t4"
    assert report(sched, "t4", 1, 0) == PAUSE
    t.append("t4")
    # No new trial (the controller asked the search and got none): the bracket closes with
    # m = 5 and keeps max(1, floor(5/3)) = 1: t2 (4).
    assert sched.choose_trial_to_run(paused(*t)) == "t2"
    assert sorted(sched.trials_to_stop()) == ["t0", "t1", "t3", "t4"]
    # rung 1 (r=3): one entered, keep max(1, floor(1/3)) = 1, so t2 runs to max_t
    assert report(sched, "t2", 3, 5) == CONTINUE
    assert report(sched, "t2", 9, 6) == STOP
    # and the next trial opens a new bracket (s=1), not the closed one
    add(sched, "n0")
    assert sched.bracket_of("n0") == 1


def test_trials_that_end_or_error_still_count_but_cannot_win():
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    # t1 errors before any result; t3 is stopped by a stopper at iteration 1 (the
    # scheduler hears only on_trial_complete); t5 ends by itself at its milestone.
    sched.on_trial_error(snap("t1", TrialStatus.ERROR))
    sched.on_trial_complete(snap("t3", TrialStatus.TERMINATED), {"score": 100})
    scores = {"t0": 1, "t2": 2, "t4": 3, "t5": 9, "t6": 4, "t7": 5}
    for x, s in scores.items():
        assert report(sched, x, 1, s) == PAUSE
    sched.on_trial_complete(snap("t5", TrialStatus.TERMINATED), {"score": 9})
    # m = 9 entered, so floor(9/3) = 3 go on, taken among those who can: t8 (6), t7, t6
    assert report(sched, "t8", 1, 6) == CONTINUE
    assert sched.rung_history()[0][0] == (1, t, ["t6", "t7", "t8"])
    assert sorted(sched.trials_to_stop()) == ["t0", "t2", "t4"]
    # at rung 1 (r=3) two of the three error: the last one goes on although it is alone
    sched.on_trial_error(snap("t6", TrialStatus.ERROR))
    sched.on_trial_error(snap("t8", TrialStatus.ERROR))
    assert report(sched, "t7", 3, 0) == CONTINUE
    assert report(sched, "t7", 9, 0) == STOP


def test_rung_whose_trials_all_end_finishes_the_bracket():
    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    for x in t:
        sched.on_trial_complete(snap(x, TrialStatus.TERMINATED), None)
    assert sched.choose_trial_to_run([]) is None
    assert sched.rung_history()[0] == [(1, t, [])]
    add(sched, "next")
    assert sched.bracket_of("next") == 1


def test_min_mode_and_nan_metrics():
    sched = hb(max_t=9, reduction_factor=3, mode="min")
    t = ids("t", 9)
    add(sched, *t)
    # lower is better; NaN and a missing metric rank last; ties go to the older trial
    values = [5.0, float("nan"), 0.5, 2.0, None, 0.5, 7.0, 3.0, 1.0]
    for x, v in zip(t[:8], values[:8]):
        sched.on_trial_result(snap(x), {"training_iteration": 1, **({} if v is None else
                                                                    {"score": v})})
    assert report(sched, "t8", 1, 1.0) == CONTINUE  # 0.5 (t2), 0.5 (t5), 1.0 (t8)
    assert sched.rung_history()[0][0][2] == ["t2", "t5", "t8"]


def test_stop_last_trials_false_lets_the_best_run_on():
    sched = hb(max_t=3, reduction_factor=3, stop_last_trials=False)
    # s_max = 1: bracket 0 has n = ceil(2/2 * 3) = 3 trials and milestones 1, 3
    t = ids("t", 3)
    add(sched, *t)
    report(sched, "t0", 1, 1)
    report(sched, "t1", 1, 2)
    assert report(sched, "t2", 1, 3) == CONTINUE
    assert report(sched, "t2", 3, 3) == CONTINUE   # max_t reached: runs on
    assert report(sched, "t2", 50, 3) == CONTINUE
    sched.on_trial_complete(snap("t2", TrialStatus.TERMINATED), None)


def test_time_attr_may_be_any_growing_field():
    sched = hb(time_attr="time_total_s", max_t=10.0, reduction_factor=3)
    # milestones 10/9, 10/3, 10 seconds; bracket 0 holds 9 trials
    t = ids("t", 9)
    add(sched, *t)
    for i, x in enumerate(t):
        decision = sched.on_trial_result(snap(x), {"time_total_s": 0.5, "score": i})
        assert decision == CONTINUE
    for i, x in enumerate(t[:8]):
        assert sched.on_trial_result(snap(x), {"time_total_s": 1.2, "score": i}) == PAUSE


def test_pickled_mid_bracket_continues_identically():
    def second_half(sched):
        out = []
        out.append(report(sched, "t8", 1, 4))          # completes rung 0
        out.append(sorted(sched.trials_to_stop()))
        candidates = paused(*ids("t", 8))
        for _ in range(3):
            chosen = sched.choose_trial_to_run(candidates)
            out.append(chosen)
            candidates = [c for c in candidates if c.trial_id != chosen]
        for x, s in [("t2", 1), ("t6", 3), ("t4", 2)]:
            out.append(report(sched, x, 3, s))
        add(sched, "u0", "u1")
        out.append([sched.bracket_of("u0"), sched.bracket_of("u1")])
        out.append(report(sched, "t6", 9, 0))
        out.append(sched.debug_string())
        return out

    sched = hb(max_t=9, reduction_factor=3)
    t = ids("t", 9)
    add(sched, *t)
    for x, s in zip(t[:8], [5, 1, 9, 3, 7, 2, 8, 0]):
        report(sched, x, 1, s)
    restored = pickle.loads(pickle.dumps(sched))
    via_state = hb(max_t=9, reduction_factor=3)
    via_state.set_state(pickle.loads(pickle.dumps(sched.get_state())))
    expected = second_half(sched)
    assert second_half(restored) == expected
    assert second_half(via_state) == expected
    assert expected[0] == STOP and expected[2:5] == ["t2", "t4", "t6"]


@pytest.mark.parametrize("cls", [HyperBandScheduler, HyperBandForBOHB])
@pytest.mark.parametrize("kwargs, expected", [
    ({"max_t": 0}, ["max_t=0) is not valid", "> 0"]),
    ({"max_t": float("nan")}, ["max_t=nan", "> 0"]),
    ({"reduction_factor": 1}, ["reduction_factor=1) is not valid", "> 1"]),
    ({"mode": "maximum"}, ["mode='maximum'", '"min", "max"']),
    ({"metric": 3}, ["metric=3", "name of a reported result field"]),
    ({"time_attr": ""}, ["time_attr=''", "name of a reported result field"]),
    ({"stop_last_trials": "yes"}, ["stop_last_trials='yes'", "True or False"]),
])
def test_arguments_are_checked(cls, kwargs, expected):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert str(err.value).startswith(f"{cls.__name__}(")
    for part in expected:
        assert part in str(err.value)


def test_no_metric_or_mode_is_an_error_before_the_first_trial():
    with pytest.raises(ValueError) as err:
        HyperBandScheduler().on_trial_add(snap("t0"))
    assert "HyperBandScheduler needs a metric and a mode" in str(err.value)
    assert "TuneConfig(metric=..., mode=...)" in str(err.value)


def test_missing_time_attr_is_a_clear_error():
    sched = hb(time_attr="epochs", max_t=9)
    add(sched, "t0")
    with pytest.raises(TuneError) as err:
        report(sched, "t0", 1, 1.0)
    message = str(err.value)
    assert "time_attr='epochs'" in message and "t0" in message
    assert "'score', 'training_iteration'" in message  # what it did report


def test_metric_and_mode_from_tune_config():
    sched = HyperBandScheduler(max_t=9)
    assert sched.set_search_properties("acc", "max")
    assert (sched.metric, sched.mode) == ("acc", "max")
    assert not HyperBandScheduler(metric="loss").set_search_properties("acc", "max")


# --- HyperBandForBOHB ---------------------------------------------------------------------------

def test_bohb_results_carry_their_budget():
    sched = hb(HyperBandForBOHB, max_t=9, reduction_factor=3)
    assert sched.budget_for_new_trial() == 1     # bracket 0 (s=2) starts at r_0 = 1
    assert sched.budgets() == [1, 3, 9]
    t = ids("t", 9)
    add(sched, *t)
    assert sched.budget_for_new_trial() == 3     # bracket 0 is full: bracket 1 starts at 3
    results = []
    for i, x in enumerate(t):
        result = {"training_iteration": 1, "score": i}
        decision = sched.on_trial_result(snap(x), result)
        results.append((decision, result["hyperband_info"]))
    assert results[0] == (PAUSE, {"decision": "PAUSE", "bracket": 0, "budget": 1})
    assert results[8] == (CONTINUE, {"decision": "CONTINUE", "bracket": 0, "budget": 1})
    below = {"training_iteration": 2, "score": 0}
    assert sched.on_trial_result(snap("t8"), below) == CONTINUE
    assert below["hyperband_info"] == {"decision": "CONTINUE", "bracket": 0}  # no budget
    # a trial a little past its milestone is still observed at the rung's budget
    late = {"training_iteration": 4, "score": 0}
    assert sched.on_trial_result(snap("t8"), late) == PAUSE
    assert late["hyperband_info"]["budget"] == 3


def test_bohb_decides_like_hyperband():
    a, b = hb(max_t=9), hb(HyperBandForBOHB, max_t=9)
    for sched in (a, b):
        add(sched, *ids("t", 11))
    trace = [(x, 1, (i * 5) % 9) for i, x in enumerate(ids("t", 9))] + \
        [("t9", 3, 1), ("t10", 3, 2)]
    assert [report(a, *step) for step in trace] == [report(b, *step) for step in trace]
    assert a.trials_to_stop() == b.trials_to_stop()


# --- driven by the controller (fake executor, no Ray) -------------------------------------------

class ListSearch(SearchAlgorithm):
    """Hands out a fixed list of configs; with ``max_live`` it holds back (returns None)
    while that many of its trials have not completed, as a concurrency limiter does."""

    def __init__(self, configs: List[Dict[str, Any]], max_live: int = 0) -> None:
        self.configs = list(configs)
        self.max_live = max_live
        self.live: set = set()

    def next_trial(self, trial_id: str) -> Optional[TrialSuggestion]:
        if not self.configs or (self.max_live and len(self.live) >= self.max_live):
            return None
        self.live.add(trial_id)
        return TrialSuggestion(self.configs.pop(0), experiment_tag=trial_id[-2:])

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self.live.discard(trial_id)

    def is_finished(self) -> bool:
        return not self.configs


class StopsListedTrials(TuneController):
    """The controller with the engine change the report proposes: before choosing what to
    run, it ends the waiting trials that the scheduler lists in ``trials_to_stop()``."""

    def _create_and_start_trials(self) -> None:
        for trial_id in self._scheduler.trials_to_stop():
            trial = self._waiting.get(trial_id)
            if trial is not None:
                self._complete(trial)
        super()._create_and_start_trials()


def curve(x: float, n: int = 12) -> List[Dict[str, float]]:
    """A trial's scripted results: ``x * (1 - 0.5**i)``, so larger x leads at every i."""
    return [{"score": x * (1 - 0.5 ** i)} for i in range(1, n + 1)]


# 14 trials, max_t=9, eta=3 (bracket plan as in test_trace_max_t9_eta3):
# bracket 0 (n=9, milestones 1, 3, 9): t0..t8
#   x =         .15 .85 .35 .95 .05 .55 .75 .25 .45
#   r=1: keep 3 of 9: .95 (t3), .85 (t1), .75 (t6); r=3: keep 1 of 3: .95 (t3) -> 9
# bracket 1 (n=5, milestones 3, 9): t9..t13
#   x =         .6 .9 .1 .7 .3
#   r=3: keep floor(5/3) = 1: .9 (t10) -> 9
XS_14 = [.15, .85, .35, .95, .05, .55, .75, .25, .45, .6, .9, .1, .7, .3]
ALLOWED_14 = [1, 3, 1, 9, 1, 1, 3, 1, 1, 3, 9, 3, 3, 3]


def run_controller(tmp_path, xs, controller_cls=TuneController, max_live=0, cpus=2.0,
                   scheduler_cls=HyperBandScheduler, search_cls=None):
    configs = [{"x": x, "results": curve(x), "checkpoint_every": 1} for x in xs]
    executor = FakeExecutor(cpus=cpus)
    sched = scheduler_cls(metric="score", mode="max", max_t=9, reduction_factor=3)
    search = (search_cls or ListSearch)(configs, max_live)
    ctrl = controller_cls(executor=executor, search_alg=search,
                          scheduler=sched, experiment_path=str(tmp_path), poll_timeout=0)
    for _ in range(2000):
        if ctrl.is_finished():
            break
        ctrl.step()
    assert ctrl.is_finished(), "the experiment did not end"
    ctrl.cleanup()
    return ctrl, executor, sched


def finals(ctrl) -> List[int]:
    return [t.last_result.get("training_iteration", 0) for t in ctrl.trials]


def test_controller_pauses_at_milestones_and_resumes_the_best(tmp_path):
    ctrl, executor, sched = run_controller(tmp_path, XS_14)
    assert [t.config["x"] for t in ctrl.trials] == XS_14
    assert all(t.status == TrialStatus.TERMINATED for t in ctrl.trials)
    assert finals(ctrl) == ALLOWED_14
    # the winners were paused at each milestone and resumed from the checkpoint there
    by_id = {t.trial_id: t for t in ctrl.trials}
    resumes = {}
    for launch in executor.launches:
        if launch.restored_iteration:
            resumes.setdefault(by_id[launch.trial_id].config["x"], []).append(
                launch.restored_iteration)
    assert resumes == {.95: [1, 3], .85: [1], .75: [1], .9: [3]}  # no loser resumed
    assert sched.rung_history()[1] == [
        (3, [t.trial_id for t in ctrl.trials[9:]], [ctrl.trials[10].trial_id])]


def test_controller_that_stops_listed_trials_ends_losers_at_their_milestone(tmp_path):
    ctrl, executor, _ = run_controller(tmp_path, XS_14, controller_cls=StopsListedTrials)
    assert finals(ctrl) == ALLOWED_14
    assert sum(finals(ctrl)) == 42  # 9 trials * 1 + 3 * 2 more + 6 more; 5 * 3 + 6 more
    # every resume is a promotion: no loser is ever started again
    assert sorted(launch.restored_iteration for launch in executor.launches
                  if launch.restored_iteration) == [1, 1, 1, 3, 3]


def test_controller_ends_a_run_too_small_for_its_bracket(tmp_path):
    # 4 trials in bracket 0 (n=9): it closes when the search has nothing more;
    # r=1: keep max(1, floor(4/3)) = 1 (x=.8); r=3: keep max(1, floor(1/3)) = 1 -> 9
    ctrl, _, sched = run_controller(tmp_path, [.2, .8, .5, .4])
    allowed = [1, 9, 1, 1]
    assert finals(ctrl) == allowed
    assert len(sched.rung_history()) == 1
    ctrl, _, _ = run_controller(tmp_path / "b", [.2, .8, .5, .4],
                                controller_cls=StopsListedTrials)
    assert finals(ctrl) == allowed


def test_controller_ends_when_the_search_holds_back_for_paused_trials(tmp_path):
    # The search gives a new trial only while fewer than 2 of its trials are unfinished,
    # and paused trials are unfinished: every bracket closes early, but the winner of each
    # keeps running, so the losers never fill the limit. The experiment finishes:
    # bracket 0 (n=9, r=1, 3, 9) closes with .1 and .9: keep max(1, floor(2/3)) = 1: .9;
    # bracket 1 (n=5, r=3, 9) closes with .3 alone, which goes on; bracket 2 (s=0, r=9)
    # takes .7 and .5 and stops nobody early.
    xs = [.1, .9, .3, .7, .5]
    allowed = [1, 9, 9, 9, 9]
    ctrl, _, sched = run_controller(tmp_path, xs, max_live=2)
    assert all(t.status == TrialStatus.TERMINATED for t in ctrl.trials)
    assert [sched.bracket_of(t.trial_id) for t in ctrl.trials] == [0, 0, 1, 2, 2]
    assert finals(ctrl) == allowed
    ctrl, _, _ = run_controller(tmp_path / "b", xs, controller_cls=StopsListedTrials,
                                max_live=2)
    assert finals(ctrl) == allowed


class BudgetRecorder(ListSearch):
    """What a BOHB searcher would take in: (trial, budget) of every annotated result."""

    def __init__(self, configs, max_live=0):
        super().__init__(configs, max_live)
        self.seen: Dict[str, set] = {}

    def _take(self, trial_id, result):
        budget = (result or {}).get("hyperband_info", {}).get("budget")
        if budget is not None:
            self.seen.setdefault(trial_id, set()).add(budget)

    def on_trial_result(self, trial_id, result):
        self._take(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._take(trial_id, result)
        super().on_trial_complete(trial_id, result, error)


def test_bohb_searcher_sees_every_milestone_result(tmp_path):
    ctrl, _, _ = run_controller(tmp_path, XS_14, scheduler_cls=HyperBandForBOHB,
                                search_cls=BudgetRecorder)
    assert finals(ctrl) == ALLOWED_14   # the same decisions as HyperBandScheduler
    seen = ctrl.search_alg.seen
    # bracket 0's milestones are 1, 3, 9 and bracket 1's 3, 9: each trial is observed at
    # every milestone up to where it stopped, STOPped ones through on_trial_complete
    for i, (trial, allowed) in enumerate(zip(ctrl.trials, ALLOWED_14)):
        milestones = [1, 3, 9] if i < 9 else [3, 9]
        assert seen[trial.trial_id] == {m for m in milestones if m <= allowed}, i


# --- on a real Ray ------------------------------------------------------------------------------

def result_rows(path: str) -> List[Dict[str, Any]]:
    with open(os.path.join(path, "result.json")) as f:
        return [json.loads(line) for line in f]


def check_hyperband_run(results) -> None:
    """Every trial ended where its bracket allows (see _hyperband_experiment), and every
    resume continued from the checkpoint it paused at."""
    assert results.num_errors == 0
    assert sorted(r.config["x"] for r in results) == sorted(exp.XS)
    for r in results:
        x, final = r.config["x"], r.metrics["training_iteration"]
        assert final == exp.ALLOWED[x], (x, final)
        rows = result_rows(r.path)
        assert [row["training_iteration"] for row in rows] == list(range(1, final + 1)), x
        assert all(row["epoch"] == row["training_iteration"] for row in rows), x
        assert r.metrics["score"] == pytest.approx(exp.score(x, final))


def test_end_to_end_on_ray(ray_local, tmp_path):
    results = exp.make_tuner(str(tmp_path), "hb").fit()
    check_hyperband_run(results)


def test_interrupted_run_restores_with_its_brackets(ray_local, tmp_path):
    storage = str(tmp_path)
    path = os.path.join(storage, "hb")

    def saved_mid_bracket() -> bool:
        """The saved state has bracket 0's first rung decided (a trial is past r=1, the
        others wait or lost while paused) and the run is not over."""
        try:
            with open(os.path.join(path, STATE_FILE)) as f:
                trials = json.load(f)["trials"]
        except (OSError, ValueError, KeyError):
            return False
        iters = [t["last_result"].get("training_iteration", 0) for t in trials]
        return any(i >= 2 for i in iters) and \
            not any(t["status"] == "TERMINATED" and i == exp.MAX_T
                    for t, i in zip(trials, iters))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # Slower steps than the in-process run, so that the kill lands mid-run.
    proc = subprocess.Popen([sys.executable, exp.__file__, storage, "hb", "0.6"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while not saved_mid_bracket():
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "the experiment never reached the kill point"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
        proc.wait()
    # what the restore starts from: HyperBand mid-run, its first rung decided
    _, state = load_experiment_state(path)
    saved = state["scheduler"]
    assert isinstance(saved, HyperBandScheduler)
    history = saved.rung_history()
    assert history[0] and history[0][0][0] == 1 and len(history[0][0][2]) == 2

    results = tune.Tuner.restore(path, exp.train_fn).fit()
    check_hyperband_run(results)
