"""End-to-end runs of Tuner on a real local Ray: what a Ray Tune user checks after fit()."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

import tune_core as tune
from tune_core.error import SearchSpaceError, TuneError

pytestmark = pytest.mark.usefixtures("ray_local")


def quiet(tmp_path, **kwargs):
    kwargs.setdefault("verbose", 0)
    return tune.RunConfig(storage_path=str(tmp_path), **kwargs)


def test_function_trainable_grid_and_random(tmp_path):
    def train_fn(config):
        for i in range(3):
            tune.report({"score": config["a"] * (i + 1) + config["b"]})

    tuner = tune.Tuner(
        train_fn,
        param_space={"a": tune.grid_search([1, 2]), "b": tune.uniform(0, 0.5), "c": "const",
                     "nested": {"d": tune.choice(["x", "y"])}},
        tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=2),
        run_config=quiet(tmp_path, name="exp"),
    )
    results = tuner.fit()
    assert len(results) == 4
    assert results.num_errors == 0 and results.num_terminated == 4
    assert results.experiment_path == os.path.join(str(tmp_path), "exp")
    best = results.get_best_result()
    assert best.config["a"] == 2
    assert best.metrics["training_iteration"] == 3
    for key in ("time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname",
                "node_ip", "trial_id", "experiment_tag", "done", "time_since_restore",
                "iterations_since_restore", "config"):
        assert key in best.metrics, key
    assert best.metrics["config"]["c"] == "const"
    assert best.metrics["config"]["nested"]["d"] in ("x", "y")
    # Files per trial.
    for result in results:
        files = set(os.listdir(result.path))
        assert {"params.json", "result.json", "progress.csv"} <= files
        with open(os.path.join(result.path, "result.json")) as f:
            lines = [json.loads(line) for line in f]
        assert [r["training_iteration"] for r in lines] == [1, 2, 3]
        with open(os.path.join(result.path, "params.json")) as f:
            assert json.load(f) == result.config
        assert len(os.path.basename(result.path)) <= 64
        assert list(result.metrics_dataframe["training_iteration"]) == [1, 2, 3]
    df = results.get_dataframe()
    assert len(df) == 4 and "config/a" in df.columns and "score" in df.columns
    best_rows = results.get_dataframe(filter_metric="score", filter_mode="min")
    assert all(best_rows["training_iteration"] == 1)


def test_returning_a_dict_reports_a_final_result(tmp_path):
    def train_fn(config):
        tune.report({"loss": 5.0})
        return {"loss": config["x"]}

    results = tune.Tuner(train_fn, param_space={"x": tune.grid_search([3.0, 1.0])},
                         run_config=quiet(tmp_path)).fit()
    best = results.get_best_result(metric="loss", mode="min")
    assert best.metrics["loss"] == 1.0
    assert best.metrics["training_iteration"] == 2
    assert best.metrics["done"] is True


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = config["start"]
        self.resets = 0

    def step(self):
        self.value += 1
        return {"value": self.value, "pid": os.getpid(), "resets": self.resets,
                "done": self.value >= self.config["start"] + 3}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value.txt"), "w") as f:
            f.write(str(self.value))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value.txt")) as f:
            self.value = int(f.read())

    def reset_config(self, new_config):
        self.value = new_config["start"]
        self.resets += 1
        return True


def test_class_trainable_checkpoints_at_end(tmp_path):
    results = tune.Tuner(Counter, param_space={"start": tune.grid_search([0, 10])},
                         run_config=quiet(tmp_path)).fit()
    values = sorted(r.metrics["value"] for r in results)
    assert values == [3, 13]
    for r in results:
        assert r.checkpoint is not None
        with r.checkpoint.as_directory() as d:
            with open(os.path.join(d, "value.txt")) as f:
                assert int(f.read()) == r.metrics["value"]


def test_reuse_actors_true_calls_reset_config(tmp_path):
    results = tune.Tuner(
        tune.with_resources(Counter, {"cpu": 2}),
        param_space={"start": tune.grid_search([0, 10, 20])},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=quiet(tmp_path)).fit()
    assert len({r.metrics["pid"] for r in results}) == 1
    assert sorted(r.metrics["resets"] for r in results) == [0, 1, 2]
    assert sorted(r.metrics["value"] for r in results) == [3, 13, 23]


def test_worker_processes_are_reused_with_fresh_state(tmp_path):
    def train_fn(config):
        ckpt = tune.get_checkpoint()
        d = os.path.join(tune.get_context().get_trial_dir(), "mine")
        os.makedirs(d, exist_ok=True)
        tune.report({"pid": os.getpid(), "had_checkpoint": ckpt is not None},
                    checkpoint=tune.Checkpoint.from_directory(d))

    results = tune.Tuner(tune.with_resources(train_fn, {"cpu": 2}),
                         param_space={"i": tune.grid_search(list(range(4)))},
                         run_config=quiet(tmp_path)).fit()
    assert len({r.metrics["pid"] for r in results}) == 1
    assert not any(r.metrics["had_checkpoint"] for r in results)


def test_reuse_actors_false_names_each_actor_after_its_trial(tmp_path):
    def train_fn(config):
        import ray

        tune.report({"actor": ray.get_runtime_context().get_actor_name(),
                     "name": tune.get_context().get_trial_name(), "pid": os.getpid()})

    results = tune.Tuner(train_fn, param_space={"i": tune.grid_search([0, 1, 2])},
                         tune_config=tune.TuneConfig(reuse_actors=False),
                         run_config=quiet(tmp_path)).fit()
    for r in results:
        assert r.metrics["actor"].startswith(r.metrics["name"])
    assert len({r.metrics["pid"] for r in results}) == 3


def test_a_trial_that_failed_before_reporting_still_has_its_config(tmp_path):
    def fails_at_once(config):
        raise ValueError("no")

    results = tune.Tuner(fails_at_once, param_space={"v": tune.grid_search([3, 4])},
                         run_config=quiet(tmp_path)).fit()
    assert results.num_errors == 2
    assert sorted(r.config["v"] for r in results) == [3, 4]
    assert all(r.metrics == {} for r in results)


def printing(config):
    print(f"out {config['i']}")
    print(f"err {config['i']}", file=sys.stderr)
    tune.report({"x": 1})
    print("after the report")


@pytest.mark.parametrize("log_to_file, files", [
    (True, {"stdout": ["out {i}", "after the report"], "stderr": ["err {i}"]}),
    ("output.log", {"output.log": ["out {i}", "err {i}", "after the report"]}),
    (("o.txt", None), {"o.txt": ["out {i}", "after the report"]}),
])
def test_log_to_file_writes_what_trials_print(tmp_path, log_to_file, files):
    results = tune.Tuner(printing, param_space={"i": tune.grid_search([1, 2])},
                         run_config=quiet(tmp_path, log_to_file=log_to_file)).fit()
    assert results.num_errors == 0
    for r in results:
        i = r.config["i"]
        for name, lines in files.items():
            with open(os.path.join(r.path, name)) as f:
                assert f.read().splitlines() == [line.format(i=i) for line in lines]
        for name in {"stdout", "stderr", "output.log", "o.txt"} - set(files):
            assert not os.path.exists(os.path.join(r.path, name))


@pytest.mark.parametrize("bad", ["", "/abs/out.log", ("a",), 3, ("a", 3), "../up.log"])
def test_bad_log_to_file_is_named(bad):
    with pytest.raises(ValueError) as err:
        tune.RunConfig(log_to_file=bad)
    assert "log_to_file" in str(err.value) and repr(bad) in str(err.value)


def test_user_traceback_reaches_the_user(tmp_path, capsys):
    def failing_trainable(config):
        tune.report({"x": 1})
        raise ValueError(f"bad value {config['v']}")

    results = tune.Tuner(failing_trainable, param_space={"v": 7},
                         run_config=quiet(tmp_path, verbose=2)).fit()
    assert results.num_errors == 1
    (error,) = results.errors
    text = str(error)
    assert "ValueError: bad value 7" in text
    assert "failing_trainable" in text  # the user's own frame
    assert "_worker.py" not in text and "/ray/" not in text  # neither ours nor Ray's
    assert results[0].error is error
    with open(os.path.join(results[0].path, "error.txt")) as f:
        assert "ValueError: bad value 7" in f.read()
    out = capsys.readouterr()
    assert "bad value 7" in out.out + out.err


def test_report_outside_a_trial():
    with pytest.raises(TuneError, match="outside a trial"):
        tune.report({"x": 1})
    with pytest.raises(TuneError, match="outside a trial"):
        tune.get_context()


def test_get_context(tmp_path):
    def train_fn(config):
        ctx = tune.get_context()
        tune.report({"tid": ctx.get_trial_id(), "name": ctx.get_trial_name(),
                     "dir": ctx.get_trial_dir(), "exp": ctx.get_experiment_name(),
                     "cpus": ctx.get_trial_resources().required_resources["CPU"],
                     "cwd": os.getcwd()})

    (r,) = tune.Tuner(tune.with_resources(train_fn, {"cpu": 0.5}),
                      run_config=quiet(tmp_path, name="ctx")).fit()
    m = r.metrics
    assert m["tid"] == m["trial_id"]
    assert m["name"].startswith("train_fn_")
    assert m["dir"] == r.path == m["cwd"]
    assert m["exp"] == "ctx"
    assert m["cpus"] == 0.5


def test_with_parameters_puts_each_object_once(tmp_path):
    import numpy as np

    data = np.arange(1_000_000, dtype=np.float64)  # 8 MB

    def train_fn(config, data=None):
        tune.report({"sum": float(data.sum()), "id": id(data)})

    trainable = tune.with_parameters(train_fn, data=data)
    results = tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(4)))},
                         run_config=quiet(tmp_path)).fit()
    assert all(r.metrics["sum"] == float(data.sum()) for r in results)
    refs = trainable._params._refs
    assert list(refs) == ["data"]  # one object-store entry, made once by the driver


def test_with_parameters_survives_a_ray_restart(tmp_path):
    import numpy as np
    import ray

    from tests.conftest import _init_local_ray

    def train_fn(config, data=None):
        tune.report({"sum": float(data.sum())})

    trainable = tune.with_parameters(train_fn, data=np.ones(10))
    for _ in range(2):  # e.g. two experiments in one notebook with a restart between
        (result,) = tune.Tuner(trainable, run_config=quiet(tmp_path)).fit()
        assert result.error is None and result.metrics["sum"] == 10.0
        ray.shutdown()
        _init_local_ray()


def test_with_parameters_rejects_unknown_names():
    def train_fn(config, data=None):
        pass

    with pytest.raises(ValueError, match="'other'"):
        tune.with_parameters(train_fn, other=1)


def test_with_resources_limits_concurrency(tmp_path):
    def train_fn(config):
        start = time.time()
        time.sleep(0.3)
        tune.report({"start": start, "end": time.time()})

    results = tune.Tuner(tune.with_resources(train_fn, tune.PlacementGroupFactory([{"CPU": 2}])),
                         param_space={"i": tune.grid_search([0, 1, 2])},
                         run_config=quiet(tmp_path)).fit()
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never overlapping


def test_with_resources_callable_of_config(tmp_path):
    def train_fn(config):
        tune.report({"cpus": tune.get_context().get_trial_resources().required_resources["CPU"]})

    results = tune.Tuner(
        tune.with_resources(train_fn, lambda config: {"cpu": config["cpus"]}),
        param_space={"cpus": tune.grid_search([0.5, 1, 2])}, run_config=quiet(tmp_path)).fit()
    assert sorted(r.metrics["cpus"] for r in results) == [0.5, 1, 2]


def test_max_concurrent_trials_one(tmp_path):
    def train_fn(config):
        start = time.time()
        time.sleep(0.2)
        tune.report({"start": start, "end": time.time()})

    results = tune.Tuner(train_fn, param_space={"i": tune.grid_search([0, 1, 2])},
                         tune_config=tune.TuneConfig(max_concurrent_trials=1),
                         run_config=quiet(tmp_path)).fit()
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_resources_that_can_never_fit_fail_before_any_trial(tmp_path):
    def train_fn(config):
        tune.report({"x": 1})

    tuner = tune.Tuner(tune.with_resources(train_fn, {"cpu": 64, "gpu": 1}),
                       run_config=quiet(tmp_path))
    with pytest.raises(TuneError) as info:
        tuner.fit()
    assert "64" in str(info.value) and "GPU" in str(info.value) and "2 CPU" in str(info.value)


def test_callable_resources_that_never_fit_error_the_trial(tmp_path):
    def train_fn(config):
        tune.report({"x": 1})

    results = tune.Tuner(tune.with_resources(train_fn, lambda c: {"cpu": c["cpus"]}),
                         param_space={"cpus": tune.grid_search([1, 16])},
                         run_config=quiet(tmp_path)).fit()
    assert results.num_errors == 1 and results.num_terminated == 1
    assert "can never fit" in str(results.errors[0])


def test_stop_dict_and_missing_metric(tmp_path):
    def train_fn(config):
        for i in range(100):
            tune.report({"acc": i / 100})

    results = tune.Tuner(train_fn, run_config=quiet(tmp_path, stop={"training_iteration": 4})
                         ).fit()
    assert results[0].metrics["training_iteration"] == 4
    with open(os.path.join(results[0].path, "result.json")) as f:
        assert len(f.readlines()) == 4

    tuner = tune.Tuner(train_fn, tune_config=tune.TuneConfig(metric="accuracy", mode="max"),
                       run_config=quiet(tmp_path))
    with pytest.raises(TuneError) as info:
        tuner.fit()
    assert "'accuracy'" in str(info.value) and "'acc'" in str(info.value)


def test_time_budget_with_unbounded_samples(tmp_path):
    def train_fn(config):
        time.sleep(0.05)
        tune.report({"x": config["x"]})

    start = time.time()
    results = tune.Tuner(train_fn, param_space={"x": tune.uniform(0, 1)},
                         tune_config=tune.TuneConfig(num_samples=-1, time_budget_s=2),
                         run_config=quiet(tmp_path)).fit()
    assert time.time() - start < 30
    assert len(results) > 2


def test_bad_search_space_names_the_path():
    def train_fn(config):
        pass

    with pytest.raises(SearchSpaceError, match=r"model.*lr"):
        tune.Tuner(train_fn, param_space={"model": {"lr": tune.loguniform(-1, 1)}})


def test_bad_configs_are_clear():
    with pytest.raises(ValueError, match="num_samples=0"):
        tune.TuneConfig(num_samples=0)
    with pytest.raises(ValueError, match="mode='maximum'"):
        tune.TuneConfig(metric="x", mode="maximum")
    with pytest.raises(TypeError, match="Trainable"):
        tune.Tuner(object)


def test_trial_name_and_dirname_creators(tmp_path):
    def train_fn(config):
        tune.report({"name": tune.get_context().get_trial_name()})

    results = tune.Tuner(
        train_fn, param_space={"i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(trial_name_creator=lambda t: f"trial-{t.config['i']}",
                                    trial_dirname_creator=lambda t: f"dir_{t.config['i']}"),
        run_config=quiet(tmp_path)).fit()
    assert sorted(r.metrics["name"] for r in results) == ["trial-0", "trial-1"]
    assert sorted(os.path.basename(r.path) for r in results) == ["dir_0", "dir_1"]


def test_late_column_is_kept_in_progress_csv(tmp_path):
    def train_fn(config):
        tune.report({"a": 1})
        tune.report({"a": 2, "b": 3})

    (r,) = tune.Tuner(train_fn, run_config=quiet(tmp_path)).fit()
    df = r.metrics_dataframe
    assert list(df["a"]) == [1, 2]
    assert df["b"].isna().tolist() == [True, False]


def test_memory_requests_are_honoured(tmp_path):
    def train_fn(config):
        tune.report({"mem": tune.get_context().get_trial_resources().required_resources["memory"]})

    (r,) = tune.Tuner(tune.with_resources(train_fn, {"cpu": 1, "memory": 50 * 1024**2}),
                      run_config=quiet(tmp_path)).fit()
    assert r.metrics["mem"] == 50 * 1024**2
    with pytest.raises(TuneError, match="memory"):
        tune.Tuner(tune.with_resources(train_fn, {"cpu": 1, "memory": 10**15}),
                   run_config=quiet(tmp_path)).fit()


class Resourceful(tune.Trainable):
    def setup(self, config):
        self.marker = os.path.join(self.trial_dir, "cleaned_up")

    def step(self):
        return {"cpus": tune.get_context().get_trial_resources().required_resources["CPU"],
                "done": True}

    def cleanup(self):
        with open(self.marker, "w") as f:
            f.write("yes")

    @classmethod
    def default_resource_request(cls, config):
        return {"cpu": config["cpus"]}


def test_class_default_resource_request_and_cleanup(tmp_path):
    results = tune.Tuner(Resourceful, param_space={"cpus": tune.grid_search([0.5, 2])},
                         run_config=quiet(tmp_path)).fit()
    assert sorted(r.metrics["cpus"] for r in results) == [0.5, 2]
    assert all(os.path.exists(os.path.join(r.path, "cleaned_up")) for r in results)


def test_reuse_actors_true_without_reset_config_uses_fresh_objects(tmp_path):
    class NoReset(tune.Trainable):
        def setup(self, config):
            self.seen = config["i"]

        def step(self):
            return {"seen": self.seen, "pid": os.getpid(), "done": True}

    results = tune.Tuner(tune.with_resources(NoReset, {"cpu": 2}),
                         param_space={"i": tune.grid_search([0, 1, 2])},
                         tune_config=tune.TuneConfig(reuse_actors=True),
                         run_config=quiet(tmp_path)).fit()
    assert results.num_errors == 0
    assert sorted(r.metrics["seen"] for r in results) == [0, 1, 2]
    assert len({r.metrics["pid"] for r in results}) == 1


def test_multi_bundle_placement_group_hosts_the_trials_own_tasks(tmp_path):
    def train_fn(config):
        import ray

        @ray.remote(num_cpus=1)
        def helper():
            return ray.get_runtime_context().get_placement_group_id()

        mine = ray.get_runtime_context().get_placement_group_id()
        tune.report({"same_pg": ray.get(helper.remote(), timeout=60) == mine,
                     "pg": mine is not None})

    pgf = tune.PlacementGroupFactory([{"CPU": 0.5}, {"CPU": 1}], strategy="PACK")
    results = tune.Tuner(tune.with_resources(train_fn, pgf),
                         param_space={"i": tune.grid_search([0, 1])},
                         run_config=quiet(tmp_path)).fit()
    assert results.num_errors == 0, results.errors
    assert all(r.metrics["same_pg"] and r.metrics["pg"] for r in results)


def test_a_setup_error_after_the_first_worker_started_leaves_no_worker_behind(tmp_path):
    """fit() starts the first trial's worker early, while it sets up; an error later in
    the setup must still release it (its CPU would be lost to the session)."""
    import ray

    def train_fn(config):
        tune.report({"x": 1})

    with pytest.raises(ValueError, match="only apply to class trainables"):
        tune.Tuner(train_fn, run_config=quiet(
            tmp_path, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))).fit()
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2
    # and the next experiment runs as usual
    assert tune.Tuner(train_fn, run_config=quiet(tmp_path)).fit()[0].metrics["x"] == 1
