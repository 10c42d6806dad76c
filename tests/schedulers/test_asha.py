"""ASHA's decisions on scripted traces, checked against the paper's rules worked out by hand.

Li et al., "A System for Massively Parallel Hyperparameter Tuning" (arXiv:1810.05934).
Notation: eta = reduction_factor, r = grace_period, R = max_t; rung k of bracket s sits
at r * eta**(k + s) < R. Stopping type: with n results at a rung (the trial's own
included), a trial continues iff (number strictly better) * eta < n. Promotion type:
the top floor(n / eta) of a rung may be promoted, best first, highest rung first.
"""

from __future__ import annotations

import pickle

import pytest

import tune_core as tune
from tune_core.error import TuneError
from tune_core.experiment.trial import TrialStatus

from schedulers import ASHAScheduler, AsyncHyperBandScheduler
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import make, step_until_finished

from .e2e import Deadline, checkpointing_trainable, rows
from .sim import CONTINUE, PAUSE, PAUSED, PENDING, STOP, snapshot


def report(scheduler, trial_id, t, value, metric="score", time_attr="training_iteration"):
    return scheduler.on_trial_result(snapshot(trial_id), {time_attr: t, metric: value})


def add(scheduler, *trial_ids):
    for tid in trial_ids:
        scheduler.on_trial_add(snapshot(tid, PENDING))


# --- stopping type -------------------------------------------------------------------------------
def test_stopping_decisions_at_the_rungs():
    # eta=3, r=1, R=9: rungs at 1 and 3 (9 = R ends the trial).
    s = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    add(s, *"ABCDEFG")
    # Rung 1, in arrival order (better = results strictly above the newcomer):
    assert report(s, "A", 1, 5) == CONTINUE  # n=1 {5}: better 0; 0*3 < 1
    assert report(s, "B", 1, 3) == STOP      # n=2 {5,3}: better 1 (5); 3 < 2 is false
    assert report(s, "C", 1, 8) == CONTINUE  # n=3: better 0; 0 < 3
    assert report(s, "D", 1, 1) == STOP      # n=4: better 3 (5,3,8); 9 < 4 false
    assert report(s, "E", 1, 6) == CONTINUE  # n=5: better 1 (8); 3 < 5
    assert report(s, "F", 1, 7) == CONTINUE  # n=6: better 1 (8); 3 < 6
    assert report(s, "G", 1, 4) == STOP      # n=7: better 4 (5,8,6,7); 12 < 7 false
    # Between rungs nothing is decided, whatever the value.
    assert report(s, "A", 2, -100) == CONTINUE
    # Rung 3:
    assert report(s, "A", 3, 5.5) == CONTINUE  # n=1
    assert report(s, "C", 3, 9) == CONTINUE    # n=2: better 0
    assert report(s, "E", 3, 5) == STOP        # n=3: better 2 (5.5, 9); 6 < 3 false
    assert report(s, "F", 3, 10) == CONTINUE   # n=4: better 0
    # R = 9 reached: stop, whatever the value.
    assert report(s, "F", 9, 99) == STOP
    assert s.num_stopped == 4  # B, D, G at rung 1; E at rung 3 (F's stop at R is not counted)


