"""The contract every trial scheduler keeps, checked on each one with the same synthetic traces.

To add a scheduler: append a factory to ``SCHEDULERS`` (keyword overrides replace its
defaults; it must decide on ``score`` (max) and may use ``cost`` (min), with
``time_attr="training_iteration"``), and its argument checks to ``BAD_ARGUMENTS``.
No Ray: the traces run through ``sim.Sim`` and through the real ``TuneController``
with the fake executor.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Dict, List, Tuple

import pytest

from tune_core.error import TuneError
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialStatus
from tune_core.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from schedulers import (
    MOASHA, AsyncHyperBandScheduler, HyperBandForBOHB, HyperBandScheduler, MedianStoppingRule,
    create_scheduler)
from schedulers.pbt import PopulationBasedTraining
from schedulers.resource_changing_scheduler import DistributeResources, ResourceChangingScheduler
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import ListSearch

from .sim import Sim, curves


# --- the schedulers under contract ------------------------------------------------------------
def _with(defaults: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    return {**defaults, **overrides}


def fifo(**kw: Any) -> TrialScheduler:
    return FIFOScheduler(**_with({"metric": "score", "mode": "max"}, kw))


def asha_stopping(**kw: Any) -> TrialScheduler:
    return AsyncHyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3), kw))


def asha_stopping_brackets(**kw: Any) -> TrialScheduler:
    return AsyncHyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=2, brackets=3,
        seed=7), kw))


def asha_promotion(**kw: Any) -> TrialScheduler:
    return AsyncHyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3,
        type="promotion"), kw))


def asha_promotion_brackets(**kw: Any) -> TrialScheduler:
    return AsyncHyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=2, brackets=2,
        type="promotion", seed=3), kw))


def median_stopping(**kw: Any) -> TrialScheduler:
    return MedianStoppingRule(**_with(dict(
        time_attr="training_iteration", metric="score", mode="max", grace_period=2,
        min_samples_required=2), kw))


def median_soft(**kw: Any) -> TrialScheduler:
    return MedianStoppingRule(**_with(dict(
        time_attr="training_iteration", metric="score", mode="max", grace_period=2,
        min_samples_required=2, min_time_slice=2, hard_stop=False), kw))


def moasha(**kw: Any) -> TrialScheduler:
    return MOASHA(**_with(dict(
        metric=["score", "cost"], mode=["max", "min"], max_t=9, grace_period=1,
        reduction_factor=3), kw))


def hyperband(**kw: Any) -> TrialScheduler:
    return HyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, reduction_factor=3), kw))


def hyperband_eta2(**kw: Any) -> TrialScheduler:
    return HyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, reduction_factor=2), kw))


def hb_bohb(**kw: Any) -> TrialScheduler:
    return HyperBandForBOHB(**_with(dict(
        metric="score", mode="max", max_t=9, reduction_factor=3), kw))


def _explore_lr(config: Dict[str, Any]) -> Dict[str, Any]:  # module level: schedulers pickle
    return dict(config, lr=config.get("lr", 1) * 2)


def pbt(**kw: Any) -> TrialScheduler:
    return PopulationBasedTraining(**_with(dict(
        time_attr="training_iteration", metric="score", mode="max", perturbation_interval=2,
        custom_explore_fn=_explore_lr, seed=0), kw))


def pbt_synch(**kw: Any) -> TrialScheduler:
    return PopulationBasedTraining(**_with(dict(
        time_attr="training_iteration", metric="score", mode="max", perturbation_interval=2,
        custom_explore_fn=_explore_lr, synch=True, quantile_fraction=0.5, seed=0), kw))


def resource_changing(**kw: Any) -> TrialScheduler:
    own = {k: kw.pop(k) for k in ("resources_allocation_function",) if k in kw}
    base = AsyncHyperBandScheduler(**_with(dict(
        metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3), kw))
    return ResourceChangingScheduler(base_scheduler=base, **_with(
        {"resources_allocation_function": DistributeResources(total_resources={"CPU": 2})},
        own))


#: Factories of every scheduler under contract; others append theirs.
SCHEDULERS: List[Callable[..., TrialScheduler]] = [
    fifo, asha_stopping, asha_stopping_brackets, asha_promotion, asha_promotion_brackets,
    median_stopping, median_soft, moasha, hyperband, hyperband_eta2, hb_bohb,
    pbt, pbt_synch, resource_changing,
]
#: Schedulers that decide nothing from the metric, so need none.
NEEDS_NO_METRIC = {fifo}

#: (factory, overrides, what the ValueError must say): the argument, its value, what is accepted.
BAD_ARGUMENTS: List[Tuple[Callable[..., TrialScheduler], Dict[str, Any], List[str]]] = [
    (asha_stopping, {"grace_period": 20}, ["grace_period=20", "<= max_t (9)"]),
    (asha_stopping, {"grace_period": 0}, ["grace_period=0", "> 0"]),
    (asha_stopping, {"reduction_factor": 1}, ["reduction_factor=1", "> 1"]),
    (asha_stopping, {"max_t": -5, "grace_period": 1}, ["max_t=-5", "> 0"]),
    (asha_stopping, {"brackets": 0}, ["brackets=0", "integer >= 1"]),
    (asha_stopping, {"brackets": 4}, ["brackets=4", "rung levels are 1, 3", "1 to 3"]),
    (asha_stopping, {"type": "promote"}, ["type='promote'", '"stopping"', '"promotion"']),
    (asha_stopping, {"stop_last_trials": "yes"}, ["stop_last_trials='yes'", "True or False"]),
    (asha_stopping, {"time_attr": ""}, ["time_attr=''", "name of a reported result field"]),
    (asha_stopping, {"metric": 3}, ["metric=3", "name of a reported result field"]),
    (median_stopping, {"grace_period": -1}, ["grace_period=-1", ">= 0"]),
    (median_stopping, {"min_samples_required": 0}, ["min_samples_required=0", "integer >= 1"]),
    (median_stopping, {"min_samples_required": 2.5}, ["min_samples_required=2.5", "integer"]),
    (median_stopping, {"min_time_slice": -1}, ["min_time_slice=-1", ">= 0"]),
    (median_stopping, {"hard_stop": None}, ["hard_stop=None", "True or False"]),
    (moasha, {"grace_period": 10}, ["grace_period=10", "<= max_t (9)"]),
    (moasha, {"reduction_factor": 0.5}, ["reduction_factor=0.5", "> 1"]),
    (moasha, {"metric": ["score", "score"]}, ["metric=['score', 'score']", "distinct"]),
    (moasha, {"metric": []}, ["metric=[]", "list of distinct"]),
    (moasha, {"mode": ["max"]}, ["mode=['max']", "one mode per metric", "has 2 names"]),
    (moasha, {"mode": ["max", "best"]}, ["mode=['max', 'best']", '"min", "max"']),
    (hyperband, {"max_t": 0}, ["max_t=0", "> 0"]),
    (hyperband, {"reduction_factor": 1}, ["reduction_factor=1", "> 1"]),
    (hyperband, {"stop_last_trials": "yes"}, ["stop_last_trials='yes'", "True or False"]),
    (hyperband, {"time_attr": ""}, ["time_attr=''", "name of a reported result field"]),
    (hyperband, {"metric": 3}, ["metric=3", "name of a reported result field"]),
    (hb_bohb, {"reduction_factor": 0.5}, ["reduction_factor=0.5", "> 1"]),
    (pbt, {"quantile_fraction": 0.7}, ["quantile_fraction=0.7", "[0, 0.5]"]),
    (pbt, {"perturbation_interval": 0}, ["perturbation_interval=0", "> 0"]),
    (pbt, {"custom_explore_fn": None}, ["hyperparam_mutations=None", "custom_explore_fn"]),
    (resource_changing, {"resources_allocation_function": 3},
     ["resources_allocation_function=3", "function"]),
]

by_name = pytest.mark.parametrize("make", SCHEDULERS, ids=lambda f: f.__name__)
needs_metric = pytest.mark.parametrize(
    "make", [f for f in SCHEDULERS if f not in NEEDS_NO_METRIC], ids=lambda f: f.__name__)


# --- traces -----------------------------------------------------------------------------------
@by_name
@pytest.mark.parametrize("slots", [1, 3])
def test_runs_every_trial_to_an_end(make, slots):
    sim = Sim(make(), curves(8), slots=slots)
    sim.run()
    assert all(t.status == TrialStatus.TERMINATED for t in sim.trials)
    if any(e[0] == "result" and e[-1] == "PAUSE" for e in sim.log):
        # The controller gives lock-step results (a pause at the result it was decided
        # on) only to schedulers that say they pause.
        assert sim.scheduler.pauses_trials
    for trial in sim.trials:
        seen = sim.iterations(trial.trial_id)
        restarted = any(e[0] == "result" and e[1] == trial.trial_id and "RestartTrial" in e[-1]
                        for e in sim.log)
        if not restarted:  # a paused trial resumes where it paused
            assert seen == list(range(1, len(seen) + 1))


@by_name
def test_errors_and_retries_are_taken_in_stride(make):
    # t01 fails for good at its 2nd iteration; t04 fails at its 1st and is retried.
    sim = Sim(make(), curves(8), slots=2, fail={1: 2})
    sim.run()
    assert ("error", "t01") in sim.log
    assert sim.iterations("t01") == [1]
    retried = Sim(make(), curves(8), slots=2, fail={4: 1}, retry=True)
    retried.run()
    assert ("retry", "t04") in retried.log
    assert {t.status for t in retried.trials} == {TrialStatus.TERMINATED}


@by_name
@pytest.mark.parametrize("swap_at", [1, 4, 9, 15])
def test_pickle_round_trip_mid_trace_continues_with_identical_decisions(make, swap_at):
    straight = Sim(make(), curves(8), slots=2, fail={2: 3}).run()
    swapped = Sim(make(), curves(8), slots=2, fail={2: 3}).run(swap_at=swap_at)
    assert [e for e in swapped if e != ("pickled",)] == straight


@by_name
def test_get_state_and_set_state_restore_the_decisions(make):
    sim = Sim(make(), curves(6), slots=2)
    for _ in range(5):
        sim.step()
    fresh = make()
    fresh.set_state(pickle.loads(pickle.dumps(sim.scheduler.get_state())))
    twin = Sim(make(), curves(6), slots=2)
    twin.__dict__.update({k: v for k, v in sim.__dict__.items() if k != "scheduler"})
    twin.trials = pickle.loads(pickle.dumps(sim.trials))
    twin.log = list(sim.log)
    twin.scheduler = fresh
    assert twin.run() == sim.run()


@needs_metric
def test_time_attr_names_the_progress_field(make):
    """time_attr may be any monotonically increasing field, and only that field counts."""
    traces = curves(6)
    # "epochs" carries the progress; training_iteration now runs far past every level.
    renamed = [[dict(r, epochs=r["training_iteration"], training_iteration=100 + i)
                for i, r in enumerate(c)] for c in traces]
    assert Sim(make(time_attr="epochs"), renamed).run() == Sim(make(), traces).run()


# --- metric and mode ---------------------------------------------------------------------------
@needs_metric
def test_no_metric_or_mode_is_an_error_before_the_first_trial(make):
    from .sim import snapshot

    scheduler = make(metric=None, mode=None)
    with pytest.raises(ValueError) as err:
        scheduler.on_trial_add(snapshot("t00", TrialStatus.PENDING))
    message = str(err.value)
    assert type(scheduler).__name__ in message and "metric" in message and "mode" in message
    assert "TuneConfig(metric=..., mode=...)" in message


@needs_metric
def test_no_metric_or_mode_stops_tuner_fit_before_ray_starts_a_trial(make, tmp_path):
    import tune_core as tune

    def train_fn(config):
        raise AssertionError("no trial may start")

    tuner = tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=make(metric=None,
                                                                            mode=None)),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match=type(make()).__name__):
        tuner.fit()


@needs_metric
def test_metric_and_mode_from_tune_config(make):
    scheduler = make(metric=None, mode=None)
    assert scheduler.set_search_properties("score", "max")
    Sim(scheduler, curves(6)).run()


@needs_metric
def test_a_different_metric_in_tune_config_is_a_conflict(make):
    assert not make().set_search_properties("accuracy", "max")
    assert make().set_search_properties(None, None)


@needs_metric
def test_bad_mode_is_named(make):
    with pytest.raises(ValueError) as err:
        make(mode="best")
    message = str(err.value)
    assert "mode='best'" in message and '"min"' in message and '"max"' in message


@needs_metric
def test_a_typo_in_time_attr_fails_on_the_first_result(make):
    sim = Sim(make(time_attr="epoch"), curves(3))
    with pytest.raises(TuneError) as err:
        sim.run()
    message = str(err.value)
    assert "time_attr='epoch'" in message and "training_iteration" in message


@pytest.mark.parametrize("make, overrides, expected", BAD_ARGUMENTS,
                         ids=lambda v: getattr(v, "__name__", None))
def test_bad_arguments_name_the_argument_its_value_and_what_is_accepted(make, overrides,
                                                                         expected):
    with pytest.raises(ValueError) as err:
        make(**overrides)
    for part in expected:
        assert part in str(err.value)
    assert str(err.value).startswith(f"{type(make()).__name__}(")


# --- the real controller ------------------------------------------------------------------------
@by_name
def test_drives_the_controller_with_the_fake_executor(make, tmp_path):
    """Every trial ends, except PAUSED ones that nothing can resume (which the controller
    completes once it has the rule for it): then no trial runs and the scheduler starts none."""
    configs = [{"results": c} for c in curves(6)]
    scheduler = make()
    ctrl = TuneController(executor=FakeExecutor(cpus=2), search_alg=ListSearch(configs),
                          scheduler=scheduler, experiment_path=str(tmp_path), poll_timeout=0)
    for _ in range(400):
        if ctrl.is_finished():
            break
        ctrl.step()
    statuses = [t.status for t in ctrl.trials]
    assert len(ctrl.trials) == 6
    assert TrialStatus.RUNNING not in statuses and TrialStatus.ERROR not in statuses
    waiting = [t.snapshot() for t in ctrl.trials if t.status != TrialStatus.TERMINATED]
    if waiting:
        assert all(s.status == TrialStatus.PAUSED for s in waiting)
        assert scheduler.choose_trial_to_run(waiting) is None
    ctrl.cleanup()


# --- create_scheduler ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("fifo", FIFOScheduler), ("async_hyperband", AsyncHyperBandScheduler),
    ("asha", AsyncHyperBandScheduler), ("median_stopping_rule", MedianStoppingRule),
    ("moasha", MOASHA)])
def test_create_scheduler_by_name(name, cls):
    kwargs = {"metric": ["score", "cost"], "mode": "min"} if cls is MOASHA else \
        {"metric": "score", "mode": "max"}
    assert type(create_scheduler(name, **kwargs)) is cls
    assert type(create_scheduler(scheduler=name.upper(), **kwargs)) is cls


def test_create_scheduler_passes_the_arguments_on():
    scheduler = create_scheduler("asha", metric="loss", mode="min", type="promotion", max_t=27)
    assert scheduler.metric == "loss" and scheduler.pauses_trials
    with pytest.raises(ValueError, match="grace_period=50"):
        create_scheduler("asha", max_t=27, grace_period=50)


def test_create_scheduler_unknown_name_lists_the_accepted_ones():
    with pytest.raises(ValueError) as err:
        create_scheduler("ashaa")
    message = str(err.value)
    assert "name='ashaa'" in message
    for name in ("'fifo'", "'async_hyperband'", "'asha'", "'median_stopping_rule'", "'moasha'"):
        assert name in message
