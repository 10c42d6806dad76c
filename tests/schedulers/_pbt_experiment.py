"""A small PBT experiment on a real Ray, for the end-to-end and crash tests.

Usage: python _pbt_experiment.py STORAGE NAME   (runs it as its own driver process)

Four trials on two CPUs (so PBT time-shares them), ``ITERATIONS`` iterations each,
``perturbation_interval=2`` iterations, one trial in each quantile. The score grows by
``lr`` per iteration, so PBT moves weak trials to the strong trials' weights and to
larger learning rates. Each checkpoint records the trial that wrote it and its
iteration; a trial reports which trial's checkpoint it resumed from
(``resumed_from_trial``) and at which iteration (``resumed_at``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import tune_core as tune
from schedulers.pbt import PopulationBasedTraining
from tune_core.schedulers.trial_scheduler import TrialScheduler
from searchers import BasicVariantGenerator

ITERATIONS = 8
NUM_TRIALS = 4


def train_fn(config):
    state = {"score": 0.0, "iteration": 0, "writer": ""}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            state = json.load(f)
    resumed_from, resumed_at = state["writer"], state["iteration"]
    me = tune.get_context().get_trial_id()
    for iteration in range(state["iteration"] + 1, ITERATIONS + 1):
        time.sleep(config["sleep"])
        state = {"score": state["score"] + config["lr"], "iteration": iteration, "writer": me}
        d = os.path.join(tune.get_context().get_trial_dir(), "scratch", str(iteration))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump(state, f)
        # "done" ends the trial at that result, so PBT never picks a trial that has
        # finished as a donor (restarting from a final checkpoint would end at once).
        tune.report({"score": state["score"], "lr": config["lr"],
                     "resumed_from_trial": resumed_from, "resumed_at": resumed_at,
                     "done": iteration == ITERATIONS},
                    checkpoint=tune.Checkpoint.from_directory(d))


def make_scheduler() -> PopulationBasedTraining:
    return PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=2,
        hyperparam_mutations={"lr": tune.uniform(0.1, 1.0)}, quantile_fraction=0.25,
        resample_probability=0.25, seed=0)


def make_tuner(storage: str, name: str, sleep: float = 0.05,
               scheduler: Optional[TrialScheduler] = None) -> tune.Tuner:
    """The experiment with PBT, or with ``scheduler`` (PB2, say) in its place."""
    return tune.Tuner(
        train_fn,
        param_space={"lr": tune.uniform(0.1, 1.0), "sleep": sleep},
        tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=NUM_TRIALS,
                                    scheduler=scheduler or make_scheduler(),
                                    search_alg=BasicVariantGenerator(random_state=3)),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0))


if __name__ == "__main__":
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    make_tuner(sys.argv[1], sys.argv[2], sleep=0.4).fit()
    sys.exit(0)
