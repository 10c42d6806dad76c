"""ResourceChangingScheduler, DistributeResources and DistributeResourcesToTopJob.

* The allocation functions' arithmetic, worked out by hand in the comments (the terms
  are those of ``DistributeResources``' docstring: spare and free units, fair share).
* The wrapper passes every hook on, and turns a new allocation into ``ChangeResources``.
* The controller with the fake executor: a trial's second launch has the new resources
  and resumes from the checkpoint it paused with.
* A real local Ray: ``tune.get_context().get_trial_resources()`` changes between runs.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from types import MappingProxyType
from typing import Any, Dict, List, Optional

import pytest

import tune_core as tune
from tune_core.error import TuneError
from tune_core.execution.placement_groups import PlacementGroupFactory
from tune_core.execution.tune_controller import TuneController
from tune_core.experiment.trial import TrialSnapshot, TrialStatus
from tune_core.schedulers.trial_scheduler import (
    ChangeResources, FIFOScheduler, RestartTrial, SchedulerDecision, TrialScheduler)

from schedulers import ASHAScheduler, create_scheduler
from schedulers.pbt import PopulationBasedTraining
from schedulers.resource_changing_scheduler import (
    DistributeResources, DistributeResourcesToTopJob, LiveTrial, ResourceChangingScheduler,
    _TrialsView)
from tests.tune_core.execution.fake_executor import FakeExecutor
from tests.tune_core.execution.test_tune_controller import ListSearch

PENDING, RUNNING, TERMINATED = TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.TERMINATED


def pgf(*bundles: Dict[str, float]) -> PlacementGroupFactory:
    return PlacementGroupFactory(list(bundles))


def live(trial_id: str, now: PlacementGroupFactory, base: Optional[PlacementGroupFactory] = None,
         score: Optional[float] = None) -> LiveTrial:
    return LiveTrial(trial_id=trial_id, status=RUNNING, config={},
                     placement_group_factory=now, base_resources=base or pgf({"CPU": 1}),
                     last_result={} if score is None else {"score": score})


def allocate(fn, trial: LiveTrial, others: List[LiveTrial], total=None,
             scheduler: Optional[ResourceChangingScheduler] = None, iteration: int = 1):
    view = _TrialsView([trial] + others, total)
    scheduler = scheduler or ResourceChangingScheduler(FIFOScheduler("score", "max"))
    return fn(view, trial, {"training_iteration": iteration}, scheduler)


def cpus(resources: PlacementGroupFactory) -> float:
    return resources.required_resources.get("CPU", 0.0)


# --- the arithmetic -------------------------------------------------------------------------------
def test_fair_share_of_free_cpus():
    fn = DistributeResources(total_resources={"CPU": 8})
    # A and B hold 1 CPU each (their base). spare = 8 - 2 = 6 units, fair = ceil(6/2) = 3;
    # free = 8 - 1 - 1 = 6: A gets min(3, 0 + 6) = 3 units, 1 + 3 = 4 CPUs.
    a = allocate(fn, live("A", pgf({"CPU": 1})), [live("B", pgf({"CPU": 1}))])
    assert a == pgf({"CPU": 4})
    # Then B: free = 8 - 4 - 1 = 3, min(3, 0 + 3) = 3 units: 4 CPUs too.
    b = allocate(fn, live("B", pgf({"CPU": 1})), [live("A", pgf({"CPU": 4}))])
    assert b == pgf({"CPU": 4})


def test_a_new_trial_makes_the_others_give_back():
    fn = DistributeResources(total_resources={"CPU": 8})
    # C arrives (1 CPU) while A and B hold 4: spare = 8 - 3 = 5, fair = ceil(5/3) = 2;
    # free = 8 - 4 - 4 - 1 = -1: A keeps max(0, min(2, 3 - 1)) = 2 units, 3 CPUs.
    a = allocate(fn, live("A", pgf({"CPU": 4})),
                 [live("B", pgf({"CPU": 4})), live("C", pgf({"CPU": 1}))])
    assert a == pgf({"CPU": 3})


def test_increase_by_and_its_limit():
    fn = DistributeResources(increase_by={"CPU": 2}, increase_by_times=1,
                             total_resources={"CPU": 8})
    # unit 2 CPUs: spare = floor((8 - 2) / 2) = 3, fair = ceil(3/2) = 2, capped at 1;
    # free = floor(6 / 2) = 3: A gets min(1, 0 + 3) = 1 unit, 1 + 2 = 3 CPUs.
    assert allocate(fn, live("A", pgf({"CPU": 1})), [live("B", pgf({"CPU": 1}))]) == \
        pgf({"CPU": 3})
    unlimited = DistributeResources(increase_by={"CPU": 2}, total_resources={"CPU": 8})
    # Without the limit: min(2, 0 + 3) = 2 units, 5 CPUs.
    assert allocate(unlimited, live("A", pgf({"CPU": 1})), [live("B", pgf({"CPU": 1}))]) == \
        pgf({"CPU": 5})


def test_add_bundles_grows_by_bundles():
    fn = DistributeResources(add_bundles=True, total_resources={"CPU": 4})
    # One live trial, unit = its base's last bundle {CPU: 1}: spare = 3, fair = 3,
    # free = 3: 3 more bundles.
    base = pgf({"CPU": 1})
    assert allocate(fn, live("A", base, base), []) == pgf(*[{"CPU": 1}] * 4)
    # With a head bundle and a worker bundle the unit is the worker bundle {CPU: 2}:
    # spare = floor((8 - 3) / 2) = 2, free = 2: two more worker bundles.
    base = pgf({"CPU": 1}, {"CPU": 2})
    grown = allocate(DistributeResources(add_bundles=True, total_resources={"CPU": 8}),
                     live("A", base, base), [])
    assert grown.bundles == [{"CPU": 1}, {"CPU": 2}, {"CPU": 2}, {"CPU": 2}]


def test_gpus_are_the_unit_when_the_base_has_them():
    fn = DistributeResources(total_resources={"CPU": 8, "GPU": 4})
    base = pgf({"CPU": 1, "GPU": 1})
    # unit {GPU: 1}: spare = 4 - 2 = 2, fair = 1; free = 4 - 2 = 2: 1 more GPU.
    assert allocate(fn, live("A", base, base), [live("B", base, base)]) == \
        pgf({"CPU": 1, "GPU": 2})


def test_reserved_resources_are_never_handed_out():
    fn = DistributeResources(reserve_resources={"CPU": 2}, total_resources={"CPU": 8})
    # available = 8 - 2 = 6; A alone: spare = 5, fair = 5, free = 5: 6 CPUs.
    assert allocate(fn, live("A", pgf({"CPU": 1})), []) == pgf({"CPU": 6})


def test_top_job_takes_all_free_resources():
    fn = DistributeResourcesToTopJob(total_resources={"CPU": 8})
    a, b = live("A", pgf({"CPU": 1}), score=1.0), live("B", pgf({"CPU": 1}), score=5.0)
    # B is best: free = 8 - 2 = 6 units, all of them: 7 CPUs.
    assert allocate(fn, b, [a]) == pgf({"CPU": 7})
    # A is not: it keeps its 0 extra units (only gives back what the cluster lacks).
    assert allocate(fn, a, [b]) == pgf({"CPU": 1})
    # C arrives while B holds 7: free = 8 - 7 - 1 - 1 = -1. B gives one back: 6 + (-1)
    # = 5 units, 6 CPUs; A has none to give.
    b7, c = live("B", pgf({"CPU": 7}), score=5.0), live("C", pgf({"CPU": 1}))
    assert allocate(fn, b7, [a, c]) == pgf({"CPU": 6})
    assert allocate(fn, a, [b7, c]) == pgf({"CPU": 1})
    # mode="min": A (1.0) is best.
    low = DistributeResourcesToTopJob(total_resources={"CPU": 8}, metric="score", mode="min")
    assert allocate(low, a, [b]) == pgf({"CPU": 7})


def test_top_job_skips_trials_at_their_limit():
    fn = DistributeResourcesToTopJob(increase_by={"CPU": 1}, increase_by_times=2,
                                     total_resources={"CPU": 8})
    # B is best but already holds 2 extra units (its limit): A, next best, takes the
    # free ones: free = 8 - 3 - 1 = 4, at most 2 units: 3 CPUs.
    b, a = live("B", pgf({"CPU": 3}), score=5.0), live("A", pgf({"CPU": 1}), score=1.0)
    assert allocate(fn, a, [b]) == pgf({"CPU": 3})


def test_no_change_before_the_first_iteration_and_for_bad_shapes():
    fn = DistributeResources(total_resources={"CPU": 8})
    assert allocate(fn, live("A", pgf({"CPU": 1})), [], iteration=0) is None
    base = pgf({"CPU": 1}, {"CPU": 1})
    with pytest.raises(TuneError, match="add_bundles=True"):
        allocate(fn, live("A", base, base), [])


def test_the_cluster_total_comes_from_the_controller_or_an_argument():
    fn = DistributeResources()
    with pytest.raises(TuneError, match=r"total_resources=\{"):
        allocate(fn, live("A", pgf({"CPU": 1})), [])
    assert allocate(fn, live("A", pgf({"CPU": 1})), [], total={"CPU": 3}) == pgf({"CPU": 3})


@pytest.mark.parametrize("kwargs, expected", [
    ({"add_bundles": 1}, ["add_bundles=1", "True or False"]),
    ({"increase_by": {"CPU": 0}}, ["increase_by={'CPU': 0}", "> 0"]),
    ({"increase_by": {}}, ["increase_by={}"]),
    ({"increase_by_times": 1.5}, ["increase_by_times=1.5", "integer"]),
    ({"reserve_resources": {"CPU": -1}}, ["reserve_resources={'CPU': -1}", ">= 0"]),
    ({"total_resources": [8]}, ["total_resources=[8]"]),
])
def test_bad_allocation_arguments_are_named(kwargs, expected):
    with pytest.raises(ValueError) as err:
        DistributeResources(**kwargs)
    assert str(err.value).startswith("DistributeResources(")
    for part in expected:
        assert part in str(err.value)
    with pytest.raises(ValueError, match="mode='best'"):
        DistributeResourcesToTopJob(mode="best")
    with pytest.raises(ValueError, match="ResourceChangingScheduler\\(base_scheduler=3\\)"):
        ResourceChangingScheduler(base_scheduler=3)
    with pytest.raises(ValueError, match="resources_allocation_function=4"):
        ResourceChangingScheduler(resources_allocation_function=4)


# --- the wrapper ----------------------------------------------------------------------------------
def snap(trial_id: str, status: TrialStatus = RUNNING, resources=None, config=None,
         checkpoint=None) -> TrialSnapshot:
    return TrialSnapshot(trial_id=trial_id, status=status,
                         config=MappingProxyType(dict(config or {})), experiment_tag="",
                         last_result=MappingProxyType({}), resources=resources or pgf({"CPU": 1}),
                         has_checkpoint=checkpoint is not None, num_failures=0,
                         checkpoint=checkpoint)


class Base(TrialScheduler):
    """Records every hook; its decisions come from ``decide``."""

    metric, mode = "score", "max"

    def __init__(self) -> None:
        self.calls: List[tuple] = []
        self.decide: Any = SchedulerDecision.CONTINUE

    def on_trial_add(self, trial):
        self.calls.append(("add", trial.trial_id))

    def on_trial_result(self, trial, result):
        self.calls.append(("result", trial.trial_id))
        return self.decide

    def on_trial_complete(self, trial, result):
        self.calls.append(("complete", trial.trial_id))

    def on_trial_error(self, trial):
        self.calls.append(("error", trial.trial_id))

    def on_trial_remove(self, trial):
        self.calls.append(("remove", trial.trial_id))

    def choose_trial_to_run(self, candidates):
        self.calls.append(("choose", tuple(c.trial_id for c in candidates)))
        return candidates[0].trial_id if candidates else None

    def debug_string(self):
        return "Base"


def test_every_hook_reaches_the_base_scheduler():
    base = Base()
    rcs = ResourceChangingScheduler(base, DistributeResources(total_resources={"CPU": 1}))
    assert rcs.set_search_properties(None, None) and rcs.metric == "score"
    rcs.on_trial_add(snap("a", PENDING))
    assert rcs.choose_trial_to_run([snap("a", PENDING)]) == "a"
    assert rcs.on_trial_result(snap("a"), {"training_iteration": 1}) == SchedulerDecision.CONTINUE
    rcs.on_trial_complete(snap("a", TERMINATED), {})
    rcs.on_trial_error(snap("b"))
    rcs.on_trial_remove(snap("c"))
    assert base.calls == [("add", "a"), ("choose", ("a",)), ("result", "a"), ("complete", "a"),
                          ("error", "b"), ("remove", "c")]
    assert "Base" in rcs.debug_string()


def test_base_decisions_other_than_continue_pass_through():
    base = Base()
    rcs = ResourceChangingScheduler(base, DistributeResources(total_resources={"CPU": 8}))
    rcs.on_trial_add(snap("a", PENDING))
    restart = RestartTrial(checkpoint=None, config={})
    for decision in (SchedulerDecision.PAUSE, SchedulerDecision.STOP, restart):
        base.decide = decision
        assert rcs.on_trial_result(snap("a"), {"training_iteration": 2}) == decision
    base.decide = SchedulerDecision.CONTINUE
    decision = rcs.on_trial_result(snap("a"), {"training_iteration": 2})
    assert decision == ChangeResources(pgf({"CPU": 8}))
    # Once the trial has them, no change.
    assert rcs.on_trial_result(snap("a", resources=pgf({"CPU": 8})),
                               {"training_iteration": 3}) == SchedulerDecision.CONTINUE


def test_user_functions_dicts_and_none():
    calls = []

    def grow(trials, trial, result, scheduler):
        calls.append((len(trials.get_live_trials()), trial.trial_id,
                      result["training_iteration"], scheduler.base_trial_resources))
        return {"CPU": 2, "GPU": 0}

    rcs = ResourceChangingScheduler(resources_allocation_function=grow)
    rcs.set_search_properties("score", "max")
    rcs.on_trial_add(snap("a", PENDING))
    rcs.on_trial_add(snap("b", PENDING))
    assert rcs.on_trial_result(snap("a"), {"training_iteration": 1}) == \
        ChangeResources(pgf({"CPU": 2}))
    assert calls == [(2, "a", 1, pgf({"CPU": 1}))]
    never = ResourceChangingScheduler(resources_allocation_function=None)
    never.on_trial_add(snap("a", PENDING))
    assert never.on_trial_result(snap("a"), {"training_iteration": 1}) == \
        SchedulerDecision.CONTINUE


def test_cluster_resources_hook_and_pickling():
    rcs = ResourceChangingScheduler()  # DistributeResources without a total
    rcs.set_cluster_resources({"CPU": 3.0, "memory": 1e9})
    rcs.on_trial_add(snap("a", PENDING))
    copy = pickle.loads(pickle.dumps(rcs))
    assert copy.on_trial_result(snap("a"), {"training_iteration": 1}) == \
        ChangeResources(pgf({"CPU": 3}))
    fresh = ResourceChangingScheduler()
    fresh.set_state(pickle.loads(pickle.dumps(rcs.get_state())))
    assert fresh.on_trial_result(snap("a"), {"training_iteration": 1}) == \
        ChangeResources(pgf({"CPU": 3}))


def test_engine_hooks_reach_a_pbt_base(tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="score", mode="max",
                                  hyperparam_mutations={"lr": [1, 2, 3]})
    rcs = ResourceChangingScheduler(pbt)
    assert rcs.complete_config({})["lr"] in (1, 2, 3)
    rcs.set_experiment_path(str(tmp_path))
    assert pbt._experiment_path == str(tmp_path)
    assert rcs.on_trial_resume(snap("a", TrialStatus.PAUSED)) is None
    assert rcs.pauses_trials


def test_metric_needed_before_the_first_trial():
    rcs = ResourceChangingScheduler(ASHAScheduler())
    with pytest.raises(ValueError) as err:
        rcs.on_trial_add(snap("a", PENDING))
    message = str(err.value)
    assert "ResourceChangingScheduler" in message and "TuneConfig(metric=..., mode=...)" in message
    # FIFO with DistributeResources needs none; with the top-job function it does.
    ResourceChangingScheduler().on_trial_add(snap("a", PENDING))
    with pytest.raises(ValueError, match="no metric"):
        ResourceChangingScheduler(
            resources_allocation_function=DistributeResourcesToTopJob()).on_trial_add(
            snap("a", PENDING))
    assert isinstance(create_scheduler("resource_changing"), ResourceChangingScheduler)


# --- the controller with the fake executor --------------------------------------------------------
def run(configs, scheduler, tmp_path, cpus=2.0):
    executor = FakeExecutor(cpus=cpus)
    ctrl = TuneController(executor=executor, search_alg=ListSearch(configs), scheduler=scheduler,
                          experiment_path=str(tmp_path), poll_timeout=0)
    ctrl.run()
    return ctrl, executor


def test_controller_relaunches_a_trial_in_its_new_shape_from_its_checkpoint(tmp_path):
    scheduler = ResourceChangingScheduler()
    scheduler.set_cluster_resources(FakeExecutor(cpus=2).total_resources())  # the hook
    ctrl, executor = run([{"results": [{"score": i} for i in range(4)]}], scheduler, tmp_path)
    (trial,) = ctrl.trials
    assert trial.status == TERMINATED
    first, second = executor.launches
    # After its first result it may have the whole cluster: 1 + 1 = 2 CPUs.
    assert cpus(first.resources) == 1 and cpus(second.resources) == 2
    assert second.checkpoint_path == f"{trial.path}/checkpoint_000000"
    assert second.restored_iteration == 1
    assert trial.last_result["training_iteration"] == 4
    assert scheduler.num_changes == 1


def test_controller_shares_the_cluster_between_two_trials(tmp_path):
    scheduler = ResourceChangingScheduler(
        resources_allocation_function=DistributeResources(total_resources={"CPU": 4}))
    configs = [{"results": [{"score": i} for i in range(5)]} for _ in range(2)]
    ctrl, executor = run(configs, scheduler, tmp_path, cpus=4)
    assert all(t.status == TERMINATED for t in ctrl.trials)
    for trial in ctrl.trials:
        launches = [launch for launch in executor.launches if launch.trial_id == trial.trial_id]
        # Two live trials: spare = 4 - 2 = 2, fair = 1 each: 2 CPUs, from its checkpoint.
        assert [cpus(launch.resources) for launch in launches] == [1, 2]
        assert launches[1].checkpoint_path is not None and launches[1].restored_iteration >= 1
        assert trial.last_result["training_iteration"] == 5
    assert executor.max_running_seen == 2


# --- a real local Ray -----------------------------------------------------------------------------
def report_resources(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            start = json.load(f)["iteration"]
    for iteration in range(start + 1, 5):
        time.sleep(0.2)
        d = os.path.join(tune.get_context().get_trial_dir(), "scratch", str(iteration))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"iteration": iteration}, f)
        resources = tune.get_context().get_trial_resources()
        tune.report({"score": iteration, "cpus": resources.required_resources["CPU"],
                     "resumed_from": start}, checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.ray
def test_end_to_end_on_ray(ray_local, tmp_path):
    scheduler = ResourceChangingScheduler(
        resources_allocation_function=DistributeResources(total_resources={"CPU": 2}))
    results = tune.Tuner(
        report_resources,
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    (result,) = results
    assert result.error is None
    with open(os.path.join(result.path, "result.json")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    # The first run had 1 CPU; after its first result it got the whole cluster, and
    # resumed from its checkpoint in the new placement group. (The run may report a
    # result or two more before the pause reaches it: it then resumes from the newest.)
    shapes = [r["cpus"] for r in rows]
    moved = shapes.index(2)
    assert 1 <= moved <= 3 and shapes == [1] * moved + [2] * (4 - moved)
    assert rows[0]["resumed_from"] == 0 and rows[moved]["resumed_from"] == moved
