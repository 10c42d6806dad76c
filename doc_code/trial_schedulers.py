"""README: Trial schedulers."""

import json
import os
import tempfile

import tune_core as tune
from schedulers import ASHAScheduler, PopulationBasedTraining

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def train_fn(config):
    step, weight = 0, 0.0
    checkpoint = tune.get_checkpoint()  # pausing schedulers resume trials from checkpoints
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                step, weight = json.load(f)
    while step < 8:
        step += 1
        weight += config["lr"] * (1.0 - weight)
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump([step, weight], f)
        tune.report({"acc": weight}, checkpoint=tune.Checkpoint.from_directory(d))


space = {"lr": tune.grid_search([0.05, 0.1, 0.2, 0.4])}
run = dict(storage_path=STORAGE, verbose=0)

# ASHA: stops trials that are behind at a rung (grace_period * reduction_factor**k).
asha = ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2)
results = tune.Tuner(train_fn, param_space=space, run_config=tune.RunConfig(**run),
                     tune_config=tune.TuneConfig(metric="acc", mode="max",
                                                 scheduler=asha)).fit()

# Promotion ASHA (Syne Tune's): trials pause at rungs and resume when promoted.
promotion = ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2, type="promotion")
results = tune.Tuner(train_fn, param_space=space, run_config=tune.RunConfig(**run),
                     tune_config=tune.TuneConfig(metric="acc", mode="max",
                                                 scheduler=promotion)).fit()

# PBT: weak trials restart from a strong trial's checkpoint with a perturbed config.
pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                              hyperparam_mutations={"lr": tune.uniform(0.01, 0.5)})
results = tune.Tuner(train_fn, param_space=space, run_config=tune.RunConfig(**run),
                     tune_config=tune.TuneConfig(metric="acc", mode="max",
                                                 scheduler=pbt)).fit()

# Or by name, as tune.create_scheduler in Ray Tune:
hyperband = tune.create_scheduler("hyperband", max_t=8, reduction_factor=2)

best = results.get_best_result()
print("PBT best", best.config["lr"], best.metrics["acc"])
assert results.num_errors == 0 and best.metrics["training_iteration"] == 8
