"""README: Stopping and callbacks."""

import os

import tune_core as tune
from tune_core.stopper import CombinedStopper, MaximumIterationStopper, TrialPlateauStopper

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    for i in range(100):
        tune.report({"loss": 1.0 / (i + 1) + config["x"]})


class PrintCompletions(tune.Callback):
    def on_trial_complete(self, iteration, trials, trial, **info):
        print(f"{trial.trial_name} finished after {trial.last_result['training_iteration']}")


results = tune.Tuner(
    train_fn,
    param_space={"x": tune.uniform(0, 1)},
    tune_config=tune.TuneConfig(num_samples=2),
    run_config=tune.RunConfig(
        stop=CombinedStopper(MaximumIterationStopper(20),
                             TrialPlateauStopper("loss", std=0.001, mode="min")),
        callbacks=[PrintCompletions()],
        storage_path=STORAGE, verbose=0,
    ),
).fit()
assert all(r.metrics["training_iteration"] <= 20 for r in results)

# A dict of thresholds, or a function (trial_id, result) -> bool, works too:
tune.Tuner(train_fn, run_config=tune.RunConfig(stop={"training_iteration": 3},
                                               storage_path=STORAGE, verbose=0)).fit()
tune.Tuner(train_fn, run_config=tune.RunConfig(
    stop=lambda trial_id, result: result["loss"] < 1.2, storage_path=STORAGE, verbose=0)).fit()
