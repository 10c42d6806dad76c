"""The median stopping rule's decisions on scripted traces, worked out by hand.

Rule (Vizier; Ray Tune's semantics): at time t >= grace_period, a trial stops when its
best value so far is strictly worse than the median, over the other trials that reported
up to t or later, of their running means over [grace_period, t]; with fewer than
min_samples_required such trials it continues, or yields (PAUSE) if others wait to run.
"""

from __future__ import annotations

import pickle

import pytest

import tune_core as tune
from tune_core.experiment.trial import TrialStatus

from schedulers import MedianStoppingRule
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import make, step_until_finished

from .e2e import Deadline, checkpointing_trainable, rows
from .sim import CONTINUE, PAUSE, PAUSED, PENDING, STOP, snapshot

TRACE = {  # acc at t = 1, 2, 3, 4 (mode max); grace_period=2, min_samples_required=2
    "A": [1, 2, 4, 6],
    "B": [2, 2, 2, 2],
    "C": [0, 1, 1, 1],
    "D": [3, 0.5, 0.5, 0.5],
    "E": [1, 2.4, 2.4, 2.4],
    "F": [1, 2.1, 2.1, 2.1],
}
# Running means over [2, t] (a trial counts at t only if it reported up to t):
#   A: t=2: 2      t=3: (2+4)/2 = 3        t=4: (2+4+6)/3 = 4
#   B: 2, 2, 2     C: 1 (it stops at t=2)  D: 0.5, 0.5, 0.5     E: 2.4, 2.4, 2.4
EXPECTED = {
    # A: no other trial has reported yet -> 0 samples < 2: continue (nobody waits).
    "A": [CONTINUE] * 4,
    # B: t>=2: only A -> 1 sample < 2: continue.
    "B": [CONTINUE] * 4,
    # C: t=2: means A 2, B 2 -> median 2; best max(0, 1) = 1 < 2 -> STOP.
    "C": [CONTINUE, STOP],
    # D: t=2: A 2, B 2, C 1 -> median 2; best 3 (its t=1 value) >= 2 -> continue.
    #    t=3: A 3, B 2 (C reported only up to 2) -> median 2.5; best 3 -> continue.
    #    t=4: A 4, B 2 -> median 3; best 3 is not strictly worse -> continue.
    "D": [CONTINUE] * 4,
    # E: t=2: A 2, B 2, C 1, D 0.5 -> median (1 + 2) / 2 = 1.5; best 2.4 -> continue.
    #    t=3: A 3, B 2, D 0.5 -> median 2; t=4: A 4, B 2, D 0.5 -> median 2: continue.
    "E": [CONTINUE] * 4,
    # F: t=2: A 2, B 2, C 1, D 0.5, E 2.4 -> median 2; best 2.1 -> continue.
    #    t=3: A 3, B 2, D 0.5, E 2.4 -> median (2 + 2.4) / 2 = 2.2; best 2.1 < 2.2 -> STOP.
    "F": [CONTINUE, CONTINUE, STOP],
}


def run_trace(scheduler, metric="acc", sign=1):
    """Each trial runs alone, added as it starts (so nobody waits and nothing yields)."""
    decisions = {}
    for tid, values in TRACE.items():
        scheduler.on_trial_add(snapshot(tid, PENDING))
        got = decisions[tid] = []
        result = {}
        for t, value in enumerate(values, start=1):
            result = {"training_iteration": t, metric: sign * value}
            got.append(scheduler.on_trial_result(snapshot(tid), result))
            if got[-1] != CONTINUE:
                break
        if got[-1] != PAUSE:  # ran to its end, or stopped
            scheduler.on_trial_complete(snapshot(tid, TrialStatus.TERMINATED), result)
    return decisions


def rule(**kwargs):
    kwargs = {"time_attr": "training_iteration", "metric": "acc", "mode": "max",
              "grace_period": 2, "min_samples_required": 2, **kwargs}
    return MedianStoppingRule(**kwargs)


def test_decisions_on_the_trace():
    assert run_trace(rule()) == EXPECTED


def test_min_mode_mirrors_max_mode():
    assert run_trace(rule(metric="loss", mode="min"), metric="loss", sign=-1) == EXPECTED


def test_min_samples_required_holds_the_median_back():
    # With 3 samples required, C at t=2 sees only A and B: it continues; it is judged
    # nowhere later (at t=3, 4 the same two trials), so it runs to its end.
    decisions = run_trace(rule(min_samples_required=3))
    assert decisions["C"] == [CONTINUE] * 4
    # F at t=3: A 3, B 2, C 1, D 0.5, E 2.4 -> median 2; best 2.1 -> continue.
    assert decisions["F"] == [CONTINUE] * 4


def test_grace_period_is_the_first_judged_time():
    # grace_period=3: C at t=3 (means over [3, 3]: A 4, B 2) -> median 3; best 1 -> STOP.
    decisions = run_trace(rule(grace_period=3))
    assert decisions["C"] == [CONTINUE, CONTINUE, STOP]


def test_soft_stop_pauses_and_resumes_only_when_nothing_else_waits():
    s = rule(hard_stop=False)
    decisions = run_trace(s)
    assert decisions["C"] == [CONTINUE, PAUSE] and decisions["F"] == [CONTINUE, CONTINUE, PAUSE]
    # New trials, and trials that yielded, go before the soft-stopped ones.
    s.on_trial_add(snapshot("G", PENDING))
    assert s.choose_trial_to_run([snapshot("C", PAUSED), snapshot("F", PAUSED),
                                  snapshot("G", PENDING)]) == "G"
    assert s.choose_trial_to_run([snapshot("C", PAUSED), snapshot("F", PAUSED)]) == "C"
    # A soft-stopped trial that resumes runs to its end without being judged again.
    assert s.on_trial_result(snapshot("C"), {"training_iteration": 3, "acc": -100}) == CONTINUE


