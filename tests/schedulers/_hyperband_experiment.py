"""A small HyperBand experiment on a real Ray, for the end-to-end and crash tests.

Usage: python _hyperband_experiment.py STORAGE NAME   (runs it as its own driver process)

Seven trials, ``max_t=4``, ``reduction_factor=2``. The score is ``x * (1 - 0.5**epoch)``:
at every epoch the trial with the larger ``x`` is ahead, so the brackets' decisions
depend only on ``x`` and on the order trials are created (the grid's order).

    s_max = floor(log2 4) = 2
    bracket 0: s=2, n = ceil(3/3 * 2**2) = 4 trials, milestones r = 4/4, 4/2, 4 = 1, 2, 4
    bracket 1: s=1, n = ceil(3/2 * 2**1) = 3 trials, milestones r = 4/2, 4 = 2, 4

    bracket 0 = trials 0-3, x = 0.3, 0.9, 0.5, 0.1
        r=1: 4 entered, keep floor(4/2) = 2: x=0.9, x=0.5   (0.3 and 0.1 stop at 1)
        r=2: 2 entered, keep floor(2/2) = 1: x=0.9          (0.5 stops at 2)
        r=4: x=0.9 stops at max_t = 4
    bracket 1 = trials 4-6, x = 0.7, 0.2, 0.8
        r=2: 3 entered, keep floor(3/2) = 1: x=0.8          (0.7 and 0.2 stop at 2)
        r=4: x=0.8 stops at 4

The trainable would run to ``3 * MAX_T`` epochs if nothing stopped it, and resumes from
its checkpoint: each reported ``epoch`` equals its ``training_iteration`` only if every
resume started from the right checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time

import tune_core as tune
from schedulers.hyperband import HyperBandScheduler
from searchers import BasicVariantGenerator

XS = [0.3, 0.9, 0.5, 0.1, 0.7, 0.2, 0.8]
MAX_T = 4
ETA = 2
# The last training_iteration HyperBand allows each x (worked out in the docstring).
ALLOWED = {0.3: 1, 0.9: 4, 0.5: 2, 0.1: 1, 0.7: 2, 0.2: 2, 0.8: 4}


def score(x: float, epoch: int) -> float:
    return x * (1.0 - 0.5 ** epoch)


def train_fn(config):
    epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            epoch = json.load(f)["epoch"]
    while epoch < 3 * MAX_T:
        time.sleep(config["sleep"])
        epoch += 1
        d = os.path.join(tune.get_context().get_trial_dir(), "scratch", str(epoch))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"epoch": epoch}, f)
        tune.report({"score": score(config["x"], epoch), "epoch": epoch},
                    checkpoint=tune.Checkpoint.from_directory(d))


def make_tuner(storage: str, name: str, sleep: float = 0.25) -> tune.Tuner:
    return tune.Tuner(
        train_fn,
        param_space={"x": tune.grid_search(XS), "sleep": sleep},
        tune_config=tune.TuneConfig(
            metric="score", mode="max", search_alg=BasicVariantGenerator(random_state=0),
            scheduler=HyperBandScheduler(max_t=MAX_T, reduction_factor=ETA)),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0))


if __name__ == "__main__":
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    make_tuner(sys.argv[1], sys.argv[2], sleep=float(sys.argv[3]) if len(sys.argv) > 3
               else 0.3).fit()
