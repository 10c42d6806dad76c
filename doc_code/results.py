"""README: Results and files."""

import os

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    for i in range(5):
        tune.report({"acc": config["x"] * (i + 1) / 5})


results = tune.Tuner(
    train_fn,
    param_space={"x": tune.grid_search([0.2, 0.5, 0.9])},
    tune_config=tune.TuneConfig(metric="acc", mode="max"),
    run_config=tune.RunConfig(name="results_demo", storage_path=STORAGE, verbose=0),
).fit()

best = results.get_best_result()                        # uses TuneConfig's metric/mode
print(best.config, best.metrics["acc"], best.path)
print(results.get_best_result("acc", "max", scope="avg").config)
df = results.get_dataframe()                            # one row per trial (pandas)
history = best.metrics_dataframe                        # every result of one trial
print(df[["trial_id", "acc", "config/x"]])
print(len(results), results.num_errors, results.num_terminated, results.experiment_path)
assert best.config["x"] == 0.9 and len(history) == 5
files = sorted(os.listdir(best.path))  # the TensorBoard event file, then the others
assert files[0].startswith("events.out.tfevents.")
assert files[1:] == ["params.json", "progress.csv", "result.json"]
