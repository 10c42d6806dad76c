"""Experiments on S3 (a real moto server on 127.0.0.1): checkpoints, logs, restore, outages."""

from __future__ import annotations

import json
import os
import pickle
import posixpath
import shutil
import tempfile
import threading

import pytest

import tune_core as tune
from tune_core import storage
from tune_core.experiment.experiment_state import STATE_FILE, read_experiment_json

pytestmark = pytest.mark.usefixtures("ray_local")


def train_fn(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        if config.get("sleep"):
            import time

            time.sleep(config["sleep"])
        with open("artifact.txt", "a") as f:  # the trial's working directory
            f.write(f"{epoch}\n")
        if epoch == config.get("fail_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("injected failure")
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"epoch": epoch}, f)
        tune.report({"score": config["lr"] * (epoch + 1), "epoch": epoch},
                    checkpoint=tune.Checkpoint.from_directory(d))
        shutil.rmtree(d)


def read_text(fs, path):
    return storage.read_bytes(fs, path).decode()


def trial_dirs(fs, experiment):
    return [posixpath.join(experiment, name) for name in storage.list_dir(fs, experiment)
            if storage.exists(fs, posixpath.join(experiment, name, "params.json"))]


def iterations(fs, trial_dir):
    lines = read_text(fs, posixpath.join(trial_dir, "result.json")).splitlines()
    return [json.loads(line)["training_iteration"] for line in lines]


def checkpoints(fs, trial_dir):
    return [n for n in storage.list_dir(fs, trial_dir) if n.startswith("checkpoint_")]


def staging_checkpoint_dirs():
    found = []
    for root, dirs, _ in os.walk(os.environ["TUNE_STAGING_DIR"]):
        found += [os.path.join(root, d) for d in dirs if d.startswith("checkpoint_")]
    return found


