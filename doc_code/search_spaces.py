"""README: Search spaces."""

import os

import tune_core as tune
from searchers import BasicVariantGenerator

STORAGE = os.environ.get("TUNE_DOC_STORAGE")

param_space = {
    "lr": tune.loguniform(1e-4, 1e-1),
    "layers": [tune.choice([32, 64]), tune.randint(8, 17)],
    "optimizer": {"name": tune.grid_search(["sgd", "adam"]), "momentum": 0.9},
    "batch": tune.qrandint(32, 256, 32),
    "warmup": tune.sample_from(lambda config: config["batch"] // 32),
    "decay": tune.sample_from(lambda spec: spec.config.lr / 10),
}


def train_fn(config):
    tune.report({"score": config["lr"] * config["warmup"]})


tuner = tune.Tuner(
    train_fn,
    param_space=param_space,
    tune_config=tune.TuneConfig(
        num_samples=3,  # 3 samples x 2 grid values = 6 trials
        search_alg=BasicVariantGenerator(points_to_evaluate=[{"lr": 0.01}], random_state=42),
    ),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
)
results = tuner.fit()
assert len(results) == 6
assert [r.config["lr"] for r in results][:2] == [0.01, 0.01]
assert all(r.config["warmup"] == r.config["batch"] // 32 for r in results)
