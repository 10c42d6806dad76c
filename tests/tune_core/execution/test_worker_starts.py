"""New worker processes start no more at once than the CPUs can run.

Starting a Ray worker is CPU-bound (``import ray``); started all at once on few CPUs
they slow each other down, and Ray holds back even the first ones' replies until the
crowd is up. The executor starts as many as there are CPUs, the next ones as those come
up; the trials waiting for a worker keep their resources and can be stopped or paused.
"""

from __future__ import annotations

import os
import time

import pytest

import tune_core as tune
from tune_core.execution.executor import (TrialFinished, TrialLaunch, TrialPaused,
                                          TrialStarted, TrialStopped)
from tune_core.execution.placement_groups import PlacementGroupFactory


@pytest.fixture(autouse=True)
def _ray(ray_local):
    tune.release_workers()  # no worker of an earlier test is taken over
    yield
    tune.release_workers()


def _since_boot() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _process_created_since_boot() -> float:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime: the 22nd field


def report_process_times(config):
    tune.report({"pid": os.getpid(), "created": _process_created_since_boot(),
                 "began": _since_boot()})
    time.sleep(2.0)  # the trials run at once (most of them): each needs a worker of its own


def test_worker_processes_start_no_more_at_once_than_there_are_cpus(tmp_path):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    fit_started = _since_boot()
    results = tune.Tuner(
        tune.with_resources(report_process_times, {"cpu": 0.25}),
        param_space={"i": tune.grid_search(list(range(4 * cpus)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert results.num_errors == 0, results.errors
    # Each worker process: when it was created, and when its first trial began (a
    # worker may run a later trial too, once its first has ended).
    processes = {}
    for row in (r.metrics for r in results):
        created, began = processes.get(row["pid"], (row["created"], row["began"]))
        processes[row["pid"]] = (created, min(began, row["began"]))
    new = {pid: times for pid, times in processes.items() if times[0] >= fit_started}
    assert len(new) > cpus  # more than may start at once
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    for pid, (created, _) in new.items():
        # Workers still starting when this one was created: created before it, and no
        # trial had begun in them yet (with a margin for the clock ticks of "created").
        starting = [other for other, (c, b) in processes.items()
                    if other != pid and c <= created and b > created + 5 * tick]
        assert len(starting) <= cpus - 1, (pid, created, starting, processes)


def test_max_starting_workers_must_be_a_positive_int():
    from tune_core.execution.ray_executor import RayExecutor

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="max_starting_workers"):
            RayExecutor(report_pid, max_starting_workers=bad)


def report_pid(config):
    tune.report({"pid": os.getpid()})


def _launch(tmp_path, trial_id):
    return TrialLaunch(trial_id=trial_id, trial_name=trial_id,
                       trial_dir=str(tmp_path / trial_id), experiment_name="exp",
                       experiment_path=str(tmp_path), config={},
                       resources=PlacementGroupFactory([{"CPU": 1}]))


def _events_until(executor, done, timeout=60.0, polls=None):
    events = []
    deadline = time.monotonic() + timeout
    while not done(events) and time.monotonic() < deadline:
        new = executor.poll(0.1)
        if polls is not None:
            polls.append(new)
        events += new
    return events


@pytest.mark.parametrize("pause", [False, True])
def test_a_trial_waiting_for_its_worker_to_start_can_be_stopped_or_paused(tmp_path, pause):
    from tune_core.execution.ray_executor import RayExecutor

    executor = RayExecutor(report_pid, max_starting_workers=1)
    executor.setup()
    try:
        one_cpu = PlacementGroupFactory([{"CPU": 1}])
        executor.start_trial(_launch(tmp_path, "first"))
        executor.start_trial(_launch(tmp_path, "waits"))  # after "first"'s worker is up
        assert not executor.can_start(one_cpu)  # its CPU is held for it meanwhile
        (executor.pause_trial if pause else executor.stop_trial)("waits")
        assert executor.can_start(one_cpu)  # and free again once it is stopped
        events = _events_until(executor, lambda evs: any(
            isinstance(e, TrialFinished) and e.trial_id == "first" for e in evs))
        of_waits = [e for e in events if e.trial_id == "waits"]
        assert len(of_waits) == 1, events
        assert isinstance(of_waits[0], TrialPaused if pause else TrialStopped)
        assert of_waits[0].checkpoint_path is None  # it never ran: nothing to resume from
        assert any(isinstance(e, TrialStarted) and e.trial_id == "first" for e in events)
    finally:
        executor.shutdown()


def test_trials_waiting_for_a_worker_start_as_earlier_ones_come_up(tmp_path):
    from tune_core.execution.ray_executor import RayExecutor

    executor = RayExecutor(report_pid, max_starting_workers=1, reuse_actors=False)
    executor.setup()
    try:
        for trial_id in ("a", "b"):
            executor.start_trial(_launch(tmp_path, trial_id))
        assert executor.num_workers() == 1  # "b"'s is not made while "a"'s starts
        polls = []
        events = _events_until(executor, lambda evs: {
            e.trial_id for e in evs if isinstance(e, TrialFinished)} == {"a", "b"},
            polls=polls)
        started_in = {e.trial_id: i for i, new in enumerate(polls) for e in new
                      if isinstance(e, TrialStarted)}
        # "b"'s worker is made once "a"'s has answered: its start comes in a later poll
        assert started_in["a"] < started_in["b"], polls
        pids = {e.pid for e in events if isinstance(e, TrialStarted)}
        assert len(pids) == 2  # each in a new worker (no reuse)
    finally:
        executor.shutdown()


def test_short_trials_still_get_as_many_workers_as_fit_at_once(tmp_path):
    # Trials that end at once free their worker before the waiting trials need a new
    # one; the pool still grows to what the resources allow (4 at 0.5 CPU on 2 CPUs),
    # so that the driver always has trials running while it handles the others.
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    results = tune.Tuner(
        tune.with_resources(report_pid, {"cpu": 0.5}),
        param_space={"i": tune.grid_search(list(range(200)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert results.num_errors == 0, results.errors
    assert len({r.metrics["pid"] for r in results}) == 2 * cpus