def test_function_trainable_checkpoints_logs_and_artifacts_land_on_s3(s3_bucket):
    uri = s3_bucket.uri("exps")
    results = tune.Tuner(
        train_fn, param_space={"lr": tune.grid_search([0.1, 0.2]), "epochs": 3},
        run_config=tune.RunConfig(storage_path=uri, name="fn", verbose=0,
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    ).fit()
    assert results.num_errors == 0
    assert tune.Tuner.can_restore(results.experiment_path)
    fs = s3_bucket.fs
    experiment = s3_bucket.path("exps/fn")
    state = read_experiment_json(experiment, fs)
    assert [t["status"] for t in state["trials"]] == ["TERMINATED", "TERMINATED"]
    dirs = trial_dirs(fs, experiment)
    assert len(dirs) == 2
    for trial_dir in dirs:
        assert iterations(fs, trial_dir) == [1, 2, 3]
        csv = read_text(fs, posixpath.join(trial_dir, "progress.csv")).splitlines()
        assert len(csv) == 4  # header and three rows
        assert read_text(fs, posixpath.join(trial_dir, "artifact.txt")).split() == \
            ["0", "1", "2"]
        names = checkpoints(fs, trial_dir)
        assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
        for name in names:
            assert storage.is_complete_checkpoint(fs, posixpath.join(trial_dir, name))
    for result in results:
        assert result.checkpoint.filesystem.type_name == "s3"
        assert result.path.startswith(experiment + "/")
        with result.checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                assert json.load(f) == {"epoch": 2}
        assert list(result.metrics_dataframe["training_iteration"]) == [1, 2, 3]
    # Workers wrote the checkpoints straight to S3; the driver never copied them.
    assert staging_checkpoint_dirs() == []

    loaded = tune.ResultGrid.from_path(results.experiment_path)
    assert sorted(r.metrics["score"] for r in loaded) == pytest.approx([0.3, 0.6])
    assert all(list(r.metrics_dataframe["epoch"]) == [0, 1, 2] for r in loaded)


def test_restore_from_s3_on_a_machine_without_the_local_files(s3_bucket, tmp_path):
    uri = s3_bucket.uri("exps")
    marker = str(tmp_path / "failed_once")
    tuner = tune.Tuner(
        train_fn,
        param_space={"lr": 0.5, "epochs": 5, "fail_at": 3, "marker": marker},
        run_config=tune.RunConfig(
            storage_path=uri, name="restore_me", verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    first = tuner.fit()
    assert first.num_errors == 1
    fs = s3_bucket.fs
    (trial_dir,) = trial_dirs(fs, s3_bucket.path("exps/restore_me"))
    assert iterations(fs, trial_dir) == [1, 2, 3]
    assert checkpoints(fs, trial_dir) == ["checkpoint_000002"]  # num_to_keep=1
    # Another machine: nothing of the experiment on the local disk.
    shutil.rmtree(os.environ["TUNE_STAGING_DIR"])
    os.makedirs(os.environ["TUNE_STAGING_DIR"])

    restored = tune.Tuner.restore(first.experiment_path, train_fn, resume_errored=True).fit()
    assert restored.num_errors == 0
    (result,) = restored
    assert result.metrics["score"] == pytest.approx(0.5 * 5)
    assert result.metrics["iterations_since_restore"] == 2  # it resumed after epoch 2
    assert iterations(fs, trial_dir) == [1, 2, 3, 4, 5]
    assert checkpoints(fs, trial_dir) == ["checkpoint_000004"]
    assert "injected failure" in read_text(fs, posixpath.join(trial_dir, "error.txt"))


class Scored(tune.Trainable):
    SCORES = [1.0, 5.0, 2.0, 4.0, 3.0]

    def setup(self, config):
        self.step_no = 0

    def step(self):
        score = self.SCORES[self.step_no]
        self.step_no += 1
        return {"score": score, "done": self.step_no == len(self.SCORES)}

    def save_checkpoint(self, checkpoint_dir):
        return {"step_no": self.step_no}

    def load_checkpoint(self, state):
        self.step_no = state["step_no"]


def test_class_trainable_on_a_custom_filesystem_keeps_the_best_checkpoints(s3_server,
                                                                           s3_bucket):
    results = tune.Tuner(
        Scored,
        run_config=tune.RunConfig(
            storage_path=s3_bucket.path("exps"), storage_filesystem=s3_server.filesystem(),
            name="scored", verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="score", checkpoint_frequency=1)),
    ).fit()
    (result,) = results
    fs = s3_bucket.fs
    (trial_dir,) = trial_dirs(fs, s3_bucket.path("exps/scored"))
    # The two best (scores 5 and 4, iterations 2 and 4) and the newest (iteration 5).
    assert checkpoints(fs, trial_dir) == ["checkpoint_000001", "checkpoint_000003",
                                          "checkpoint_000004"]
    assert [m["score"] for _, m in result.best_checkpoints] == [3.0, 4.0, 5.0]
    best, metrics = result.best_checkpoints[-1]
    assert metrics["training_iteration"] == 2
    with best.as_directory() as d:
        with open(os.path.join(d, "_dict_checkpoint.pkl"), "rb") as f:
            assert pickle.load(f) == {"step_no": 2}
    assert result.checkpoint.path.endswith("checkpoint_000004")


class _PauseStorage(tune.Callback):
    """Freezes the S3 server for a few seconds once the trials are under way."""

    def __init__(self, server, seconds):
        self.server, self.seconds = server, seconds
        self.paused_at = None
        self.resumed = threading.Event()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.paused_at is None and result["training_iteration"] == 2:
            self.paused_at = result["training_iteration"]
            self.server.pause()

            def resume():
                self.server.resume()
                self.resumed.set()

            threading.Timer(self.seconds, resume).start()


def test_experiment_survives_an_s3_outage(s3_server, s3_bucket):
    pauser = _PauseStorage(s3_server, seconds=6.0)
    results = tune.Tuner(
        train_fn, param_space={"lr": tune.grid_search([0.1, 0.2]), "epochs": 8, "sleep": 0.2},
        run_config=tune.RunConfig(
            storage_path=s3_bucket.uri("exps"), name="outage", verbose=0, callbacks=[pauser],
            sync_config=tune.SyncConfig(sync_period=0.5)),
    ).fit()
    assert pauser.resumed.is_set(), "the server was never paused and resumed during the run"
    assert results.num_errors == 0
    assert all(r.metrics["epoch"] == 7 for r in results)
    fs = s3_bucket.fs
    experiment = s3_bucket.path("exps/outage")
    dirs = trial_dirs(fs, experiment)
    assert len(dirs) == 2
    for trial_dir in dirs:
        assert iterations(fs, trial_dir) == list(range(1, 9))
        assert len(checkpoints(fs, trial_dir)) == 8
        assert all(storage.is_complete_checkpoint(fs, posixpath.join(trial_dir, n))
                   for n in checkpoints(fs, trial_dir))
    state = read_experiment_json(experiment, fs)
    assert state["status_counts"] == {"TERMINATED": 2}


def test_result_grid_from_an_s3_uri_that_holds_no_experiment(s3_bucket):
    with pytest.raises(FileNotFoundError, match="no experiment there"):
        tune.ResultGrid.from_path(s3_bucket.uri("nothing/here"))
    assert not tune.Tuner.can_restore(s3_bucket.uri("nothing/here"))


def waits_for_its_log_on_storage(config):
    import time

    tune.report({"step": 1})
    fs, root = storage.resolve(config["uri"])
    trial_dir = posixpath.join(root, "live", os.path.basename(tune.get_context().get_trial_dir()))
    deadline = time.monotonic() + 60
    seen = False
    while not seen and time.monotonic() < deadline:
        try:
            rows = storage.read_bytes(fs, posixpath.join(trial_dir, "result.json")).splitlines()
            seen = any(json.loads(row).get("step") == 1 for row in rows)
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    tune.report({"step": 2, "seen_on_storage_during_the_run": seen})


def test_logs_reach_storage_while_the_experiment_runs(s3_bucket):
    uri = s3_bucket.uri("exps")
    results = tune.Tuner(
        waits_for_its_log_on_storage, param_space={"uri": uri},
        run_config=tune.RunConfig(storage_path=uri, name="live", verbose=0,
                                  sync_config=tune.SyncConfig(sync_period=0.5))).fit()
    assert results[0].metrics["seen_on_storage_during_the_run"] is True


class _PauseWhenDone(tune.Callback):
    def __init__(self, server):
        self.server = server

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.server.pause()


def test_a_final_upload_that_fails_is_reported_and_the_files_are_kept(s3_server, s3_bucket,
                                                                      capfd):
    try:
        results = tune.Tuner(
            lambda config: {"x": 1},
            run_config=tune.RunConfig(
                storage_path=s3_bucket.uri("exps"), name="unreachable", verbose=0,
                callbacks=[_PauseWhenDone(s3_server)],
                sync_config=tune.SyncConfig(sync_timeout=2))).fit()
    finally:
        s3_server.resume()
    assert results[0].metrics["x"] == 1
    err = capfd.readouterr().err
    assert "could not be written to s3://***@" in err
    kept = err.split("They are kept in ")[1].split(";")[0]
    assert os.path.exists(os.path.join(kept, STATE_FILE))
    state = read_experiment_json(kept)
    assert state["status_counts"] == {"TERMINATED": 1}


class FailsOnce(tune.Trainable):
    def setup(self, config):
        self.total = 0

    def step(self):
        self.total += self.config["add"]
        if self.iteration == 2 and not os.path.exists(self.config["marker"]):
            open(self.config["marker"], "w").close()
            raise RuntimeError("injected")
        return {"total": self.total, "done": self.iteration + 1 == 5}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt")) as f:
            self.total = int(f.read())


def test_class_trainable_resumes_from_its_checkpoint_on_s3(s3_bucket, tmp_path):
    results = tune.Tuner(
        FailsOnce, param_space={"add": 3, "marker": str(tmp_path / "failed")},
        run_config=tune.RunConfig(
            storage_path=s3_bucket.uri("exps"), name="cls", verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    (result,) = results
    assert result.error is None
    assert result.metrics["total"] == 15 and result.metrics["training_iteration"] == 5
    fs = s3_bucket.fs
    (trial_dir,) = trial_dirs(fs, s3_bucket.path("exps/cls"))
    assert iterations(fs, trial_dir) == [1, 2, 3, 4, 5]
    assert "injected" in read_text(fs, posixpath.join(trial_dir, "error.txt"))
    with result.checkpoint.as_directory() as d:
        assert open(os.path.join(d, "total.txt")).read() == "15"


@pytest.mark.parametrize("machine", ["same", "another"])
def test_restore_from_s3_after_the_driver_is_killed(s3_bucket, machine):
    """SIGKILL a driver whose experiment is on S3 mid-run, then restore from the URI: on the
    same machine (its unsynced staging files are newer and used) or on another one (only
    what reached S3)."""
    import signal
    import subprocess
    import sys
    import time

    from . import _s3_crash_experiment as crash

    uri = s3_bucket.uri("exps")
    fs = s3_bucket.fs
    experiment = s3_bucket.path("exps/crash")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, crash.__file__, uri, "crash"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        # Killed once the state is on S3 and a few checkpoints exist.
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the driver ended before the kill: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "the experiment never reached the kill point"
            if storage.exists(fs, posixpath.join(experiment, STATE_FILE)):
                ckpts = sum(len(checkpoints(fs, posixpath.join(experiment, d)))
                            for d in storage.list_dir(fs, experiment))
                if ckpts >= 5:
                    break
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if machine == "another":
        shutil.rmtree(os.environ["TUNE_STAGING_DIR"])
        os.makedirs(os.environ["TUNE_STAGING_DIR"])
    path = s3_bucket.uri("exps/crash")
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, crash.train_fn).fit()
    assert len(results) == crash.NUM_SAMPLES and results.num_errors == 0
    for result in results:
        assert result.metrics["score"] == pytest.approx(result.config["lr"] * crash.EPOCHS)
    dirs = trial_dirs(fs, experiment)
    assert len(dirs) == crash.NUM_SAMPLES
    for trial_dir in dirs:
        assert iterations(fs, trial_dir) == list(range(1, crash.EPOCHS + 1))
    state = read_experiment_json(experiment, fs)
    assert state["status_counts"] == {"TERMINATED": crash.NUM_SAMPLES}