def test_yields_to_waiting_trials_while_samples_are_too_few():
    # grace 1, 1 sample needed, min_time_slice 2: a trial yields at most every 2 steps.
    s = rule(grace_period=1, min_samples_required=1, min_time_slice=2)
    s.on_trial_add(snapshot("A", PENDING))
    s.on_trial_add(snapshot("B", PENDING))
    assert s.choose_trial_to_run([snapshot("A", PENDING), snapshot("B", PENDING)]) == "A"
    # A t=1: no sample; B waits; 1 - (-inf) > 2 -> yield (last pause at 1).
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 1, "acc": 1}) == PAUSE
    assert s.choose_trial_to_run([snapshot("A", PAUSED), snapshot("B", PENDING)]) == "B"
    # B t=1: A reported up to 1 -> 1 sample, median 1; best 2 >= 1 -> continue.
    assert s.on_trial_result(snapshot("B"), {"training_iteration": 1, "acc": 2}) == CONTINUE
    # B t=2: A has not reached 2 -> no sample; A waits -> yield.
    assert s.on_trial_result(snapshot("B"), {"training_iteration": 2, "acc": 2}) == PAUSE
    assert s.choose_trial_to_run([snapshot("A", PAUSED), snapshot("B", PAUSED)]) == "A"
    # A t=2: B's mean over [1, 2] = 2; best 3 -> continue.
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 2, "acc": 3}) == CONTINUE
    # A t=3: no sample, B waits, but 3 - 1 = 2 is not > 2: continue.
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 3, "acc": 4}) == CONTINUE
    # A t=4: 4 - 1 = 3 > 2 -> yield again.
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 4, "acc": 5}) == PAUSE
    assert s.num_yields == 3
    # The state pickles mid-run and decides the same afterwards.
    twin = pickle.loads(pickle.dumps(s))
    for sched in (s, twin):
        assert sched.choose_trial_to_run([snapshot("A", PAUSED), snapshot("B", PAUSED)]) == "A"


def test_no_yield_when_nobody_waits_or_only_soft_stopped_trials_wait():
    s = rule(grace_period=1, min_samples_required=5, hard_stop=False)
    s.on_trial_add(snapshot("A", PENDING))
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 1, "acc": 1}) == CONTINUE
    s._soft_stopped.add("Z")     # a trial paused below the median does not count as waiting
    s._state["Z"] = "stopped"
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 2, "acc": 1}) == CONTINUE


# --- with the controller and the fake executor ---------------------------------------------------
def test_with_the_controller_soft_stopped_trials_finish_last(tmp_path):
    """hard_stop=False, one CPU: trials yield while samples are few, the ones below the
    median are paused, and everything ends TERMINATED with contiguous results."""
    configs = [{"results": [{"acc": v} for v in values]} for values in TRACE.values()]
    scheduler = rule(hard_stop=False)
    ctrl, executor, _, rec = make(configs, tmp_path, scheduler=scheduler,
                                  executor=FakeExecutor(cpus=1))
    step_until_finished(ctrl, 500)
    assert ctrl.is_finished()
    assert [t.status for t in ctrl.trials] == [TrialStatus.TERMINATED] * 6
    for trial in ctrl.trials:
        seen = [e[2] for e in rec.events if e[0] == "result" and e[1] == trial.trial_id]
        assert seen == [1, 2, 3, 4]  # paused and resumed where it stopped, never repeated
    assert scheduler.num_stopped >= 1 and scheduler.num_yields >= 1
    resumed = [launch.trial_id for launch in executor.launches if launch.restored_iteration]
    assert resumed  # yields and soft stops resumed from checkpoints
    # The soft-stopped trials were resumed last: after every other trial had finished.
    soft = [t for t in scheduler._soft_stopped]
    last_launches = [launch.trial_id for launch in executor.launches][-len(soft):]
    assert sorted(last_launches) == sorted(soft)


# --- end to end on a real local Ray --------------------------------------------------------------
@pytest.mark.usefixtures("ray_local")
def test_median_stopping_end_to_end(tmp_path):
    # score = x * t. x=1 is created last: by its t=2 at least x=4 and x=3 reported up to
    # t=2 (they ran first and passed the grace period), with means 8 and 6 -> x=1's best
    # 2 is below the median: it stops at t=2. x=4's best is above everyone's mean.
    deadline = Deadline(30)
    results = tune.Tuner(
        checkpointing_trainable, param_space={"x": tune.grid_search([4, 3, 2, 1])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=MedianStoppingRule(
            time_attr="training_iteration", grace_period=2, min_samples_required=2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=deadline)).fit()
    assert not results.errors and not deadline.fired
    by_x = {r.config["x"]: r for r in results}
    assert by_x[4].metrics["training_iteration"] == 6
    assert by_x[1].metrics["training_iteration"] < 6
    for result in results:
        history = rows(result.path)
        # Yields pause and resume from checkpoints: every iteration once, in order.
        assert [r["training_iteration"] for r in history] == list(range(1, len(history) + 1))
