"""README: TensorBoard and MLflow."""

import glob
import os

import tune_core as tune
from integrations.mlflow import MLflowLoggerCallback

STORAGE = os.environ.get("TUNE_DOC_STORAGE")
TRACKING_URI = "sqlite:///" + os.path.abspath(os.path.join(STORAGE or ".", "mlflow.db"))


def train_fn(config):
    for i in range(3):
        tune.report({"loss": config["lr"] / (i + 1), "eval": {"acc": 0.3 * i}})


results = tune.Tuner(
    train_fn,
    param_space={"lr": tune.loguniform(1e-4, 1e-1), "model": {"layers": tune.randint(1, 4)}},
    tune_config=tune.TuneConfig(num_samples=2),
    run_config=tune.RunConfig(
        name="loggers",
        # JSON, CSV and (with tensorboardX installed) TensorBoard loggers are on by default.
        callbacks=[MLflowLoggerCallback(tracking_uri=TRACKING_URI, experiment_name="loggers")],
        storage_path=STORAGE, verbose=0,
    ),
).fit()
print(f"tensorboard --logdir {results.experiment_path}")

# Each trial directory holds its TensorBoard event file; each trial is one MLflow run.
for result in results:
    assert glob.glob(os.path.join(result.path, "events.out.tfevents.*"))
from mlflow.tracking import MlflowClient  # noqa: E402

client = MlflowClient(tracking_uri=TRACKING_URI)
runs = client.search_runs([client.get_experiment_by_name("loggers").experiment_id])
assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]
assert {"lr", "model/layers"} <= set(runs[0].data.params)
history = client.get_metric_history(runs[0].info.run_id, "eval/acc")
assert sorted(m.step for m in history) == [1, 2, 3]
