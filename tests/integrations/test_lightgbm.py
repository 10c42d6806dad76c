"""integrations.lightgbm: real boosting in real trials; metrics and checkpoints checked
against LightGBM's own recorded evaluation and predictions."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

import tune_core as tune

lgb = pytest.importorskip("lightgbm")

from integrations.lightgbm import TuneReportCheckpointCallback, get_model  # noqa: E402

ROUNDS = 5


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.normal(size=300) > 0.4).astype(float)
    return (x[:200], y[:200]), (x[200:], y[200:])


def params(config):
    return {"objective": "binary", "metric": ["binary_logloss", "binary_error"],
            "num_leaves": config["num_leaves"], "learning_rate": 0.3, "num_threads": 1,
            "deterministic": True, "seed": 0, "verbosity": -1, "min_data_in_leaf": 5}


def datasets(data):
    (x, y), (xv, yv) = data
    dtrain = lgb.Dataset(x, label=y, free_raw_data=False)
    return dtrain, lgb.Dataset(xv, label=yv, reference=dtrain, free_raw_data=False)


def train_fn(config, data=None):
    dtrain, dvalid = datasets(data)
    callback = TuneReportCheckpointCallback(
        metrics=None if config["frequency"] else {"loss": "eval-binary_logloss"},
        frequency=config["frequency"])
    lgb.train(params(config), dtrain, num_boost_round=ROUNDS, valid_sets=[dtrain, dvalid],
              valid_names=["train", "eval"], callbacks=[callback])


@pytest.mark.ray
def test_two_trials_report_eval_metrics_and_checkpoint_the_booster(ray_local, tmp_path):
    data = make_data()
    grid = tune.Tuner(
        tune.with_parameters(train_fn, data=data),
        param_space={"num_leaves": 7, "frequency": tune.grid_search([0, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 2
    (_, _), (xv, _) = data
    for result in grid:
        # the same boosting, here, with LightGBM's own record of it
        recorded = {}
        dtrain, dvalid = datasets(data)
        booster = lgb.train(params(result.config), dtrain, num_boost_round=ROUNDS,
                            valid_sets=[dtrain, dvalid], valid_names=["train", "eval"],
                            callbacks=[lgb.record_evaluation(recorded)])
        df = result.metrics_dataframe
        assert list(df["training_iteration"]) == list(range(1, ROUNDS + 1))  # one per round
        if result.config["frequency"]:
            for data_name in ("train", "eval"):
                for metric in ("binary_logloss", "binary_error"):
                    assert list(df[f"{data_name}-{metric}"]) == pytest.approx(
                        recorded[data_name][metric], rel=1e-6)
            # checkpoints at rounds 2 and 4, and at the end (5)
            rounds = [get_model(c).current_iteration() for c, _ in result.best_checkpoints]
            assert rounds == [2, 4, 5]
            for checkpoint, metrics in result.best_checkpoints:
                model = TuneReportCheckpointCallback.get_model(checkpoint)
                n = model.current_iteration()
                assert metrics["training_iteration"] == n
                assert np.array_equal(model.predict(xv), booster.predict(xv, num_iteration=n))
        else:
            assert list(df["loss"]) == pytest.approx(recorded["eval"]["binary_logloss"],
                                                     rel=1e-6)
            assert "train-binary_logloss" not in df.columns
            assert len(result.best_checkpoints) == 1  # only at the end
        with result.checkpoint.as_directory() as d:
            assert os.listdir(d) == ["model.txt"]
        model = get_model(result.checkpoint)
        assert np.array_equal(model.predict(xv), booster.predict(xv))


def test_cv_results_and_missing_metrics_are_named():
    callback = TuneReportCheckpointCallback(metrics="eval-auc")
    env = SimpleNamespace(model=None, iteration=0, end_iteration=3, evaluation_result_list=[
        ("valid", "binary_logloss", 0.5, False, 0.1)])
    with pytest.raises(KeyError, match="valid-binary_logloss-mean"):
        callback(env)
    with pytest.raises(ValueError, match="frequency"):
        TuneReportCheckpointCallback(frequency=1.5)
