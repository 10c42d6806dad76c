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


def quick_fn(config):
    tune.report({"pid": os.getpid(), "lr": config["lr"]})


for lr in (0.1, 0.01):  # each fit() after the first starts in the worker the last one kept
    tune.Tuner(quick_fn, param_space={"lr": lr},
               tune_config=tune.TuneConfig(keep_workers_s=60),
               run_config=tune.RunConfig(storage_path=STORAGE, verbose=0)).fit()
tune.release_workers()  # done tuning: free their CPUs now rather than in 60 s
