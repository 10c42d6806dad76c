"""MOASHA: rungs ranked by non-dominated sorting with an epsilon-net tie-break, by hand.

Schmucker et al., "Multi-objective Asynchronous Successive Halving" (arXiv:2106.12639).
A trial reaching a rung continues iff (number ranked ahead of it) * eta < n, n counting
its own result, as in ASHA; the ranking is by Pareto front, then epsilon-net order.
"""

from __future__ import annotations

import pytest

import tune_core as tune
from tune_core.experiment.trial import TrialStatus

from schedulers import MOASHA, ASHAScheduler
from schedulers.moasha import nondominated_order
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import make, step_until_finished

from .e2e import Deadline, checkpointing_trainable
from .sim import CONTINUE, PENDING, STOP, Sim, curves, snapshot


def test_nondominated_order_fronts_then_epsilon_net():
    # Minimised points: P0 (1,5), P1 (2,2), P2 (5,1) are non-dominated (front 1);
    # P3 (3,3) is dominated by P1 only (front 2); P4 (4,4) by P1 and P3 (front 3).
    # Front 1 in coordinates scaled to [0, 1] per objective (both span 1..5):
    # P0 (0, 1), P1 (.25, .25), P2 (1, 0). Start: the best on objective 0, P0; then the
    # farthest from P0: P2 (distance 1.41) before P1 (0.79).
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4)]
    assert nondominated_order(points) == [0, 2, 1, 3, 4]
    # Seeded by objective 1 instead: P2 first, then P0 (farthest), then P1.
    assert nondominated_order(points, first_objective=1) == [2, 0, 1, 3, 4]


def test_nondominated_order_edge_cases():
    assert nondominated_order([]) == []
    # Identical points: one front; (0, 2) is best on objective 0, then the two equal
    # points (equally far from it) in their order.
    assert nondominated_order([(1, 1), (1, 1), (0, 2)]) == [2, 0, 1]
    # NaN and +inf are worse than any number; -inf better.
    nan, inf = float("nan"), float("inf")
    assert nondominated_order([(nan, 0), (1, 0), (-inf, 0), (inf, 0)]) == [2, 1, 0, 3]
    # One objective: plain sorting.
    assert nondominated_order([(3,), (1,), (2,)]) == [1, 2, 0]


def test_decisions_at_the_rungs():
    # eta=2, r=1, R=4: rungs at 1 and 2. Objectives: err (min), lat (min).
    s = MOASHA(metric=["err", "lat"], mode=["min", "min"], max_t=4, grace_period=1,
               reduction_factor=2)
    for tid in "ABCDE":
        s.on_trial_add(snapshot(tid, PENDING))

    def report(tid, t, err, lat):
        return s.on_trial_result(snapshot(tid), {"training_iteration": t, "err": err,
                                                 "lat": lat})

    assert report("A", 1, 0.5, 5) == CONTINUE   # n=1: 0 ahead
    # B (.4, 6) and A (.5, 5) do not dominate each other: one front; scaled err A=1, B=0:
    # the epsilon-net starts with the best err, B: 0 ahead; 0*2 < 2.
    assert report("B", 1, 0.4, 6) == CONTINUE
    # C (.6, 7) is dominated by A and B: front 2, 2 ahead; 4 < 3 is false.
    assert report("C", 1, 0.6, 7) == STOP
    # D (.3, 4) dominates everyone: 0 ahead.
    assert report("D", 1, 0.3, 4) == CONTINUE
    # E (.45, 5.5): fronts {D}, {A, B, E}, {C}. Scaled over the rung (err .3-.6, lat 4-7):
    # A (.667, .333), B (.333, .667), E (.5, .5). Net: B (best err), then A (distance
    # .471 from B) before E (.236). Order D, B, A, E, C: 3 ahead of E; 6 < 5 is false.
    assert report("E", 1, 0.45, 5.5) == STOP
    # Rung 2: A first; then D dominates A; then B (.35, 5.5): fronts {D}, {A, B}, net
    # starts with B (best err): 1 ahead; 2 < 3.
    assert report("A", 2, 0.45, 4.5) == CONTINUE
    assert report("D", 2, 0.2, 3.5) == CONTINUE
    assert report("B", 2, 0.35, 5.5) == CONTINUE
    assert report("D", 4, 0.1, 3) == STOP       # R reached
    assert s.num_stopped == 2


