"""MLflowLoggerCallback: real experiments logged to a real MLflow store, read back.

The store is SQLite in a temporary directory (MLflow's recommended local backend; its
file store is in maintenance mode), shared by the tests of this module because
creating its tables takes seconds; each test uses an MLflow experiment of its own.
"""

from __future__ import annotations

import pickle

import pytest

import tune_core as tune
from tune_core.experiment.trial import Trial

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from integrations import MLflowLoggerCallback  # noqa: E402


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"


def new_experiment(uri, name, tmp_path):
    """Creates the MLflow experiment with its artifacts under ``tmp_path``."""
    client = MlflowClient(tracking_uri=uri)
    return client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())


def train_fn(config):
    for i in range(3):
        tune.report({"loss": config["lr"] * (3 - i), "nested": {"acc": 0.1 * i},
                     "flag": True, "name": "text"})
        if config["lr"] == 0.3 and i == 1:
            raise RuntimeError("this trial fails")


def runs_by_lr(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return {float(run.data.params["lr"]): run for run in runs}


@pytest.mark.ray
@pytest.mark.parametrize("save_artifact", [False, True])
def test_each_trial_is_a_run(ray_local, tmp_path, tracking_uri, save_artifact):
    uri, name = tracking_uri, f"exp-{save_artifact}"
    new_experiment(uri, name, tmp_path)  # the callback logs to an existing experiment
    callback = MLflowLoggerCallback(tracking_uri=uri, experiment_name=name,
                                    tags={"team": "tuning"}, save_artifact=save_artifact)
    space = {"lr": tune.grid_search([0.1, 0.2, 0.3]), "model": {"layers": 2}, "sizes": [8, 16]}
    grid = tune.Tuner(train_fn, param_space=space,
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "results"),
                                                name="mlf", verbose=0,
                                                callbacks=[callback])).fit()
    trials = {result.config["lr"]: result for result in grid}
    client = MlflowClient(tracking_uri=uri)
    runs = runs_by_lr(client, name)
    assert sorted(runs) == [0.1, 0.2, 0.3]
    for lr, run in runs.items():
        result = trials[lr]
        assert run.data.params == {"lr": str(lr), "model/layers": "2", "sizes": "[8, 16]"}
        trial_id = result.metrics["trial_id"]
        assert run.data.tags["trial_id"] == trial_id
        assert run.data.tags["team"] == "tuning"
        assert run.data.tags["tune_experiment"] == "mlf"
        assert run.info.run_name == run.data.tags["trial_name"]
        assert trial_id in run.info.run_name
        n = 2 if lr == 0.3 else 3
        history = client.get_metric_history(run.info.run_id, "loss")
        history = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in history] == list(range(1, n + 1))
        assert [value for _, value in history] == pytest.approx(
            [lr * (3 - i) for i in range(n)])
        acc = client.get_metric_history(run.info.run_id, "nested/acc")
        assert sorted(m.step for m in acc) == list(range(1, n + 1))
        assert "flag" not in run.data.metrics and "name" not in run.data.metrics
        assert "training_iteration" not in run.data.metrics
        assert run.info.status == ("FAILED" if lr == 0.3 else "FINISHED")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        if save_artifact:
            assert {"params.json", "result.json", "progress.csv"} <= artifacts
            if lr == 0.3:
                assert "error.txt" in artifacts
        else:
            assert artifacts == set()


def test_a_restored_experiment_continues_the_trial_run(tmp_path, tracking_uri, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact location is relative
    uri = tracking_uri
    trial = Trial("abc_00000", {"lr": 0.1}, experiment_path=str(tmp_path), dirname="t")
    first = MLflowLoggerCallback(uri)  # no experiment_name: the Tune experiment's name
    first.setup(experiment_name="tune-exp")
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    result = {"training_iteration": 1, "loss": 1.0}
    trial.update_last_result(result)
    first.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result)
    first.on_experiment_end(trials=[trial])  # interrupted: the run is KILLED

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tune-exp").experiment_id])
    assert run.info.status == "KILLED"

    second = pickle.loads(pickle.dumps(MLflowLoggerCallback(uri)))
    second.setup(experiment_name="tune-exp")
    assert second.experiment_id == first.experiment_id
    trial.config = {"lr": 0.5, "new": 1}  # a changed value keeps the one first logged
    second.on_trial_start(iteration=0, trials=[trial], trial=trial)
    result = {"training_iteration": 2, "loss": 0.5}
    second.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result)
    second.on_trial_complete(iteration=2, trials=[trial], trial=trial)

    (run,) = client.search_runs([first.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "new": "1"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]


def test_bad_tags_are_named():
    with pytest.raises(TypeError, match="tags"):
        MLflowLoggerCallback(tags=["a"])
