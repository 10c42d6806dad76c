"""README: Running trials."""

import os
import time

import tune_core as tune

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    time.sleep(0.1)
    tune.report({"pid": os.getpid(), "cpus": config["cpus"]})


results = tune.Tuner(
    # Resources may depend on the config; trials pack onto the CPUs they leave free.
    tune.with_resources(train_fn, lambda config: {"cpu": config["cpus"]}),
    param_space={"cpus": tune.grid_search([0.5, 0.5, 1, 1])},
    tune_config=tune.TuneConfig(max_concurrent_trials=2),  # whatever the searcher
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
).fit()
assert results.num_errors == 0