def test_min_mode_mirrors_max_mode_and_ties_go_to_the_newcomer():
    s = ASHAScheduler(metric="loss", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    add(s, "A", "B", "C", "D")
    assert report(s, "A", 1, 0.5, "loss") == CONTINUE  # n=1
    assert report(s, "B", 1, 0.5, "loss") == CONTINUE  # n=2: a tie is not better: 0 < 2
    assert report(s, "C", 1, 0.7, "loss") == STOP      # n=3: better 2; 6 < 3 false
    assert report(s, "D", 1, 0.1, "loss") == CONTINUE  # n=4: better 0


def test_each_rung_is_judged_once_and_a_jump_counts_at_the_highest_level_reached():
    # time_attr in seconds: r=1.5, eta=2, R=10 -> rungs at 1.5, 3, 6 (12 > R).
    s = ASHAScheduler(time_attr="time_total_s", metric="score", mode="max", max_t=10,
                      grace_period=1.5, reduction_factor=2)
    add(s, "X", "Y", "Z")
    assert report(s, "X", 0.5, 1.0, time_attr="time_total_s") == CONTINUE  # below 1.5
    # X jumps from 0.5 s to 7 s: judged at 6 only (first there: continues).
    assert report(s, "X", 7.0, 2.0, time_attr="time_total_s") == CONTINUE
    assert [len(r) for r in s._rungs[0]] == [0, 0, 1]
    # Y: rung 1.5 (first there), then rung 6 with n=2: better 1 (X's 2.0 > 1.0); 2 < 2 false.
    assert report(s, "Y", 2.0, 9.0, time_attr="time_total_s") == CONTINUE
    assert report(s, "Y", 6.5, 1.0, time_attr="time_total_s") == STOP
    # Z at 1.6 s (rung 1.5, n=2: better 1 (9.0); 2 < 2 false).
    assert report(s, "Z", 1.6, 3.0, time_attr="time_total_s") == STOP
    # X again past 6 s: rung 6 is behind it; nothing new to judge.
    assert report(s, "X", 8.0, -5.0, time_attr="time_total_s") == CONTINUE


def test_stop_last_trials_false_judges_at_max_t_and_lets_the_survivors_run_on():
    # eta=3, r=1, R=9 and stop_last_trials=False: rungs 1, 3 and 9 (= R).
    s = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3,
                      stop_last_trials=False)
    add(s, "A", "B")
    assert report(s, "A", 9, 5) == CONTINUE   # rung 9: n=1
    assert report(s, "A", 12, 0) == CONTINUE  # past R, no rung
    assert report(s, "B", 9, 4) == STOP       # rung 9: n=2, better 1; 3 < 2 false


def test_nan_ranks_below_every_number():
    s = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    add(s, "A", "B", "C")
    assert report(s, "A", 1, float("nan")) == CONTINUE  # n=1 always continues
    assert report(s, "B", 1, -1e9) == CONTINUE          # n=2: NaN is not better
    assert report(s, "C", 1, float("nan")) == STOP      # n=3: better 1 (-1e9); 3 < 3 false


def test_brackets_start_at_later_levels_and_are_drawn_by_softmax_over_rung_counts():
    # r=1, eta=3, R=27: levels 1, 3, 9. Bracket 0: rungs 1, 3, 9; bracket 1: 3, 9.
    # P(bracket s) ~ exp(#rungs): exp(3) / (exp(3) + exp(2)) = e / (e + 1) = 0.731 for s=0.
    s = ASHAScheduler(metric="score", mode="max", max_t=27, grace_period=1, reduction_factor=3,
                      brackets=2, seed=11)
    ids = [f"t{i}" for i in range(4000)]
    add(s, *ids)
    share = sum(s._bracket_of[t] == 0 for t in ids) / len(ids)
    assert abs(share - 0.731) < 0.03
    # The same seed draws the same brackets.
    again = ASHAScheduler(metric="score", mode="max", max_t=27, grace_period=1,
                          reduction_factor=3, brackets=2, seed=11)
    add(again, *ids)
    assert again._bracket_of == s._bracket_of
    # A bracket-1 trial has no rung at 1: however bad, it is first judged at 3.
    b0 = [t for t in ids if s._bracket_of[t] == 0][:2]
    b1 = [t for t in ids if s._bracket_of[t] == 1][:2]
    assert report(s, b0[0], 1, 10) == CONTINUE
    assert report(s, b1[0], 1, 10) == CONTINUE
    assert report(s, b1[1], 1, -10) == CONTINUE     # no rung at 1 in bracket 1
    assert report(s, b0[1], 1, -10) == STOP         # bracket 0, rung 1: n=2, better 1
    assert report(s, b1[1], 3, -10) == CONTINUE     # first at bracket 1's rung 3


def test_metric_and_mode_from_tune_config_and_errors_without_them():
    s = AsyncHyperBandScheduler()
    with pytest.raises(ValueError, match=r"AsyncHyperBandScheduler has no metric and no mode"):
        add(s, "A")
    assert s.set_search_properties("acc", "max")
    add(s, "A")
    assert (s.metric, s.mode) == ("acc", "max")
    assert not AsyncHyperBandScheduler(metric="loss").set_search_properties("acc", "max")


def test_a_result_without_the_metric_after_the_first_is_ignored():
    s = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    add(s, "A")
    with pytest.raises(TuneError, match="metric='score'"):
        s.on_trial_result(snapshot("A"), {"training_iteration": 1, "scor": 1})
    assert report(s, "A", 1, 1) == CONTINUE
    assert s.on_trial_result(snapshot("A"), {"training_iteration": 3}) == CONTINUE


