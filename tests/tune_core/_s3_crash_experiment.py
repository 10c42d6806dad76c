"""A driver for the remote-storage crash test: ``python _s3_crash_experiment.py URI NAME``.

Deterministic: each trial ends with ``score = lr * EPOCHS``. Checkpoints are read with
``as_directory`` (they are on S3).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import tune_core as tune
from searchers import BasicVariantGenerator

EPOCHS = 8
NUM_SAMPLES = 4


def train_fn(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["epoch"] + 1
    for epoch in range(start, EPOCHS):
        time.sleep(config["sleep"])
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"epoch": epoch}, f)
        tune.report({"score": config["lr"] * (epoch + 1), "epoch": epoch},
                    checkpoint=tune.Checkpoint.from_directory(d))


def make_tuner(storage, name):
    return tune.Tuner(
        train_fn,
        param_space={"lr": tune.uniform(0.1, 1.0), "sleep": 0.25},
        tune_config=tune.TuneConfig(num_samples=NUM_SAMPLES, max_concurrent_trials=2,
                                    search_alg=BasicVariantGenerator(random_state=7)),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0))


if __name__ == "__main__":
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    make_tuner(sys.argv[1], sys.argv[2]).fit()
