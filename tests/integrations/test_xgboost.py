"""integrations.xgboost: real boosting in real trials; metrics and checkpoints checked
against XGBoost's own evals_result and predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tune_core as tune

xgb = pytest.importorskip("xgboost")

from integrations.xgboost import TuneReportCheckpointCallback, get_model  # noqa: E402

ROUNDS = 5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.normal(size=300) > 0.4).astype(float)
    return (x[:200], y[:200]), (x[200:], y[200:])


def params(config):
    return {"objective": "binary:logistic", "eval_metric": ["logloss", "error"],
            "max_depth": config["max_depth"], "eta": 0.3, "nthread": 1, "seed": 0}


def dmatrices(data):
    (x, y), (xv, yv) = data
    return xgb.DMatrix(x, label=y), xgb.DMatrix(xv, label=yv)


def train_fn(config, data=None):
    dtrain, dvalid = dmatrices(data)
    callback = TuneReportCheckpointCallback(
        metrics=None if config["frequency"] else {"loss": "eval-logloss", "err": "eval-error"},
        frequency=config["frequency"])
    xgb.train(params(config), dtrain, num_boost_round=ROUNDS,
              evals=[(dtrain, "train"), (dvalid, "eval")], verbose_eval=False,
              callbacks=[callback])


@pytest.mark.ray
def test_two_trials_report_eval_metrics_and_checkpoint_the_booster(ray_local, tmp_path):
    data = make_data()
    grid = tune.Tuner(
        tune.with_parameters(train_fn, data=data),
        param_space={"max_depth": 3, "frequency": tune.grid_search([0, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 2
    dtrain, dvalid = dmatrices(data)
    for result in grid:
        # the same boosting, here, with XGBoost's own record of it
        evals_result = {}
        booster = xgb.train(params(result.config), dtrain, num_boost_round=ROUNDS,
                            evals=[(dtrain, "train"), (dvalid, "eval")], verbose_eval=False,
                            evals_result=evals_result)
        df = result.metrics_dataframe
        assert list(df["training_iteration"]) == list(range(1, ROUNDS + 1))  # one per round
        if result.config["frequency"]:
            for data_name in ("train", "eval"):
                for metric in ("logloss", "error"):
                    assert list(df[f"{data_name}-{metric}"]) == pytest.approx(
                        evals_result[data_name][metric], rel=1e-6)
            # checkpoints at rounds 2 and 4, and at the end (5)
            rounds = [get_model(c).num_boosted_rounds() for c, _ in result.best_checkpoints]
            assert rounds == [2, 4, 5]
            for checkpoint, metrics in result.best_checkpoints:
                model = TuneReportCheckpointCallback.get_model(checkpoint)
                n = model.num_boosted_rounds()
                assert metrics["training_iteration"] == n
                assert np.array_equal(model.predict(dvalid),
                                      booster.predict(dvalid, iteration_range=(0, n)))
        else:
            assert list(df["loss"]) == pytest.approx(evals_result["eval"]["logloss"], rel=1e-6)
            assert list(df["err"]) == pytest.approx(evals_result["eval"]["error"], rel=1e-6)
            assert "train-logloss" not in df.columns
            assert len(result.best_checkpoints) == 1  # only at the end
        with result.checkpoint.as_directory() as d:
            assert os.listdir(d) == ["model.ubj"]
        model = get_model(result.checkpoint)
        assert model.num_boosted_rounds() == ROUNDS
        assert np.array_equal(model.predict(dvalid), booster.predict(dvalid))


def cv_fn(config, data=None):
    dtrain, _ = dmatrices(data)
    xgb.cv(params(config), dtrain, num_boost_round=3, nfold=2, seed=0,
           callbacks=[TuneReportCheckpointCallback(["test-logloss-mean", "test-logloss-std"])])


@pytest.mark.ray
def test_cv_reports_fold_means_and_stds_without_checkpoints(ray_local, tmp_path):
    data = make_data()
    grid = tune.Tuner(tune.with_parameters(cv_fn, data=data), param_space={"max_depth": 2},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0
    history = xgb.cv(params({"max_depth": 2}), dmatrices(data)[0], num_boost_round=3, nfold=2,
                     seed=0)
    df = grid[0].metrics_dataframe
    assert list(df["test-logloss-mean"]) == pytest.approx(list(history["test-logloss-mean"]))
    assert list(df["test-logloss-std"]) == pytest.approx(list(history["test-logloss-std"]))
    assert grid[0].checkpoint is None


def test_bad_arguments_and_missing_metrics_are_named():
    with pytest.raises(ValueError, match="frequency"):
        TuneReportCheckpointCallback(frequency=-1)
    callback = TuneReportCheckpointCallback(metrics="eval-auc")
    with pytest.raises(KeyError, match="eval-logloss"):
        callback.after_iteration(None, 0, {"eval": {"logloss": [0.5]}})


def test_import_integrations_is_light_and_missing_libraries_are_named():
    code = textwrap.dedent("""
        import json, sys
        import integrations
        heavy = ["torch", "lightning", "pytorch_lightning", "xgboost", "lightgbm"]
        loaded = [m for m in heavy if m in sys.modules]
        for name in heavy:  # now pretend none of them is installed
            sys.modules[name] = None
        messages = []
        from integrations import torch as t, lightning as l, xgboost as x, lightgbm as g
        for make in (lambda: t.save_checkpoint(), lambda: l.TuneReportCheckpointCallback(),
                     lambda: x.TuneReportCheckpointCallback(),
                     lambda: g.TuneReportCheckpointCallback()):
            try:
                make()
            except ImportError as exc:
                messages.append(str(exc))
        print(json.dumps([loaded, messages]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded, messages = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert len(messages) == 4
    for message, extra in zip(messages, ["torch", "lightning", "xgboost", "lightgbm"]):
        assert f"pip install 'tune-core[{extra}]'" in message
