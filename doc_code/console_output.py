"""README: Console output."""

import os

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    for i in range(3):
        tune.report({"loss": config["x"] / (i + 1), "acc": 1 - config["x"] / 10})


tune.Tuner(
    train_fn,
    param_space={"x": tune.uniform(0, 10), "unused": tune.choice(["a", "b"])},
    tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
    run_config=tune.RunConfig(
        verbose=2,  # 0 silent, 1 tables and summary, 2 + trial events, 3 + results
        progress_reporter=tune.CLIReporter(metric_columns={"acc": "accuracy"},
                                           parameter_columns=["x"], max_report_frequency=5),
        storage_path=STORAGE,
    ),
).fit()
