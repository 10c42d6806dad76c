"""README: Migrating from Ray Tune. A Ray Tune script with only its imports changed."""

import os

# from ray import tune, train            # before
import tune_core as tune                  # after
import tune_core as train                 # after

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def objective(config):
    for step in range(5):
        train.report({"mean_loss": (config["a"] - 1) ** 2 + config["b"] / (step + 1)})


tuner = tune.Tuner(
    objective,
    param_space={"a": tune.grid_search([0, 1, 2]), "b": tune.choice([1, 2])},
    tune_config=tune.TuneConfig(metric="mean_loss", mode="min"),
    run_config=train.RunConfig(stop={"training_iteration": 5}, storage_path=STORAGE,
                               verbose=1),
)
results = tuner.fit()
print("Best config:", results.get_best_result().config)
assert results.get_best_result().config["a"] == 1
