"""Experiment state and Tuner.restore: a killed driver's experiment finishes after a restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tune_core as tune
from tune_core.experiment.experiment_state import STATE_FILE, read_experiment_json

from . import _crash_experiment as crash

pytestmark = pytest.mark.usefixtures("ray_local")


def rows(path):
    with open(os.path.join(path, "result.json")) as f:
        return [json.loads(line) for line in f]


def run_driver_until(storage, name, ready, timeout=120):
    """Start the crash experiment in its own driver process; SIGKILL it once ready(path)."""
    path = os.path.join(storage, name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, crash.__file__, storage, name], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready(path):
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "the experiment never reached the kill point"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
        proc.wait()
    return path


def completed_epochs(path):
    """Results written so far by all trials of the experiment at ``path``."""
    total = 0
    if not os.path.isdir(path):
        return 0
    for entry in os.listdir(path):
        f = os.path.join(path, entry, "result.json")
        if os.path.exists(f):
            with open(f) as fh:
                total += sum(1 for _ in fh)
    return total


def state_written(path):
    return os.path.exists(os.path.join(path, STATE_FILE))


@pytest.mark.parametrize("kill_after_results", [1, 12], ids=["early", "mid-run"])
def test_restore_after_the_driver_is_killed(tmp_path, kill_after_results):
    storage = str(tmp_path)
    path = run_driver_until(storage, "exp", lambda p: state_written(p) and
                            completed_epochs(p) >= kill_after_results)
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, crash.train_fn).fit()

    assert len(results) == crash.NUM_SAMPLES  # the search went on, without repeats
    assert results.num_errors == 0
    lrs = [r.config["lr"] for r in results]
    assert len(set(lrs)) == crash.NUM_SAMPLES
    # the same configurations as an uninterrupted run with the same seed
    fresh = crash.make_tuner(storage, "fresh")
    fresh._run_config = tune.RunConfig(storage_path=storage, name="fresh", verbose=0)
    expected = sorted(r.config["lr"] for r in fresh.fit())
    assert sorted(lrs) == pytest.approx(expected)
    for r in results:
        assert r.metrics["score"] == pytest.approx(crash.expected_score(r.config))
        history = rows(r.path)
        assert [h["training_iteration"] for h in history] == list(range(1, crash.EPOCHS + 1))
        assert [h["epoch"] for h in history] == list(range(crash.EPOCHS))


def test_results_load_from_the_path_without_the_trainable(tmp_path):
    def train_fn(config):
        return {"score": config["x"]}

    results = tune.Tuner(train_fn, param_space={"x": tune.grid_search([1, 2, 3])},
                         run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    loaded = tune.ResultGrid.from_path(results.experiment_path)
    assert len(loaded) == 3
    assert sorted(r.metrics["score"] for r in loaded) == [1, 2, 3]
    assert loaded.get_best_result("score", "max").config == {"x": 3}


def test_a_new_run_never_overwrites_an_experiment(tmp_path):
    def train_fn(config):
        return {"score": 1}

    config = tune.RunConfig(storage_path=str(tmp_path), name="same", verbose=0)
    tune.Tuner(train_fn, run_config=config).fit()
    with pytest.raises(ValueError, match="already holds an experiment.*Tuner.restore"):
        tune.Tuner(train_fn, run_config=config).fit()


def flaky(config):
    marker = os.path.join(config["dir"], "failed_once")
    for i in range(4):
        if i == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("fails the first time")
        tune.report({"i": i})


@pytest.mark.parametrize("how", ["resume_errored", "restart_errored", "neither"])
def test_restore_errored_trials(tmp_path, how):
    config = tune.RunConfig(storage_path=str(tmp_path / "results"), name="exp", verbose=0)
    results = tune.Tuner(flaky, param_space={"dir": str(tmp_path)}, run_config=config).fit()
    assert results.num_errors == 1
    flags = {how: True} if how != "neither" else {}
    restored = tune.Tuner.restore(results.experiment_path, flaky, **flags).fit()
    (result,) = restored
    if how == "neither":
        assert restored.num_errors == 1
        return
    assert restored.num_errors == 0
    assert result.metrics["i"] == 3
    history = rows(result.path)
    assert [h["training_iteration"] for h in history] == [1, 2, 3, 4]


def test_restore_a_path_without_an_experiment(tmp_path):
    with pytest.raises(ValueError, match="no experiment to restore"):
        tune.Tuner.restore(str(tmp_path), flaky)
    assert not tune.Tuner.can_restore(str(tmp_path))


def test_ctrl_c_stops_gracefully_and_the_experiment_restores(tmp_path):
    storage = str(tmp_path)
    path = os.path.join(storage, "exp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, crash.__file__, storage, "exp"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while completed_epochs(path) < 4:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # one Ctrl+C: stop trials, save, exit
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    state = read_experiment_json(path)
    assert state["interrupted"] and not state["finished"]
    unfinished = [t for t in state["trials"] if t["status"] != "TERMINATED"]
    assert unfinished and all(t["status"] in ("PAUSED", "PENDING") for t in unfinished)
    results = tune.Tuner.restore(path, crash.train_fn).fit()
    assert len(results) == crash.NUM_SAMPLES and results.num_errors == 0
    for r in results:
        assert r.metrics["score"] == pytest.approx(crash.expected_score(r.config))
