"""The example of the README's Concepts section."""

import os

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")  # None means the default, ~/tune_results


def train_fn(config):
    for step in range(10):
        loss = (config["x"] - 3) ** 2 / (step + 1)
        tune.report({"loss": loss})


tuner = tune.Tuner(
    train_fn,
    param_space={"x": tune.uniform(0, 10), "opt": tune.grid_search(["sgd", "adam"])},
    tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
    run_config=tune.RunConfig(stop={"training_iteration": 5}, storage_path=STORAGE),
)
results = tuner.fit()
print(results.get_best_result().config)
assert len(results) == 8
assert all(r.metrics["training_iteration"] == 5 for r in results)