# --- promotion type: the scheduler alone --------------------------------------------------------
def test_promotion_decisions_and_choices():
    # eta=2, r=1, R=4: pause levels 1 and 2; reaching 4 completes the trial.
    # Quota of a rung with n results: floor(n/2).
    s = ASHAScheduler(metric="score", mode="max", max_t=4, grace_period=1, reduction_factor=2,
                      type="promotion")
    assert s.pauses_trials
    add(s, "A", "B", "C")
    P = lambda *ids: [snapshot(t, PAUSED) for t in ids]    # noqa: E731
    N = lambda *ids: [snapshot(t, PENDING) for t in ids]   # noqa: E731
    assert s.choose_trial_to_run(N("A", "B")) == "A"       # nothing paused: new trials in order
    assert s.choose_trial_to_run(N("B")) == "B"
    # Rung 1: A=5: n=1, quota 0 -> pause.
    assert report(s, "A", 1, 5) == PAUSE
    # B=3: n=2, quota 1 -> top-1 is A (paused): get_job would promote A, not B -> pause.
    assert report(s, "B", 1, 3) == PAUSE
    # A free slot: promote the best promotable paused trial (A) before any new trial.
    assert s.choose_trial_to_run(P("A", "B") + N("C")) == "A"
    # Only one slot's worth: B is not in rung 1's top-1, so the new trial comes next.
    assert s.choose_trial_to_run(P("B") + N("C")) == "C"
    # C=9 at rung 1: n=3, quota 1, top-1 = C itself: promoted in place (no pause).
    assert report(s, "C", 1, 9) == CONTINUE
    add(s, "D", "E")
    assert report(s, "D", 1, 4) == PAUSE      # n=4, quota 2: top-2 = C(9), A(5), both promoted
    assert report(s, "E", 1, 6) == CONTINUE   # n=5, quota 2: top-2 = C(9), E(6): E in place
    # Rung 2: A=6: n=1, quota 0 -> pause. C=10: n=2, quota 1, top-1 = C: in place.
    assert report(s, "A", 2, 6) == PAUSE
    assert report(s, "C", 2, 10) == CONTINUE
    assert report(s, "C", 3, 0) == CONTINUE   # between rungs
    assert report(s, "C", 4, 11) == STOP      # R reached
    # Nothing promotable: rung 2 top-1 = C (done); rung 1 top-2 = C, E (promoted already).
    assert s.choose_trial_to_run(P("A", "B", "D")) is None
    add(s, "F")
    assert s.choose_trial_to_run(P("A", "B", "D") + N("F")) == "F"
    # E=7 at rung 2: n=3, quota 1, top-1 = C -> pause.
    assert report(s, "E", 2, 7) == PAUSE
    # F=8 at rung 1: n=6, quota 3: top-3 = C(9), F(8), E(6); no promotable paused trial at
    # rung 2 (its top-1 is C) -> F in place. Then F=11 at rung 2: n=4, quota 2: top-2 =
    # F(11), C(10) -> F in place again; F reaches R.
    assert report(s, "F", 1, 8) == CONTINUE
    assert report(s, "F", 2, 11) == CONTINUE
    assert report(s, "F", 4, 12) == STOP
    # Left: A (rung 2, 6), E (rung 2, 7), B (rung 1, 3), D (rung 1, 4). Rung 2 top-2 = F, C;
    # rung 1 top-3 = C, F, E: none of them is paused -> no trial can run.
    assert s.choose_trial_to_run(P("A", "B", "D", "E")) is None
    assert s.num_promoted == 6  # A (rung 1, resumed), C x2, E, F x2 in place


def test_a_paused_trial_is_promoted_once_later_results_raise_the_quota():
    # eta=2, r=1, R=4. A=1 pauses first (quota 0); B=0, C=0.5 arrive below it.
    s = ASHAScheduler(metric="score", mode="max", max_t=4, grace_period=1, reduction_factor=2,
                      type="promotion")
    add(s, "A", "B", "C")
    assert report(s, "A", 1, 1) == PAUSE    # n=1, quota 0
    assert report(s, "B", 1, 0) == PAUSE    # n=2, quota 1: top-1 = A (paused, comes first)
    assert s.choose_trial_to_run([snapshot("B", PAUSED), snapshot("A", PAUSED)]) == "A"
    assert report(s, "C", 1, 0.5) == PAUSE  # n=3, quota 1: top-1 = A (promoted); C is 2nd
    assert s.choose_trial_to_run([snapshot("B", PAUSED), snapshot("C", PAUSED)]) is None
    add(s, "D")
    assert report(s, "D", 1, -1) == PAUSE   # n=4, quota 2: top-2 = A, C -> C promotable
    assert s.choose_trial_to_run([snapshot("B", PAUSED), snapshot("C", PAUSED),
                                  snapshot("D", PAUSED)]) == "C"


