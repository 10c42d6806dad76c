"""README: Search algorithms."""

import os

import tune_core as tune
from searchers import ConcurrencyLimiter
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

# Or by name, as tune.create_searcher in Ray Tune:
searcher = tune.create_searcher("optuna", metric="loss", mode="min")
assert results.num_errors == 0 and len(results) == 12
