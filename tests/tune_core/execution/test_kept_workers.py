"""Worker processes that outlive fit() (TuneConfig(keep_workers_s=...)), and idle workers
that must never keep a new worker from starting."""

from __future__ import annotations

import os
import time

import pytest

import tune_core as tune
from tune_core.execution.executor import TrialFinished, TrialLaunch
from tune_core.execution.placement_groups import PlacementGroupFactory


@pytest.fixture(autouse=True)
def _ray(ray_local):
    yield
    tune.release_workers()  # nothing kept leaks into the next test


def _fit(trainable, tmp_path, name, **tune_config):
    return tune.Tuner(trainable, param_space={"x": 3},
                      tune_config=tune.TuneConfig(**tune_config),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name=name,
                                                verbose=0)).fit()


def report_pid(config):
    tune.report({"pid": os.getpid(), "x": config["x"], "kind": "function"})


class ReportPid(tune.Trainable):
    def setup(self, config):
        self.x = config["x"] * 10

    def step(self):
        return {"pid": os.getpid(), "x": self.x, "kind": "class", "done": True}


def _free_cpus_become(n, timeout=20.0):
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == n:
            return True
        time.sleep(0.1)
    return False


def test_the_next_fit_starts_its_trials_in_the_workers_the_last_one_kept(tmp_path):
    first = _fit(report_pid, tmp_path, "a", keep_workers_s=60)
    assert first.num_errors == 0, first.errors
    # the kept worker holds its CPU after fit() returned
    assert _free_cpus_become(1)
    # Another experiment, with another trainable (a class): same process, its own code.
    second = _fit(ReportPid, tmp_path, "b", keep_workers_s=60)
    assert second.num_errors == 0, second.errors
    assert second[0].metrics["pid"] == first[0].metrics["pid"]
    assert (second[0].metrics["kind"], second[0].metrics["x"]) == ("class", 30)
    # and back to the function, again in that process
    third = _fit(report_pid, tmp_path, "c")
    assert third[0].metrics["pid"] == first[0].metrics["pid"]
    assert third[0].metrics["kind"] == "function"
    # the last fit() kept nothing (keep_workers_s=0): everything is free again
    assert tune.release_workers() == 0
    assert _free_cpus_become(2)


def test_kept_workers_end_when_their_time_is_up_or_on_release(tmp_path):
    _fit(report_pid, tmp_path, "a", keep_workers_s=1.5)
    assert _free_cpus_become(1)
    assert _free_cpus_become(2)  # ended by the timer
    assert tune.release_workers() == 0
    _fit(report_pid, tmp_path, "b", keep_workers_s=600)
    assert _free_cpus_become(1)
    assert tune.release_workers() == 1
    assert _free_cpus_become(2)


def test_reuse_actors_false_does_not_take_kept_workers(tmp_path):
    first = _fit(report_pid, tmp_path, "a", keep_workers_s=60)
    second = _fit(report_pid, tmp_path, "b", reuse_actors=False)
    assert second.num_errors == 0, second.errors
    assert second[0].metrics["pid"] != first[0].metrics["pid"]
    assert tune.release_workers() == 0  # the kept one was ended, not kept again
    assert _free_cpus_become(2)


def test_workers_kept_in_a_ray_instance_that_was_shut_down_are_not_used(tmp_path):
    import ray

    from tests.conftest import _init_local_ray

    first = _fit(report_pid, tmp_path, "a", keep_workers_s=60)
    assert first.num_errors == 0, first.errors
    ray.shutdown()  # the kept worker ended with its Ray instance
    _init_local_ray()
    assert tune.release_workers() == 0  # its handle is not offered to the new instance
    second = _fit(report_pid, tmp_path, "b", keep_workers_s=60)
    assert second.num_errors == 0, second.errors
    assert second[0].metrics["pid"] != first[0].metrics["pid"]


@pytest.mark.parametrize("bad", [-1, "10", True, float("inf"), None])
def test_bad_keep_workers_s_is_named(bad):
    with pytest.raises(ValueError, match=r"keep_workers_s=.*seconds >= 0"):
        tune.TuneConfig(keep_workers_s=bad)


def test_keep_workers_s_with_reuse_actors_false_is_refused():
    with pytest.raises(ValueError, match="keep_workers_s=5.*reuse_actors=False"):
        tune.TuneConfig(keep_workers_s=5, reuse_actors=False)


def _launch(tmp_path, name, cpus):
    return TrialLaunch(trial_id=name, trial_name=name, trial_dir=str(tmp_path / name),
                       experiment_name="exp", experiment_path=str(tmp_path), config={"x": 1},
                       resources=PlacementGroupFactory([{"CPU": cpus}]))


def _run_until_finished(executor, trial_ids, timeout):
    finished = set()
    deadline = time.monotonic() + timeout
    while finished != set(trial_ids) and time.monotonic() < deadline:
        for event in executor.poll(0.1):
            if isinstance(event, TrialFinished):
                finished.add(event.trial_id)
    return finished


def test_idle_workers_make_way_when_the_cluster_is_smaller_than_counted(tmp_path):
    """A lost node that Ray has not declared dead yet is still counted: a new worker's
    placement group then waits for resources that idle workers hold. They give way."""
    from tune_core.execution.ray_executor import RayExecutor

    executor = RayExecutor(report_pid)
    executor.setup()
    try:
        for name in ("one", "two"):
            executor.start_trial(_launch(tmp_path, name, 1))
        assert _run_until_finished(executor, ["one", "two"], 60) == {"one", "two"}
        assert executor.num_workers() == 2  # both idle, holding a CPU each
        executor._total["CPU"] += 2  # the node that is gone but still counted
        big = _launch(tmp_path, "big", 2)
        assert executor.can_start(big.resources)
        executor.start_trial(big)
        assert _run_until_finished(executor, ["big"], 60) == {"big"}
        assert executor.num_workers() == 1
    finally:
        executor.shutdown()