def test_max_mode_objectives_are_negated():
    # The same rung 1 as above with accuracy = 1 - err (max) instead of err.
    s = MOASHA(metric=["acc", "lat"], mode=["max", "min"], max_t=4, grace_period=1,
               reduction_factor=2)
    decisions = []
    for tid, err, lat in [("A", .5, 5), ("B", .4, 6), ("C", .6, 7), ("D", .3, 4),
                          ("E", .45, 5.5)]:
        s.on_trial_add(snapshot(tid, PENDING))
        decisions.append(s.on_trial_result(snapshot(tid), {"training_iteration": 1,
                                                           "acc": 1 - err, "lat": lat}))
    assert decisions == [CONTINUE, CONTINUE, STOP, CONTINUE, STOP]


def test_one_metric_is_asha():
    # Distinct values everywhere: the same decisions as single-objective ASHA.
    traces = curves(8)
    asha = Sim(ASHAScheduler(metric="score", mode="max", max_t=9, reduction_factor=3),
               traces).run()
    moasha = Sim(MOASHA(metric=["score"], mode="max", max_t=9, reduction_factor=3),
                 traces).run()
    assert moasha == asha


def test_metric_and_mode_from_tune_config():
    s = MOASHA(mode="min")
    assert s.set_search_properties("loss", "min")
    assert (s.metric, s.mode) == (["loss"], ["min"])
    s = MOASHA(metric=["loss", "lat"], mode=["min", "min"])
    assert s.set_search_properties("loss", "min")        # one of its metrics, same mode
    assert not s.set_search_properties("loss", "max")    # the same metric, another mode
    assert not s.set_search_properties("acc", "max")     # not one of its metrics
    s = MOASHA(metric=["loss", "lat"])
    assert s.set_search_properties("loss", "min")
    with pytest.raises(ValueError, match=r"MOASHA\(metric=\['loss', 'lat'\]\) has no mode"):
        s.on_trial_add(snapshot("A", PENDING))           # one mode cannot speak for two
    s = MOASHA(metric=["loss", "lat"], mode="max")
    assert s.mode == ["max", "max"]


def test_with_the_controller_and_the_fake_executor(tmp_path):
    # One CPU: trials run one after the other. Rung 1 (eta=2, r=1, R=4), (err, lat):
    # T0 (.5, 5): n=1 -> continues to R.   T1 (.6, 7): dominated by T0: 1 ahead; 2 < 2
    # false -> stop.   T2 (.3, 6): front {T0, T2} net starts at T2 (best err): 0 ahead.
    # T3 (.4, 5.5): front {T0, T2, T3}; scaled err .3-.6, lat 5-7: T0 (.667, 0),
    # T2 (0, .5), T3 (.333, .25): net T2, then T0 (dist .833) before T3 (.417): 2 ahead
    # of 4; 4 < 4 false -> stop. Rung 2: T0 (n=1), T2 (.25, 5.5 vs T0 .45, 4.5: one
    # front, T2 best err) -> both run to R.
    scripts = [
        [(0.5, 5), (0.45, 4.5), (0.4, 4), (0.35, 4)],
        [(0.6, 7), (0.5, 7), (0.5, 7), (0.5, 7)],
        [(0.3, 6), (0.25, 5.5), (0.2, 5), (0.2, 5)],
        [(0.4, 5.5), (0.3, 5), (0.3, 5), (0.3, 5)],
    ]
    configs = [{"results": [{"err": e, "lat": lat} for e, lat in script]}
               for script in scripts]
    scheduler = MOASHA(metric=["err", "lat"], mode="min", max_t=4, grace_period=1,
                       reduction_factor=2)
    ctrl, _, _, _ = make(configs, tmp_path, scheduler=scheduler,
                         executor=FakeExecutor(cpus=1))
    step_until_finished(ctrl, 300)
    assert ctrl.is_finished()
    assert [t.status for t in ctrl.trials] == [TrialStatus.TERMINATED] * 4
    assert [t.last_result["training_iteration"] for t in ctrl.trials] == [4, 1, 4, 1]


@pytest.mark.usefixtures("ray_local")
def test_moasha_end_to_end(tmp_path):
    # score = x * t (max) and cost = t / x (min): x=4 dominates everyone at every rung.
    # Grid order 4, 3, 2, 1 with 2 CPUs: x=4 and x=3 reach rung 1 first; x=2 arrives with
    # both ahead (2 ahead of 3; 6 < 3 false) and stops, x=1 likewise (3 ahead of 4).
    deadline = Deadline(30)
    results = tune.Tuner(
        checkpointing_trainable, param_space={"x": tune.grid_search([4, 3, 2, 1])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=MOASHA(
            metric=["score", "cost"], mode=["max", "min"], max_t=6, grace_period=1,
            reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=deadline)).fit()
    assert not results.errors and not deadline.fired
    iterations = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    assert iterations[4] == 6 and iterations[2] == 1 and iterations[1] == 1