def test_a_promotion_that_waits_for_resources_is_chosen_again_first():
    s = ASHAScheduler(metric="score", mode="max", max_t=4, grace_period=1, reduction_factor=2,
                      type="promotion")
    add(s, "A", "B", "C")
    report(s, "A", 1, 5)
    report(s, "B", 1, 3)
    candidates = [snapshot("A", PAUSED), snapshot("B", PAUSED), snapshot("C", PENDING)]
    assert s.choose_trial_to_run(candidates) == "A"
    # The controller could not start A (no resources): asking again gives A again.
    assert s.choose_trial_to_run(candidates) == "A"
    restored = pickle.loads(pickle.dumps(s))
    assert restored.choose_trial_to_run(candidates) == "A"


def test_a_trial_paused_by_an_interruption_is_resumed_before_promotions():
    s = ASHAScheduler(metric="score", mode="max", max_t=4, grace_period=1, reduction_factor=2,
                      type="promotion")
    add(s, "A", "B", "C", "D")
    report(s, "A", 1, 1)                     # PAUSE (n=1, quota 0)
    report(s, "B", 1, 0)                     # PAUSE (quota 1 = A)
    assert s.choose_trial_to_run([snapshot("A", PAUSED), snapshot("B", PAUSED)]) == "A"
    assert report(s, "A", 1.5, 1) == CONTINUE  # A runs on towards rung 2...
    report(s, "C", 1, 0.5)                   # PAUSE (n=3, quota 1 = A)
    report(s, "D", 1, -1)                    # PAUSE (n=4, quota 2 = A, C): C is promotable
    # ...when Ctrl+C pauses A; Tuner.restore offers it with the rung-paused trials.
    candidates = [snapshot(t, PAUSED) for t in "ABCD"]
    assert s.choose_trial_to_run(candidates) == "A"   # its run was under way
    assert s.choose_trial_to_run(candidates[1:]) == "C"  # then the promotion
    assert s.choose_trial_to_run([snapshot("B", PAUSED), snapshot("D", PAUSED)]) is None


# --- promotion type with the controller and the fake executor -------------------------------------
PROMOTION_SCRIPTS = [
    [{"score": 5}, {"score": 6}, {"score": 7}, {"score": 8}],      # T0
    [{"score": 3}, {"score": 4}, {"score": 5}, {"score": 6}],      # T1
    [{"score": 9}, {"score": 10}, {"score": 11}, {"score": 12}],   # T2
    [{"score": 4}, {"score": 5}, {"score": 6}, {"score": 7}],      # T3
]


def _promotion_run(tmp_path):
    """One CPU, so the order is fixed. eta=2, r=1, R=4: pauses at 1 and 2.

    T0 t1=5: rung 1 {T0}, quota 0 -> PAUSE.          choose: T1 (new)
    T1 t1=3: rung 1 {5,3}, quota 1 = T0 -> PAUSE.     choose: T0 promoted (top-1, paused)
    T0 t2=6 (resumed from its checkpoint at 1): rung 2 {6}, quota 0 -> PAUSE.
                                                      choose: nothing promotable -> T2 (new)
    T2 t1=9: rung 1 {5,3,9}, quota 1 = T2 -> continues in place.
    T2 t2=10: rung 2 {6,10}, quota 1 = T2 -> in place; t3 continues; t4 = R -> STOP.
                                                      choose: T3 (new)
    T3 t1=4: rung 1 {5,3,9,4}, quota 2 = T2, T0 (both promoted) -> PAUSE.
    Nothing promotable, no trial runs, none will come: T0, T1, T3 are finished at their rung.
    """
    scheduler = ASHAScheduler(metric="score", mode="max", max_t=4, grace_period=1,
                              reduction_factor=2, type="promotion")
    ctrl, executor, search, rec = make([{"results": r} for r in PROMOTION_SCRIPTS], tmp_path,
                                       scheduler=scheduler, executor=FakeExecutor(cpus=1))
    step_until_finished(ctrl, 300)
    return ctrl, executor, rec, scheduler


