"""README: Search algorithms."""

import json
import os
import tempfile

import tune_core as tune
from schedulers.hb_bohb import HyperBandForBOHB
from searchers import ConcurrencyLimiter
from searchers.bayesopt import BayesOptSearch
from searchers.bohb import TuneBOHB
from searchers.hyperopt import HyperOptSearch
from searchers.optuna import OptunaSearch

STORAGE = os.environ.get("TUNE_DOC_STORAGE")


def objective(config):
    x, y = config["x"], config["model"]["width"]
    return {"loss": (x - 0.3) ** 2 + (y - 32) ** 2 / 1e3}


space = {"x": tune.uniform(0, 1), "model": {"width": tune.choice([16, 32, 64])}}
run_config = tune.RunConfig(storage_path=STORAGE, verbose=0)

# Optuna's TPE, at most 2 trials at a time.
searcher = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)
results = tune.Tuner(objective, param_space=space, run_config=run_config,
                     tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=12,
                                                 search_alg=searcher)).fit()
print("Optuna best", results.get_best_result().config)

# HyperOpt with a conditional space: each option of a choice may hold its own domains.
conditional = {"optimizer": tune.choice([
    {"name": "sgd", "lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(0, 0.9)},
    {"name": "adam", "lr": tune.loguniform(1e-5, 1e-2)},
])}


def train(config):
    opt = config["optimizer"]
    return {"loss": abs(opt["lr"] - 0.01) + (0.1 if opt["name"] == "adam" else 0.0)}


results = tune.Tuner(train, param_space=conditional, run_config=run_config,
                     tune_config=tune.TuneConfig(
                         metric="loss", mode="min", num_samples=12,
                         search_alg=HyperOptSearch(random_state_seed=0))).fit()

assert results.num_errors == 0 and len(results) == 12

# Gaussian-process BO (expected improvement), with a constraint: feasible when <= 0.
def sized(config):
    return {"loss": (config["x"] - 0.3) ** 2, "too_big": config["x"] - 0.8}


results = tune.Tuner(sized, param_space={"x": tune.uniform(0, 1)}, run_config=run_config,
                     tune_config=tune.TuneConfig(
                         metric="loss", mode="min", num_samples=12,
                         search_alg=BayesOptSearch(random_state=0, constraints=["too_big"]))).fit()
assert results.num_errors == 0 and len(results) == 12


# BOHB: one model per HyperBand budget. HyperBand pauses trials at its milestones and
# resumes the promising ones: the trainable checkpoints so that they go on where they were.
def epochs(config):
    start = 0
    if tune.get_checkpoint():
        with tune.get_checkpoint().as_directory() as d:
            start = json.load(open(os.path.join(d, "epoch.json")))
    for epoch in range(start + 1, 10):
        with tempfile.TemporaryDirectory() as d:
            json.dump(epoch, open(os.path.join(d, "epoch.json"), "w"))
            tune.report({"loss": (config["x"] - 0.3) ** 2 + 1 / epoch},
                        checkpoint=tune.Checkpoint.from_directory(d))


results = tune.Tuner(epochs, param_space={"x": tune.uniform(0, 1)}, run_config=run_config,
                     tune_config=tune.TuneConfig(
                         metric="loss", mode="min", num_samples=14,
                         search_alg=TuneBOHB(seed=0),
                         scheduler=HyperBandForBOHB(max_t=9, reduction_factor=3))).fit()
assert results.num_errors == 0 and len(results) == 14

# Or by name, as tune.create_searcher in Ray Tune:
searcher = tune.create_searcher("optuna", metric="loss", mode="min")
