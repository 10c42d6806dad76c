"""Pauses, stops, crashes and worker reuse on a real local Ray: what a user sees in the files."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import tune_core as tune
from tune_core.schedulers.trial_scheduler import FIFOScheduler, SchedulerDecision

pytestmark = pytest.mark.usefixtures("ray_local")


def quiet(tmp_path, **kwargs):
    return tune.RunConfig(storage_path=str(tmp_path), verbose=0, **kwargs)


def rows(trial_path):
    with open(os.path.join(trial_path, "result.json")) as f:
        return [json.loads(line) for line in f]


class PauseOnceAt(FIFOScheduler):
    """Pauses each trial once, at the given iteration."""

    pauses_trials = True

    def __init__(self, at):
        super().__init__()
        self.at = at
        self.paused = set()

    def on_trial_result(self, trial, result):
        if result["training_iteration"] >= self.at and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return SchedulerDecision.PAUSE
        return SchedulerDecision.CONTINUE


class Counter(tune.Trainable):
    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        time.sleep(0.01)
        if self.count == self.config.get("crash_at") and not os.path.exists("crashed"):
            open("crashed", "w").close()
            os._exit(1)  # the worker process dies
        return {"count": self.count, "done": self.count >= self.config.get("n", 20)}

    def save_checkpoint(self, checkpoint_dir):
        return {"count": self.count}

    def load_checkpoint(self, state):
        self.count = state["count"]


def test_paused_class_trial_resumes_where_it_saved(tmp_path):
    results = tune.Tuner(Counter, param_space={"n": 20},
                         tune_config=tune.TuneConfig(scheduler=PauseOnceAt(3)),
                         run_config=quiet(tmp_path)).fit()
    (result,) = results
    assert result.metrics["count"] == 20
    history = rows(result.path)
    # every iteration exactly once, and the object's state matches the counter
    assert [r["training_iteration"] for r in history] == list(range(1, 21))
    assert all(r["count"] == r["training_iteration"] for r in history)
    assert history[-1]["iterations_since_restore"] < 20  # it did restart


def test_class_trial_retried_after_its_worker_dies(tmp_path):
    results = tune.Tuner(
        Counter, param_space={"n": 12, "crash_at": 8},
        run_config=quiet(tmp_path, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
                         failure_config=tune.FailureConfig(max_failures=1))).fit()
    (result,) = results
    assert result.error is None
    assert result.metrics["count"] == 12
    history = rows(result.path)
    assert [r["count"] for r in history] == [r["training_iteration"] for r in history]
    assert history[-1]["training_iteration"] == 12
    with open(os.path.join(result.path, "error.txt")) as f:
        assert "died" in f.read()


def test_checkpoint_at_end_when_the_stopper_ends_a_class_trial(tmp_path):
    results = tune.Tuner(
        Counter, param_space={"n": 1000},
        run_config=quiet(tmp_path, stop={"training_iteration": 3},
                         checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True))).fit()
    (result,) = results
    assert result.metrics["training_iteration"] == 3
    assert result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        assert os.path.exists(os.path.join(d, ".tune_metadata"))


class SaveFails(Counter):
    def save_checkpoint(self, checkpoint_dir):
        raise RuntimeError("disk full while saving")


def test_a_failing_save_during_a_pause_is_the_trials_error(tmp_path):
    results = tune.Tuner(SaveFails, param_space={"n": 20},
                         tune_config=tune.TuneConfig(scheduler=PauseOnceAt(2)),
                         run_config=quiet(tmp_path)).fit()
    (result,) = results
    assert result.error is not None
    assert "disk full while saving" in str(result.error)
    with open(os.path.join(result.path, "error.txt")) as f:
        text = f.read()
    assert "save_checkpoint" in text and "_worker.py" not in text


def test_threads_left_running_do_not_report_into_the_next_trial(tmp_path):
    def train_fn(config):
        if config["i"] == 0:
            def chatter():
                while True:
                    time.sleep(0.02)
                    try:
                        tune.report({"who": "leftover"})
                    except BaseException:
                        pass
            threading.Thread(target=chatter, daemon=True).start()
            time.sleep(0.2)
            return {"who": "first"}
        for _ in range(5):
            time.sleep(0.05)
            tune.report({"who": "second"})

    results = tune.Tuner(train_fn, param_space={"i": tune.grid_search([0, 1])},
                         tune_config=tune.TuneConfig(max_concurrent_trials=1),
                         run_config=quiet(tmp_path)).fit()
    second = next(r for r in results if r.config["i"] == 1)
    assert [r["who"] for r in rows(second.path)] == ["second"] * 5


@pytest.mark.timeout(60)
def test_a_function_stuck_between_reports_is_stopped_without_a_long_wait(tmp_path):
    def train_fn(config):
        tune.report({"a": 1})
        time.sleep(600)  # never reports again
        tune.report({"a": 2})

    results = tune.Tuner(train_fn, run_config=quiet(tmp_path, stop={"training_iteration": 1}))\
        .fit()
    (result,) = results
    assert result.error is None
    assert result.metrics["a"] == 1


def test_a_function_paused_and_resumed_from_its_checkpoint(tmp_path):
    def train_fn(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with open(os.path.join(checkpoint.path, "state.json")) as f:
                start = json.load(f)["epoch"] + 1
        for epoch in range(start, 10):
            d = os.path.join(tune.get_context().get_trial_dir(), f"tmp_{epoch}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"epoch": epoch}, f)
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))

    results = tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=PauseOnceAt(3)),
                         run_config=quiet(tmp_path)).fit()
    (result,) = results
    history = rows(result.path)
    assert [r["epoch"] for r in history] == list(range(10))
    assert [r["training_iteration"] for r in history] == list(range(1, 11))


class KillWorkerWhenDone(tune.Callback):
    """SIGKILLs the first trial's worker once the trial is done and its worker is pooled."""

    def __init__(self):
        self.killed = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        import signal

        if self.killed is None:
            self.killed = trial.last_result["pid"]
            os.kill(self.killed, signal.SIGKILL)
            time.sleep(0.5)  # dead before the next trial is sent to it


def test_a_pooled_worker_that_died_while_idle_costs_the_next_trial_nothing(tmp_path):
    killer = KillWorkerWhenDone()
    results = tune.Tuner(
        lambda config: {"pid": os.getpid()},
        param_space={"i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=quiet(tmp_path, callbacks=[killer])).fit()
    assert killer.killed is not None
    assert results.num_errors == 0
    second = [r for r in results if r.config["i"] == 1][0]
    assert second.metrics["pid"] != killer.killed
    assert not os.path.exists(os.path.join(second.path, "error.txt"))