def test_promotion_with_the_controller_pauses_promotes_and_resumes(tmp_path):
    ctrl, executor, rec, scheduler = _promotion_run(tmp_path)
    t0, t1, t2, t3 = (t.trial_id for t in ctrl.trials)
    results = [(e[1], e[2]) for e in rec.events if e[0] == "result"]
    assert results == [(t0, 1), (t1, 1), (t0, 2), (t2, 1), (t2, 2), (t2, 3), (t2, 4), (t3, 1)]
    # T0 was resumed from the checkpoint it saved when it paused at iteration 1.
    launches = [(launch.trial_id, launch.restored_iteration, bool(launch.checkpoint_path))
                for launch in executor.launches]
    assert launches == [(t0, 0, False), (t1, 0, False), (t0, 1, True), (t2, 0, False),
                        (t3, 0, False)]
    # Where each trial ended: T2 at R, the others at the rung they waited at.
    assert [t.last_result["training_iteration"] for t in ctrl.trials] == [2, 1, 4, 1]
    assert scheduler.num_promoted == 3  # T0 (resumed), T2 twice (in place)
    assert not executor.running


def test_promotion_with_the_controller_ends_the_experiment(tmp_path):
    ctrl, executor, rec, scheduler = _promotion_run(tmp_path)
    assert ctrl.is_finished()
    t0, t1, t2, t3 = (t.trial_id for t in ctrl.trials)
    assert [t.status for t in ctrl.trials] == [TrialStatus.TERMINATED] * 4
    completed = [e[1] for e in rec.events if e[0] == "complete"]
    # No trial was completed while it could still be promoted: T2 first (it reached R),
    # the others only at the end, when nothing could run any more.
    assert completed[0] == t2 and sorted(completed[1:]) == sorted([t0, t1, t3])
    last_result = max(i for i, e in enumerate(rec.events) if e[0] == "result")
    assert all(rec.events.index(("complete", t)) > last_result for t in (t0, t1, t3))


# --- end to end on a real local Ray --------------------------------------------------------------
@pytest.mark.usefixtures("ray_local")
def test_asha_stopping_end_to_end(tmp_path):
    # Grid order 4, 3, 2, 1 with 2 CPUs: x=4 and x=3 reach rung 1 before x=2 and x=1 start;
    # then x=2 (n=3, better 2: 6 < 3 false) and x=1 (n=4, better 3) stop at iteration 1.
    results = tune.Tuner(
        checkpointing_trainable, param_space={"x": tune.grid_search([4, 3, 2, 1])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=ASHAScheduler(
            max_t=6, grace_period=1, reduction_factor=2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    iterations = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    assert iterations[4] == 6 and iterations[2] == 1 and iterations[1] == 1
    assert results.get_best_result().config["x"] == 4
    assert not results.errors


@pytest.mark.usefixtures("ray_local")
def test_asha_promotion_end_to_end(tmp_path):
    # eta=2, r=1, R=4: pauses at 1 and 2. Whatever the order of arrivals, at the end
    # rung 1 holds x=4,3,2,1 (quota 2: x=4 and x=3 promoted) and rung 2 holds x=4, x=3
    # (quota 1: x=4 promoted, and it stops at R=4); nothing else can be promoted.
    # x=2 and x=1 are never resumed; x=4 and x=3 are, unless they were promoted in place.
    deadline = Deadline(30)
    results = tune.Tuner(
        checkpointing_trainable, param_space={"x": tune.grid_search([4, 3, 2, 1])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=ASHAScheduler(
            max_t=4, grace_period=1, reduction_factor=2, type="promotion")),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  stop=deadline)).fit()
    assert not results.errors
    assert not deadline.fired  # it ended by itself, not by the safety deadline
    by_x = {r.config["x"]: r for r in results}
    history = {x: rows(r.path) for x, r in by_x.items()}
    for x, lines in history.items():
        # Paused and resumed from checkpoints: every iteration reported once, in order.
        assert [r["training_iteration"] for r in lines] == list(range(1, len(lines) + 1))
    resumed = {x for x, lines in history.items() if any(r["resumed_from"] for r in lines)}
    assert resumed <= {3, 4}
    assert all(by_x[x].metrics["training_iteration"] < 4 for x in (1, 2))
    final = {x: r.metrics["training_iteration"] for x, r in by_x.items()}
    # Each trial pauses at the very result its PAUSE was decided on.
    assert final == {4: 4, 3: 2, 2: 1, 1: 1}
